"""`higherpose.Predictor`: a config and a checkpoint in, poses for BGR images out.

    from higherpose import Predictor
    predictor = Predictor("configs/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml", "model_best.pth.tar")
    result = predictor(image_bgr)          # PosePrediction(keypoints [P, J, 3], scores [P])
    results = predictor([im1, im2])        # a list, one per image

Keypoints are (x, y, score) in the coordinates of the image given; missing joints have score 0.
"""
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .inference.bottom_up import BottomUpInference, BottomUpSettings
from .inference.transforms import affine_matrix


@dataclass
class PosePrediction:
    keypoints: np.ndarray  # [P, J, 3] (x, y, score), image coordinates
    scores: np.ndarray  # [P] person scores
    heatmap: np.ndarray = None  # [H, W] max over joints, image size (with return_heatmaps=True)

    def __len__(self):
        return len(self.scores)


def _default_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Predictor:
    """Bottom-up pose prediction (HigherHRNet-style models) for numpy BGR images.

    Args:
        cfg: a yacs config or the path of an experiment YAML.
        checkpoint: weights file (any format `higherpose.models.load_checkpoint` reads); None keeps
            the freshly built (random) weights, which is only useful for tests and timing.
        device: torch device or string; default CUDA when available, else CPU.
        opts: ``KEY VALUE`` overrides applied when `cfg` is a path.
        model: an already built network to use instead of building one from `cfg`.
        parser: grouping function override (default: the compiled `ae_group` op).
    """

    def __init__(self, cfg, checkpoint=None, device=None, opts=None, model=None, parser=None):
        from .config import load_config
        from .data import dataset_info

        if isinstance(cfg, (str, bytes)) or hasattr(cfg, "__fspath__"):
            cfg = load_config(str(cfg), opts)
        elif opts:
            cfg = cfg.clone()
            cfg.defrost()
            cfg.merge_from_list(list(opts))
            cfg.freeze()
        self.cfg = cfg
        if cfg.MODEL.NAME in ("pose_hrt", "pose_hrnet"):
            raise ValueError(f"Predictor runs bottom-up models; {cfg.MODEL.NAME} is top-down and needs person "
                             f"boxes (use tools/valid.py with TEST.USE_GT_BBOX or TEST.COCO_BBOX_FILE)")
        self.device = torch.device(device) if device is not None else _default_device()
        if model is None:
            from .models import build_model, load_checkpoint
            model = build_model(cfg, is_train=False)
            if checkpoint:
                load_checkpoint(model, str(checkpoint))
        self.model = model.to(self.device).eval()
        self.info = dataset_info(cfg.DATASET.DATASET_TEST)
        settings = BottomUpSettings.from_config(cfg, flip_index=self.info.flip_index)
        self.inference = BottomUpInference(self.model, settings, parser=parser)

    @property
    def skeleton(self):
        return list(self.info.skeleton)

    @property
    def joint_names(self):
        return list(self.info.joint_names)

    def __call__(self, images, return_heatmaps=False, batch_size=8):
        return self.predict(images, return_heatmaps=return_heatmaps, batch_size=batch_size)

    def predict(self, images, return_heatmaps=False, batch_size=8):
        """One `PosePrediction` for an HxWx3 BGR uint8 image; a list of them for a list (or a
        [B, H, W, 3] array) of images."""
        single = isinstance(images, np.ndarray) and images.ndim == 3
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        batch = [images] if single else list(images)
        if return_heatmaps:
            out = [self._predict_with_heatmap(im) for im in batch]
        else:
            out = [PosePrediction(p, s) for p, s in self.inference.predict(batch, batch_size=batch_size)]
        return out[0] if single else out

    def _predict_with_heatmap(self, image):
        inf = self.inference
        heat, tags, centers, scales = inf.maps([image])
        with torch.inference_mode():
            (poses, scores), = inf.postprocess(heat, tags, centers, scales)
        hmax = heat[0].max(0).values.float().cpu().numpy()
        # the map refers to the projected input; warp it back to the image
        m = affine_matrix(centers[0], scales[0], (hmax.shape[1], hmax.shape[0]), inverse=True)
        back = cv2.warpAffine(hmax, m, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR)
        return PosePrediction(poses, scores, np.clip(back, 0.0, 1.0))
