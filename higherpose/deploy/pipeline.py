"""The bottom-up inference of one image size as one module, so that torch.export can take all of it:
pre-processing, the network, the flip pass, stage aggregation, upsampling to the input size,
heatmap peaks and associative-embedding grouping (with adjust and refine), and the mapping of the
poses back to the image's pixels.

It is `higherpose.inference.BottomUpInference` (the pipeline the Predictor and tools/valid.py
run) with its host-side steps written as tensor ops: the image arrives as uint8 BGR of the
exported size, where the Predictor's resize-and-align warp is the identity, so the same pipeline
gives the same poses (tests/test_deploy.py holds them to the Predictor's).
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..inference.bottom_up import IMAGENET_MEAN, IMAGENET_STD, BottomUpInference, stack_tags
from ..inference.transforms import affine_matrix, multi_scale_size
from ..ops import ae_group
from ..ops.grouping_settings import CENTER_FIRST


class BottomUpPipeline(nn.Module):
    """images ``[B, H, W, 3]`` uint8 BGR (H, W = the exported size) -> ``(poses [B, P, J, 3]``
    (x, y, score) in image pixels, person ``scores [B, P]``, ``counts [B]``); person p of image b
    exists iff ``p < counts[b]`` (the rest is zero padding), P is data-dependent.

    Single-scale only: a multi-scale test resizes the image per scale on the host (warpAffine),
    outside the graph; an exported program serves one image size."""

    def __init__(self, inference: BottomUpInference, image_size):
        super().__init__()
        s = inference.s
        if tuple(s.scale_factors) != (1.0,):
            raise ValueError(f"export runs one scale (TEST.SCALE_FACTOR [1.0]), the config has {list(s.scale_factors)}")
        width, height = (int(v) for v in image_size)
        (resized, center, scale) = multi_scale_size(width, height, s.input_size, 1.0, 1.0)
        if resized != (width, height):
            raise ValueError(f"an image of {width}x{height} is resized to {resized[0]}x{resized[1]} for input size "
                             f"{s.input_size}; export a size the pipeline keeps (sides multiples of 64, the short "
                             f"one = DATASET.INPUT_SIZE), e.g. {resized[0]}x{resized[1]}")
        self.inference = inference
        self.model = inference.model
        self.image_size = (width, height)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        # Map coordinates (in the maps' size, which is the image's with PROJECT2IMAGE) -> image pixels.
        self.map_size = (width, height) if s.project2image else None
        self._center, self._scale = center, scale

    def _to_image(self, xy, map_w, map_h):
        m = affine_matrix(self._center, self._scale, (map_w, map_h), inverse=True)
        gain = torch.tensor([m[0, 0], m[1, 1]], dtype=xy.dtype, device=xy.device)
        shift = torch.tensor([m[0, 2], m[1, 2]], dtype=xy.dtype, device=xy.device)
        return xy * gain + shift

    def forward(self, images):
        inf, s = self.inference, self.inference.s
        torch._check(images.shape[1] == self.image_size[1] and images.shape[2] == self.image_size[0],
                     lambda: f"images must be [B, {self.image_size[1]}, {self.image_size[0]}, 3] (the exported size)")
        x = (images.flip(-1).permute(0, 3, 1, 2).float() - self.mean) / self.std  # BGR uint8 -> normalised RGB
        heatmaps, tag_maps = inf._forward_scale(x)
        if self.map_size is not None:
            size = (self.map_size[1], self.map_size[0])
            heatmaps = F.interpolate(heatmaps, size=size, mode="bilinear", align_corners=False)
        size = heatmaps.shape[-2:]
        tags = stack_tags(tag_maps, size, s.num_joints)
        grouping = s.grouping
        poses, scores, counts = ae_group(*grouping.parsed_maps(heatmaps.contiguous(), tags), **grouping.op_kwargs())
        if grouping.center == CENTER_FIRST:
            poses = poses[:, :, :-1]
        xy = self._to_image(poses[..., :2].double(), int(size[1]), int(size[0])).float()
        return torch.cat([xy, poses[..., 2:3]], dim=-1), scores, counts


def pipeline_from_predictor(predictor, image_size=None):
    """The exportable pipeline of a `higherpose.Predictor` (its model and settings), for images of
    `image_size` (width, height); default the config's input size, square."""
    size = image_size or (predictor.inference.s.input_size,) * 2
    return BottomUpPipeline(predictor.inference, size).eval()


def example_images(image_size, batch=1):
    """An input of the pipeline's shape (values do not matter to the export)."""
    width, height = image_size
    return torch.from_numpy(np.zeros((batch, height, width, 3), np.uint8))
