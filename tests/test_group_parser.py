"""HeatmapParser (upstream's interface) backed by ae_group, against the reference parser."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from higherpose.ops.parser import HeatmapParser
from higherpose.ops.reference import group as ref


def crowdpose_cfg(**test):
    fields = dict(DETECTION_THRESHOLD=0.1, TAG_THRESHOLD=1.0, USE_DETECTION_VAL=True, IGNORE_TOO_MUCH=False,
                  IGNORE_CENTER=True, NMS_KERNEL=5, NMS_PADDING=2)
    fields.update(test)
    return SimpleNamespace(DATASET=SimpleNamespace(NUM_JOINTS=14, MAX_NUM_PEOPLE=30, WITH_CENTER=False),
                           MODEL=SimpleNamespace(TAG_PER_JOINT=True), TEST=SimpleNamespace(**fields))


@pytest.mark.parametrize("adjust,refine", [(True, True), (False, True), (True, False)])
def test_parse_matches_reference_layout_and_values(adjust, refine):
    det, tag = ref.planted_maps(8, 14, 64, 2, num_images=2, seed=11, missing=0.2)
    ans, scores = HeatmapParser(crowdpose_cfg()).parse(det, tag, adjust=adjust, refine=refine)
    want, want_scores = ref.parse(det, tag, nms_kernel=5, max_people=30, detection_threshold=0.1,
                                  adjust=adjust, refine=refine)
    assert isinstance(ans, list) and len(ans) == 2
    for got, exp in zip(ans, want):
        assert got.dtype == np.float32 and got.shape == exp.shape == (len(exp), 14, 5)
        np.testing.assert_array_equal(got, exp)
    assert all(isinstance(s, np.float32) for s in scores)
    np.testing.assert_array_equal(np.array(scores, np.float32), want_scores[0])


def test_empty_image_gives_shape_0_array_and_single_tag_map():
    det = torch.zeros(1, 14, 32, 32)
    ans, scores = HeatmapParser(crowdpose_cfg()).parse(det, torch.zeros(1, 14, 32, 32))
    assert ans[0].shape == (0,) and ans[0].dtype == np.float32 and scores == []


def test_yacs_config_and_upstream_defaults():
    from higherpose.config.default import get_default_config

    cfg = get_default_config()
    parser = HeatmapParser(cfg)
    assert parser.num_joints == 17 and parser.max_num_people == 30
    assert parser.detection_threshold == pytest.approx(0.2) and parser.nms_kernel == 3
    assert parser.joint_order == [0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16]


def test_center_joint_handling():
    cfg = crowdpose_cfg()
    cfg.DATASET.WITH_CENTER = True
    cfg.DATASET.NUM_JOINTS = 15
    assert HeatmapParser(cfg).num_joints == 14
    cfg.TEST.IGNORE_CENTER = False
    parser = HeatmapParser(cfg)
    assert parser.num_joints == 15 and parser.joint_order[0] == 14 and sorted(parser.joint_order) == list(range(15))


def test_not_tag_per_joint_broadcasts_the_tag_map():
    det, tag = ref.planted_maps(4, 14, 48, 1, seed=2)
    cfg = crowdpose_cfg()
    cfg.MODEL.TAG_PER_JOINT = False
    ans, _ = HeatmapParser(cfg).parse(det, tag[:, :1])
    want, _ = HeatmapParser(crowdpose_cfg()).parse(det, tag[:, :1].expand(-1, 14, -1, -1, -1).contiguous())
    np.testing.assert_array_equal(ans[0], want[0])


def test_inconsistent_nms_padding_raises():
    with pytest.raises(ValueError, match="NMS_PADDING"):
        HeatmapParser(crowdpose_cfg(NMS_KERNEL=5, NMS_PADDING=1))
