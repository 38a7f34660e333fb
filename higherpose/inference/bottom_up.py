"""Bottom-up (associative-embedding) inference: HigherHRNet's test pipeline on the model's device.

Per image: for each test scale (largest first) the image is resized and aligned
(`multi_scale_size`), the model runs on it and on its horizontal flip, stage outputs are
upsampled to the last stage's size and averaged, the flipped pass is flipped back and its joint
channels permuted with the dataset's flip index, and its tags become a second tag map (T = 2).
With PROJECT2IMAGE the maps are resized to the scale-1.0 input size. Heatmaps are averaged over
flip and scales; tags come from scale 1.0 only. Then the heatmap-peaks and grouping ops run on
the same device, and coordinates are mapped back to the original image.

Images whose resized sizes agree are processed together as one batch.
"""
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..ops.grouping_settings import CENTER_FIRST, NO_CENTER, GroupingSettings
from ..ops.joint_order import default_joint_order  # noqa: F401  (re-exported by higherpose.inference)
from .transforms import affine_matrix, multi_scale_size, to_image_coords

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class BottomUpSettings:
    """The TEST / DATASET fields the pipeline reads (build with `from_config`).

    num_joints counts the network's joint channels (with the person centre under
    DATASET.WITH_CENTER); flip_index permutes them. ``grouping`` holds the parser's settings
    (None: `GroupingSettings(num_joints)`, the released yamls' values).
    """
    num_joints: int
    flip_index: list
    input_size: int = 512
    scale_factors: tuple = (1.0,)
    flip_test: bool = True
    project2image: bool = True
    with_heatmaps: tuple = (True, True)
    with_ae: tuple = (True, False)
    grouping: GroupingSettings = field(default=None)

    def __post_init__(self):
        if self.grouping is None:
            self.grouping = GroupingSettings(num_joints=self.num_joints)

    @property
    def tag_per_joint(self):
        return self.grouping.tag_per_joint

    @classmethod
    def from_config(cls, cfg, flip_index=None):
        """Settings from an upstream config; flip_index defaults to DATASET.DATASET_TEST's. A
        flip index without the centre joint gets it appended (the centre flips onto itself)."""
        grouping = GroupingSettings.from_config(cfg)
        num_joints = grouping.num_joints
        with_center = grouping.center != NO_CENTER
        if flip_index is None:
            from higherpose.data import dataset_info
            flip_index = dataset_info(cfg.DATASET.DATASET_TEST, with_center=with_center).flip_index
        flip_index = list(flip_index)
        if with_center and len(flip_index) == num_joints - 1:
            flip_index.append(num_joints - 1)
        stages = cfg.LOSS.NUM_STAGES
        with_heatmaps = tuple(bool(a and b) for a, b in zip(cfg.LOSS.WITH_HEATMAPS_LOSS[:stages], cfg.TEST.WITH_HEATMAPS))
        with_ae = tuple(bool(a and b) for a, b in zip(cfg.LOSS.WITH_AE_LOSS[:stages], cfg.TEST.WITH_AE))
        return cls(num_joints=num_joints, flip_index=flip_index, input_size=int(cfg.DATASET.INPUT_SIZE),
                   scale_factors=tuple(float(s) for s in cfg.TEST.SCALE_FACTOR), flip_test=bool(cfg.TEST.FLIP_TEST),
                   project2image=bool(cfg.TEST.PROJECT2IMAGE), with_heatmaps=with_heatmaps, with_ae=with_ae,
                   grouping=grouping)

    def validate(self):
        if self.grouping.num_joints != self.num_joints:
            raise ValueError(f"grouping settings are for {self.grouping.num_joints} joints, the pipeline's "
                             f"num_joints is {self.num_joints}")
        if sorted(self.flip_index) != list(range(self.num_joints)):
            raise ValueError(f"flip_index must be a permutation of 0..{self.num_joints - 1}, got {self.flip_index}")
        if not self.scale_factors or min(self.scale_factors) <= 0:
            raise ValueError(f"TEST.SCALE_FACTOR must be positive numbers, got {self.scale_factors}")
        if len(self.scale_factors) > 1 and 1.0 not in self.scale_factors:
            raise ValueError("multi-scale test needs 1.0 among TEST.SCALE_FACTOR (tags are read at scale 1.0)")
        if not any(self.with_heatmaps):
            raise ValueError("no stage provides heatmaps at test time (TEST.WITH_HEATMAPS / LOSS.WITH_HEATMAPS_LOSS)")
        if not any(self.with_ae):
            raise ValueError("no stage provides tags at test time (TEST.WITH_AE / LOSS.WITH_AE_LOSS)")


@dataclass
class Timer:
    """Seconds spent in the model (pre-processing, forward, map aggregation) and in post-processing."""
    model: float = 0.0
    post: float = 0.0
    images: int = 0


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stack_tags(tag_maps, size, num_joints):
    """Tag maps (each [B, J or 1, h, w]) at `size`, one per joint, stacked: [B, J, H, W, T]."""
    tags = []
    for t in tag_maps:
        if tuple(t.shape[-2:]) != tuple(size):
            t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
        if t.shape[1] == 1:
            t = t.expand(-1, num_joints, -1, -1)
        tags.append(t.unsqueeze(4))
    return torch.cat(tags, dim=4).contiguous()


_warned_fallback = []


def op_parser(heatmaps, tags, s):
    """The compiled grouping op (heatmap peaks + associative-embedding grouping) on the maps' device.

    If the extension was built without it (an old build), falls back to the numpy reference with a
    warning rather than failing."""
    import higherpose.ops as ops
    if not hasattr(ops, "ae_group"):
        if not _warned_fallback:
            import warnings
            warnings.warn("higherpose.ops.ae_group is not available in this build; using the (slow) numpy "
                          "reference parser higherpose.ops.reference.group.ae_group")
            _warned_fallback.append(True)
        return reference_parser(heatmaps, tags, s)
    if heatmaps.device.type != "cpu" and not _has_kernel("higherpose::ae_group", heatmaps.device.type):
        # built without this device's kernel: group on the host rather than fail
        if not _warned_fallback:
            import warnings
            warnings.warn(f"higherpose.ops.ae_group has no {heatmaps.device.type} kernel in this build; "
                          f"grouping runs on the CPU")
            _warned_fallback.append(True)
        heatmaps, tags = heatmaps.cpu(), tags.cpu()
    return ops.ae_group(heatmaps, tags, **s.grouping.op_kwargs())


def _has_kernel(op_name, device_type):
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(op_name, device_type.upper())
    except Exception:  # private API changed: assume the kernel exists and let the op report
        return True


def reference_parser(heatmaps, tags, s):
    """Upstream's parser re-implemented in numpy/Python (higherpose.ops.reference.group): the baseline."""
    from higherpose.ops.reference.group import ae_group
    return ae_group(heatmaps, tags, **s.grouping.op_kwargs())


PARSERS = {"op": op_parser, "reference": reference_parser}


class BottomUpInference:
    """Poses for BGR images from a bottom-up model.

    Args:
        model: returns a list of stage outputs ([B, 2J, H/4, W/4], [B, J, H/2, W/2]) for HigherHRNet.
        settings: a `BottomUpSettings`.
        parser: "op" (the compiled `higherpose.ops.ae_group`, default), "reference" (the numpy
            reference parser) or ``f(heatmaps [N,J,H,W], tags [N,J,H,W,T], settings) -> (poses [N,P,J,3+T],
            scores [N,P], counts [N])``, where J = ``settings.grouping.parsed_joints`` (a centre that
            is not parsed is cut off before the parser is called).
        amp_dtype: run the network under torch.autocast with this dtype (None = the model's own).
    """

    def __init__(self, model, settings, parser=None, amp_dtype=None):
        settings.validate()
        self.amp_dtype = amp_dtype  # e.g. torch.bfloat16: the network runs under autocast, maps stay float32
        self.model = model
        self.s = settings
        if parser is None or isinstance(parser, str):
            if (parser or "op") not in PARSERS:
                raise ValueError(f"parser must be one of {sorted(PARSERS)} or a callable, got {parser!r}")
            parser = PARSERS[parser or "op"]
        self.parser = parser
        self.timer = Timer()

    @property
    def device(self):
        try:
            return next(self.model.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    # ------------------------------------------------------------------ pre-processing
    def _to_tensor(self, warped):
        """List of HxWx3 BGR uint8 arrays → normalised RGB [B, 3, H, W] on the model's device."""
        batch = torch.from_numpy(np.stack(warped)).to(self.device, non_blocking=True)
        batch = batch.flip(-1).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
        return (batch - mean) / std

    # ------------------------------------------------------------------ network outputs
    def _stage_maps(self, outputs):
        """Stage outputs → (heatmaps averaged over stages, list of tag maps), at the last stage's size."""
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        j = self.s.num_joints
        size = outputs[-1].shape[-2:]
        heatmaps, n_heat, tags = 0, 0, []
        for i, out in enumerate(outputs):
            if out.shape[-2:] != size:
                out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
            if i < len(self.s.with_heatmaps) and self.s.with_heatmaps[i]:
                heatmaps = heatmaps + out[:, :j]
                n_heat += 1
            if i < len(self.s.with_ae) and self.s.with_ae[i]:
                tag = out[:, j:]
                if tag.shape[1] == 0:
                    raise ValueError(f"stage {i} output has {out.shape[1]} channels: no tag channels after {j} heatmaps")
                tags.append(tag)
        return heatmaps / n_heat, tags

    def _run_model(self, batch):
        if self.amp_dtype is None:
            out = self.model(batch)
        else:
            with torch.autocast(batch.device.type, dtype=self.amp_dtype):
                out = self.model(batch)
        if isinstance(out, torch.Tensor):
            out = [out]
        return [o.float() for o in out]

    def _forward_scale(self, batch):
        """Heatmaps [B, J, h, w] (flip-averaged) and tag maps (list of [B, J or 1, h, w]) at one scale.

        With flip test the image and its mirror go through the network as one batch of 2B (eval-mode
        networks treat samples independently, so this equals two separate passes)."""
        b = batch.shape[0]
        if not self.s.flip_test:
            return self._stage_maps(self._run_model(batch))
        outputs = self._run_model(torch.cat([batch, torch.flip(batch, [3])]))
        heatmaps, tags = self._stage_maps([o[:b] for o in outputs])
        heat_f, tags_f = self._stage_maps([o[b:] for o in outputs])
        heat_f = torch.flip(heat_f, [3])[:, self.s.flip_index]
        heatmaps = (heatmaps + heat_f) / 2.0
        for t in tags_f:
            t = torch.flip(t, [3])
            tags.append(t[:, self.s.flip_index] if self.s.tag_per_joint and t.shape[1] == self.s.num_joints else t)
        return heatmaps, tags

    @torch.inference_mode()
    def maps(self, images):
        """Aggregated maps for images that share one resized size.

        Returns (heatmaps [B, J, H, W], tags [B, J, H, W, T], centers [B, 2], scales [B, 2]) where (W, H)
        is the size the coordinates refer to (the scale-1.0 input size with PROJECT2IMAGE).
        """
        s = self.s
        min_scale = min(s.scale_factors)
        base = [multi_scale_size(im.shape[1], im.shape[0], s.input_size, 1.0, min_scale) for im in images]
        base_size = base[0][0]
        if any(b[0] != base_size for b in base):
            raise ValueError("maps() needs images with the same resized size; use predict() for mixed sizes")
        final_heat, final_tags, n_scales, last = None, None, 0, None
        for scale in sorted(s.scale_factors, reverse=True):
            warped, geo = [], []
            for im in images:
                size, center, sc = multi_scale_size(im.shape[1], im.shape[0], s.input_size, scale, min_scale)
                m = affine_matrix(center, sc, size)
                warped.append(cv2.warpAffine(im, m, size, flags=cv2.INTER_LINEAR))
                geo.append((center, sc))
            heatmaps, tags = self._forward_scale(self._to_tensor(warped))
            if s.project2image:
                target = (base_size[1], base_size[0])
            elif final_heat is None:
                target = tuple(heatmaps.shape[-2:])
            else:
                target = tuple(final_heat.shape[-2:])
            if tuple(heatmaps.shape[-2:]) != target:
                heatmaps = F.interpolate(heatmaps, size=target, mode="bilinear", align_corners=False)
            final_heat = heatmaps if final_heat is None else final_heat + heatmaps
            if scale == 1.0 or len(s.scale_factors) == 1:
                final_tags = tags
            n_scales += 1
            last = geo
        tags = stack_tags(final_tags, final_heat.shape[-2:], s.num_joints)
        centers = np.stack([g[0] for g in last])
        scales = np.stack([g[1] for g in last])
        return (final_heat / n_scales).contiguous(), tags, centers, scales

    def postprocess(self, heatmaps, tags, centers, scales):
        """Group and map back: list of (poses [P, J, 3] in image coordinates, scores [P]) numpy arrays.

        J is the data set's joints: a person centre (DATASET.WITH_CENTER) is never returned; it is
        grouped (visited first) only when TEST.IGNORE_CENTER is off."""
        grouping = self.s.grouping
        poses, person_scores, counts = self.parser(*grouping.parsed_maps(heatmaps, tags), self.s)
        if grouping.center == CENTER_FIRST:
            poses = poses[:, :, :-1]  # the centre is the last joint; scores keep upstream's mean over all
        poses = poses[..., :3].float().cpu().numpy()
        person_scores = person_scores.float().cpu().numpy()
        counts = counts.cpu().numpy()
        out_size = (heatmaps.shape[-1], heatmaps.shape[-2])
        results = []
        for b in range(len(counts)):
            n = int(counts[b])
            p = poses[b, :n].astype(np.float64)
            p[..., :2] = to_image_coords(p[..., :2], centers[b], scales[b], out_size)
            results.append((p, person_scores[b, :n].astype(np.float64)))
        return results

    def predict(self, images, batch_size=8):
        """Poses for a list of HxWx3 BGR uint8 images (or one image).

        Returns a list of (poses [P, J, 3] (x, y, score) in image coordinates, scores [P]); a single
        image in gives a single tuple out.
        """
        single = isinstance(images, np.ndarray) and images.ndim == 3
        if single:
            images = [images]
        for i, im in enumerate(images):
            if not isinstance(im, np.ndarray) or im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise ValueError(f"image {i} must be an HxWx3 uint8 BGR array, got "
                                 f"{getattr(im, 'shape', type(im))} {getattr(im, 'dtype', '')}")
        min_scale = min(self.s.scale_factors)
        buckets = {}
        for i, im in enumerate(images):
            key = multi_scale_size(im.shape[1], im.shape[0], self.s.input_size, 1.0, min_scale)[0]
            buckets.setdefault(key, []).append(i)
        results = [None] * len(images)
        device = self.device
        for idx in buckets.values():
            for start in range(0, len(idx), batch_size):
                chunk = idx[start:start + batch_size]
                t0 = time.perf_counter()
                heat, tags, centers, scales = self.maps([images[i] for i in chunk])
                _sync(device)
                t1 = time.perf_counter()
                with torch.inference_mode():
                    out = self.postprocess(heat, tags, centers, scales)
                t2 = time.perf_counter()
                self.timer.model += t1 - t0
                self.timer.post += t2 - t1
                self.timer.images += len(chunk)
                for i, r in zip(chunk, out):
                    results[i] = r
        return results[0] if single else results
