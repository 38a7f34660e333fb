"""higherpose.Predictor on a stand-in model whose heatmap peak sits on a bright dot."""
import sys

import cv2
import numpy as np
import pytest

from higherpose.config import get_default_config
from test_inference_bottom_up import BrightnessModel, argmax_parser


def crowd_cfg():
    cfg = get_default_config()
    cfg.DATASET.DATASET_TEST = "crowd_pose"
    cfg.DATASET.NUM_JOINTS = 14
    cfg.MODEL.NUM_JOINTS = 14
    cfg.DATASET.INPUT_SIZE = 128
    cfg.LOSS.NUM_STAGES = 2
    cfg.LOSS.WITH_HEATMAPS_LOSS = (True, True)
    cfg.LOSS.WITH_AE_LOSS = (True, False)
    cfg.LOSS.HEATMAPS_LOSS_FACTOR = (1.0, 1.0)
    cfg.LOSS.PUSH_LOSS_FACTOR = (0.001, 0.001)
    cfg.LOSS.PULL_LOSS_FACTOR = (0.001, 0.001)
    cfg.TEST.WITH_HEATMAPS = (True, True)
    cfg.TEST.WITH_AE = (True, False)
    cfg.TEST.PROJECT2IMAGE = True
    cfg.TEST.NMS_KERNEL = 5
    cfg.TEST.NMS_PADDING = 2
    cfg.freeze()
    return cfg


def dot_image(h, w, x, y):
    im = np.zeros((h, w, 3), np.uint8)
    cv2.circle(im, (x, y), 3, (255, 255, 255), -1)
    return im


def make_predictor():
    from higherpose import Predictor
    return Predictor(crowd_cfg(), model=BrightnessModel(), device="cpu", parser=argmax_parser)


def test_lazy_export_keeps_import_light():
    import subprocess
    code = ("import sys, higherpose; assert 'torch' not in sys.modules and 'higherpose.predictor' not in sys.modules;"
            "from higherpose import Predictor; assert 'higherpose.predictor' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_single_image_and_batch():
    pred = make_predictor()
    im = dot_image(240, 160, 40, 170)
    out = pred(im)
    assert out.keypoints.shape == (1, 14, 3) and out.scores.shape == (1,)
    tol = 1.5 * 240 / 128
    assert np.abs(out.keypoints[0, :, 0] - 40).max() <= tol
    assert np.abs(out.keypoints[0, :, 1] - 170).max() <= tol
    batch = np.stack([im, dot_image(240, 160, 120, 30)])
    outs = pred(batch)
    assert len(outs) == 2
    assert np.abs(outs[1].keypoints[0, :, :2] - [120, 30]).max() <= tol
    np.testing.assert_allclose(outs[0].keypoints, out.keypoints)
    assert pred.skeleton and len(pred.joint_names) == 14


def test_heatmap_is_in_image_coordinates():
    pred = make_predictor()
    im = dot_image(200, 300, 250, 60)
    out = pred(im, return_heatmaps=True)
    assert out.heatmap.shape == (200, 300)
    y, x = np.unravel_index(np.argmax(out.heatmap), out.heatmap.shape)
    assert abs(x - 250) <= 4 and abs(y - 60) <= 4


def test_top_down_config_is_refused():
    from higherpose import Predictor
    cfg = crowd_cfg().clone()
    cfg.defrost()
    cfg.MODEL.NAME = "pose_hrt"
    with pytest.raises(ValueError, match="top-down"):
        Predictor(cfg, model=BrightnessModel(), device="cpu")
