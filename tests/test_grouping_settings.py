"""One rule maps a config onto the grouping settings, for HeatmapParser and the bottom-up pipeline.

Expected values are written out here from the upstream facts (HigherHRNet `Params`): the COCO
visiting order 1-based [1..7, 12, 13, 8..11, 14..17] minus 1, truncated to the parsed joints;
WITH_CENTER adds one joint (the config loader); with IGNORE_CENTER (default True) the centre is
not parsed (num_joints - 1); without it the order is prefixed by the centre (joint 18 for COCO).
"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from higherpose._cfg import cfg_get
from higherpose.config import get_default_config, load_config
from higherpose.inference import BottomUpInference, BottomUpSettings
from higherpose.ops.grouping_settings import GroupingSettings
from higherpose.ops.parser import HeatmapParser
from higherpose.ops.reference import group as ref

CROWDPOSE = "crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml"
COCO = "coco/higher_hrnet/w32_512_adam_lr1e-3.yaml"
UPSTREAM_ORDER_1_BASED = [1, 2, 3, 4, 5, 6, 7, 12, 13, 8, 9, 10, 11, 14, 15, 16, 17]


def upstream_order(parsed_joints):
    return [i - 1 for i in UPSTREAM_ORDER_1_BASED][:parsed_joints]


CROWDPOSE_ORDER = [0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13]  # from the reference's CrowdPose list


def _cfg(name, with_center=False, ignore_center=True):
    return load_config(name, ["DATASET.WITH_CENTER", str(with_center), "TEST.IGNORE_CENTER", str(ignore_center)])


def test_order_helper_matches_the_crowdpose_list_of_the_reference():
    assert upstream_order(14) == CROWDPOSE_ORDER


# ----------------------------------------------------------------------------- the three centre cases
@pytest.mark.parametrize("name,joints", [(CROWDPOSE, 14), (COCO, 17)])
def test_without_center(name, joints):
    g = GroupingSettings.from_config(_cfg(name))
    assert (g.num_joints, g.parsed_joints, g.center) == (joints, joints, "none")
    assert list(g.joint_order) == upstream_order(joints)
    # the released yamls' test settings, and the config defaults they do not override
    assert (g.detection_threshold, g.nms_kernel, g.max_people) == (0.1, 5, 30)
    assert (g.tag_threshold, g.use_detection_val, g.ignore_too_much) == (1.0, True, False)
    assert (g.adjust, g.refine, g.tag_per_joint) == (True, True, True)


@pytest.mark.parametrize("name,joints", [(CROWDPOSE, 14), (COCO, 17)])
def test_with_center_ignored_the_centre_is_not_parsed(name, joints):
    g = GroupingSettings.from_config(_cfg(name, with_center=True, ignore_center=True))
    assert g.num_joints == joints + 1  # the loader appended the centre
    assert (g.parsed_joints, g.center) == (joints, "dropped")
    assert list(g.joint_order) == upstream_order(joints)
    assert HeatmapParser(_cfg(name, True, True)).num_joints == joints  # upstream Params.num_joints = J - 1


def test_with_center_parsed_coco_is_upstreams_list_prefixed_by_joint_18():
    g = GroupingSettings.from_config(_cfg(COCO, with_center=True, ignore_center=False))
    assert (g.num_joints, g.parsed_joints, g.center) == (18, 18, "first")
    assert list(g.joint_order) == [i - 1 for i in [18] + UPSTREAM_ORDER_1_BASED]


def test_with_center_parsed_crowdpose_visits_its_centre_first():
    g = GroupingSettings.from_config(_cfg(CROWDPOSE, with_center=True, ignore_center=False))
    assert (g.num_joints, g.parsed_joints, g.center) == (15, 15, "first")
    assert list(g.joint_order) == [14] + CROWDPOSE_ORDER


def test_absent_fields_take_upstreams_config_defaults():
    cfg = SimpleNamespace(DATASET=SimpleNamespace(NUM_JOINTS=17))
    g = GroupingSettings.from_config(cfg)
    # reference "Defaults used implicitly": DETECTION_THRESHOLD 0.2, NMS_KERNEL 3, TAG_THRESHOLD 1.0,
    # USE_DETECTION_VAL True, IGNORE_TOO_MUCH False, ADJUST / REFINE True, WITH_CENTER False; 30 people
    assert (g.detection_threshold, g.nms_kernel, g.tag_threshold) == (0.2, 3, 1.0)
    assert (g.use_detection_val, g.ignore_too_much, g.adjust, g.refine) == (True, False, True, True)
    assert (g.max_people, g.center, g.tag_per_joint) == (30, "none", True)
    assert GroupingSettings.from_config(get_default_config()) == g


def test_nms_padding_that_is_not_same_size_is_refused():
    with pytest.raises(ValueError, match="NMS_PADDING"):
        GroupingSettings.from_config(load_config(CROWDPOSE, ["TEST.NMS_PADDING", "1"]))
    with pytest.raises(ValueError, match="NMS_PADDING"):
        BottomUpSettings.from_config(load_config(CROWDPOSE, ["TEST.NMS_KERNEL", "4", "TEST.NMS_PADDING", "2"]))


def test_a_joint_order_that_is_not_a_permutation_of_the_parsed_joints_is_refused():
    with pytest.raises(ValueError, match="permutation of 0..13"):
        GroupingSettings(num_joints=15, center="dropped", joint_order=list(range(15)))
    with pytest.raises(ValueError, match="center"):
        GroupingSettings(num_joints=15, center="last")


# ----------------------------------------------------------------------------- one rule, two users
@pytest.mark.parametrize("with_center,ignore_center", [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize("name", [CROWDPOSE, COCO])
def test_parser_and_pipeline_get_identical_settings(name, with_center, ignore_center):
    cfg = _cfg(name, with_center, ignore_center)
    pipeline = BottomUpSettings.from_config(cfg)
    assert HeatmapParser(cfg).settings == pipeline.grouping
    assert pipeline.num_joints == cfg.DATASET.NUM_JOINTS


def test_pipeline_from_config_accepts_a_flip_index_without_the_centre():
    """Callers pass the data set's flip index (14 joints); the centre (joint 14) flips onto itself."""
    flip = [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13]
    s = BottomUpSettings.from_config(_cfg(CROWDPOSE, True, True), flip_index=flip)
    assert s.flip_index == flip + [14]
    s.validate()


# ----------------------------------------------------------------------------- the rule at work
def _maps_with_center(seed):
    return ref.planted_maps(6, 15, 64, 2, seed=seed, missing=0.1)


def test_parser_with_dropped_centre_groups_as_without_the_centre_channel():
    det, tag = _maps_with_center(3)
    ans, scores = HeatmapParser(_cfg(CROWDPOSE, True, True)).parse(det, tag)
    want, want_scores = ref.parse(det[:, :14].contiguous(), tag[:, :14].contiguous(), joint_order=CROWDPOSE_ORDER)
    assert ans[0].shape == want[0].shape and ans[0].shape[1] == 14
    np.testing.assert_array_equal(ans[0], want[0])
    np.testing.assert_array_equal(np.array(scores, np.float32), want_scores[0])


def test_parser_with_parsed_centre_visits_it_first():
    det, tag = _maps_with_center(4)
    ans, _ = HeatmapParser(_cfg(CROWDPOSE, True, False)).parse(det, tag)
    want, _ = ref.parse(det, tag, joint_order=[14] + CROWDPOSE_ORDER)
    assert ans[0].shape[1] == 15
    np.testing.assert_array_equal(ans[0], want[0])


@pytest.mark.parametrize("ignore_center", [True, False])
def test_pipeline_groups_as_the_parser_and_returns_the_data_set_joints(ignore_center):
    cfg = _cfg(CROWDPOSE, True, ignore_center)
    det, tag = _maps_with_center(5)
    ans, scores = HeatmapParser(cfg).parse(det, tag)
    inference = BottomUpInference(torch.nn.Identity(), BottomUpSettings.from_config(cfg))
    h, w = det.shape[-2:]
    # centre (w/2, h/2) and scale (w, h)/200 map the maps' pixels onto themselves
    (poses, person_scores), = inference.postprocess(det, tag, np.array([[w / 2, h / 2]]),
                                                    np.array([[w / 200.0, h / 200.0]]))
    assert poses.shape == (len(ans[0]), 14, 3)  # the centre is never returned
    np.testing.assert_allclose(poses, ans[0][:, :14, :3], atol=1e-4)
    np.testing.assert_allclose(person_scores, np.array(scores, np.float64), atol=1e-6)


# ----------------------------------------------------------------------------- reading a value
def test_cfg_get_reads_every_config_shape_the_same_way():
    from yacs.config import CfgNode

    for node in ({"A": 1, "N": None}, CfgNode({"A": 1, "N": None}), SimpleNamespace(A=1, N=None)):
        assert cfg_get(node, "A", 7) == 1
        assert cfg_get(node, "B", 7) == 7
        assert cfg_get(node, "N", 7) is None  # present: returned as is
        assert cfg_get(node, "B") is None
    assert cfg_get(None, "A", 7) == 7
