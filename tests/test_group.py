"""ae_group (compiled, CPU) against the numpy/scipy reference parser and hand-worked cases."""
import numpy as np
import pytest
import torch

import higherpose.ops as ops
from higherpose.ops.reference import group as ref


def _assert_same(got, want):
    names = ("poses", "scores", "counts")
    for name, a, b in zip(names, got, want):
        assert a.shape == b.shape, f"{name}: {tuple(a.shape)} vs {tuple(b.shape)}"
        assert torch.equal(a.cpu(), b.cpu()), f"{name} differ at {torch.nonzero(a.cpu() != b.cpu())[:5].tolist()}"


def _compare(det, tag, **kw):
    peaks = ops.heatmap_peaks(det, tag, kw.pop("nms_kernel", 5), kw.get("max_people", 30))
    got = ops.ae_group(det, tag, peaks, **kw)
    want = ref.ae_group(det, tag, peaks, **kw)
    _assert_same(got, want)
    return got


PLANTED = [
    # (people, joints, size, T, missing, close pairs, settings)
    (5, 14, 64, 1, 0.0, 0, {}),
    (5, 17, 64, 2, 0.2, 0, {"adjust": False}),
    (20, 14, 128, 1, 0.1, 0, {}),
    (20, 17, 96, 2, 0.3, 0, {"refine": False}),
    (20, 14, 96, 2, 0.0, 0, {"adjust": False, "refine": False}),
    (40, 14, 128, 1, 0.1, 0, {}),  # more people than max_people (30)
    (40, 17, 128, 2, 0.0, 0, {"max_people": 30, "refine": False}),
    (12, 14, 96, 1, 0.1, 4, {}),  # touching people with close tags (0.4 apart)
    (12, 17, 96, 2, 0.0, 5, {"tag_threshold": 0.3}),
    (20, 14, 96, 1, 0.1, 0, {"ignore_too_much": True, "max_people": 8}),
    (20, 14, 96, 2, 0.1, 0, {"use_detection_val": False}),
    (10, 14, 64, 1, 0.1, 0, {"detection_threshold": 0.3, "joint_order": list(range(13, -1, -1))}),
]


@pytest.mark.parametrize("people,joints,size,t,missing,close,settings", PLANTED)
def test_planted_maps_match_reference(people, joints, size, t, missing, close, settings):
    det, tag = ref.planted_maps(people, joints, size, t, num_images=2, seed=people + joints + t,
                                missing=missing, close_pairs=close)
    poses, scores, counts = _compare(det, tag, **settings)
    if not close and "detection_threshold" not in settings and missing == 0 and people <= 30:
        # Well-separated, complete people: every one of them is recovered.
        assert counts.tolist() == [people, people]


def test_each_side_finds_its_own_peaks():
    det, tag = ref.planted_maps(8, 14, 64, 2, num_images=2, seed=3, missing=0.2)
    _assert_same(ops.ae_group(det, tag), ref.ae_group(det, tag))


@pytest.mark.parametrize("seed", range(6))
def test_random_maps_match_reference(seed):
    g = torch.Generator().manual_seed(seed)
    t = 1 + seed % 2
    det = torch.rand(2, 5, 20, 24, generator=g)
    tag = torch.randn(2, 5, 20, 24, t, generator=g) * (1 + seed)
    _compare(det, tag, max_people=10, adjust=bool(seed % 3), refine=seed != 4)


def test_empty_maps_give_no_person():
    det = torch.zeros(2, 14, 32, 32)
    tag = torch.randn(2, 14, 32, 32, 2)
    poses, scores, counts = _compare(det, tag)
    assert poses.shape == (2, 0, 14, 5) and scores.shape == (2, 0) and counts.tolist() == [0, 0]


def _hand_peaks(entries, j, k=4, t=1):
    """entries: {(joint, slot): (value, x, y, tag)} -> peaks tuple for one image."""
    values = torch.full((1, j, k), float("-inf"))
    xs = torch.full((1, j, k), -1, dtype=torch.long)
    ys = torch.full((1, j, k), -1, dtype=torch.long)
    tags = torch.zeros(1, j, k, t)
    for (joint, slot), (v, x, y, tg) in entries.items():
        values[0, joint, slot], xs[0, joint, slot], ys[0, joint, slot] = v, x, y
        tags[0, joint, slot, 0] = tg
    return values, xs, ys, tags


def test_hand_worked_grouping():
    det, tag = torch.zeros(1, 2, 16, 16), torch.zeros(1, 2, 16, 16, 1)
    peaks = _hand_peaks({(0, 0): (0.9, 2, 2, 1.0), (0, 1): (0.8, 10, 10, 5.0),
                         (1, 0): (0.7, 3, 3, 5.1), (1, 1): (0.6, 11, 11, 1.2),
                         (1, 2): (0.5, 7, 7, 9.0)}, j=2)
    poses, scores, counts = ops.ae_group(det, tag, peaks, adjust=False, refine=False)
    assert counts.tolist() == [3]
    want = torch.tensor([[[2, 2, 0.9, 1.0], [11, 11, 0.6, 1.2]],
                         [[10, 10, 0.8, 5.0], [3, 3, 0.7, 5.1]],
                         [[0, 0, 0, 0], [7, 7, 0.5, 9.0]]])  # tag 9 is far from both: a new person
    torch.testing.assert_close(poses[0], want)
    torch.testing.assert_close(scores[0], want[:, :, 2].mean(1))


def test_hand_worked_key_collision_quirk():
    # Two first-joint candidates with the same first tag component share upstream's dict key:
    # the second overwrites the first person's slot instead of starting a person.
    det, tag = torch.zeros(1, 2, 16, 16), torch.zeros(1, 2, 16, 16, 1)
    peaks = _hand_peaks({(0, 0): (0.9, 2, 2, 1.0), (0, 1): (0.8, 10, 10, 1.0)}, j=2)
    poses, _, counts = ops.ae_group(det, tag, peaks, adjust=False, refine=False)
    assert counts.tolist() == [1]
    torch.testing.assert_close(poses[0, 0, 0], torch.tensor([10.0, 10, 0.8, 1.0]))


def test_hand_worked_adjust_and_refine():
    det = torch.zeros(1, 2, 8, 8)
    tag = torch.zeros(1, 2, 8, 8, 1)
    det[0, 0, 5, 5], det[0, 0, 5, 6] = 0.9, 0.4  # right neighbour larger; up == down
    det[0, 1, 2, 3], det[0, 1, 1, 3] = 0.3, 0.2  # joint 1 only reachable by refine; up larger
    tag[0, 0, 5, 5, 0] = 2.0
    tag[0, 1, :, :, 0] = 5.0
    tag[0, 1, 2, 3, 0] = 2.2  # round(0.2) = 0: wins over higher pixels with far tags
    det[0, 1, 7, 7] = 0.35
    peaks = _hand_peaks({(0, 0): (0.9, 5, 5, 2.0)}, j=2)
    poses, scores, counts = ops.ae_group(det, tag, peaks)
    assert counts.tolist() == [1]
    torch.testing.assert_close(poses[0, 0, 0, :3], torch.tensor([5.75, 5.25, 0.9]))
    torch.testing.assert_close(poses[0, 0, 1], torch.tensor([3.25, 2.25, 0.3, 0.0]))
    torch.testing.assert_close(scores, torch.tensor([[0.45]]))  # before refine


def test_default_joint_order():
    assert ops.default_joint_order(17) == [0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16]
    assert ops.default_joint_order(14) == [0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13]
    assert ops.default_joint_order(5) == [0, 1, 2, 3, 4]
    assert ops.default_joint_order(9) == list(range(9))  # truncation not a permutation
    assert ops.default_joint_order(20) == list(range(20))


def test_nan_in_maps_away_from_candidates_matches_reference():
    det, tag = ref.planted_maps(6, 14, 64, 1, seed=5, missing=0.3)
    det[0, :, 0, :5] = float("nan")
    tag[0, ..., 0][det[0] < 0.01] = float("nan")  # background only: no candidate has a NaN tag
    _compare(det, tag)


def test_nan_tag_at_a_candidate_raises():
    det, tag = ref.planted_maps(3, 14, 48, 1, num_images=3, seed=1)
    peaks = ops.heatmap_peaks(det, tag, 5, 30)
    peaks[3][1, 2, 0, 0] = float("nan")  # image 1 of 3: the error crosses the per-image threads
    with pytest.raises(RuntimeError, match="NaN or infinite"):
        ops.ae_group(det, tag, peaks)
    with pytest.raises(ValueError, match="non-finite"):
        ref.ae_group(det, tag, peaks)


def test_bad_inputs():
    det, tag = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8, 1)
    peaks = ops.heatmap_peaks(det, tag, 3, 4)
    with pytest.raises(RuntimeError, match="heatmaps must be"):
        ops.ae_group(det[0], tag, peaks)
    with pytest.raises(RuntimeError, match="tags"):
        ops.ae_group(det, tag[:, :2], peaks)
    with pytest.raises(RuntimeError, match="dtype"):
        ops.ae_group(det, tag.double(), peaks)
    with pytest.raises(RuntimeError, match="permutation"):
        ops.ae_group(det, tag, peaks, joint_order=[0, 0, 1])
    with pytest.raises(RuntimeError, match="joint_order has"):
        ops.ae_group(det, tag, peaks, joint_order=[0, 1])
    with pytest.raises(RuntimeError, match="detection_threshold must be finite"):
        ops.ae_group(det, tag, peaks, detection_threshold=float("nan"))
    with pytest.raises(RuntimeError, match="tag_threshold must be finite"):
        ops.ae_group(det, tag, peaks, tag_threshold=float("inf"))
    with pytest.raises(RuntimeError, match="max_people"):
        ops.ae_group(det, tag, peaks, max_people=0)
    values, xs, ys, ptags = peaks
    with pytest.raises(RuntimeError, match="int64"):
        ops.ae_group(det, tag, (values, xs.int(), ys, ptags))
    with pytest.raises(RuntimeError, match="peak_tags"):
        ops.ae_group(det, tag, (values, xs, ys, ptags[..., :0]))
    xs_bad = xs.clone()
    xs_bad[0, 0, 0] = 99
    with pytest.raises(RuntimeError, match="outside"):
        ops.ae_group(det, tag, (values, xs_bad, ys, ptags), detection_threshold=0.0)


def test_other_dtypes_are_computed_in_float32():
    det, tag = ref.planted_maps(5, 14, 48, 1, seed=2)
    got = ops.ae_group(det.double(), tag.double())
    _assert_same(got, ops.ae_group(det, tag))


def test_torch_compile_smoke():
    det, tag = ref.planted_maps(4, 14, 48, 1, seed=4)

    def post(d, t):
        poses, scores, counts = ops.ae_group(d, t)
        return poses * 1.0, scores, counts

    torch._dynamo.reset()
    compiled = torch.compile(post, backend="aot_eager", fullgraph=True, dynamic=False)
    _assert_same(compiled(det, tag), ops.ae_group(det, tag))


@pytest.mark.cuda
@pytest.mark.parametrize("people,t,size,settings", [(20, 2, 128, {}), (40, 1, 128, {"max_people": 30}),
                                                  (10, 2, 96, {"adjust": False}), (12, 1, 64, {"refine": False})])
def test_cuda_matches_cpu(people, t, size, settings):
    det, tag = ref.planted_maps(people, 14, size, t, num_images=2, seed=people, missing=0.2, close_pairs=2)
    peaks = ops.heatmap_peaks(det, tag, 5, settings.get("max_people", 30))
    want = ops.ae_group(det, tag, peaks, **settings)
    got = ops.ae_group(det.cuda(), tag.cuda(), tuple(p.cuda() for p in peaks), **settings)
    assert got[0].device.type == "cuda"
    _assert_same(got, want)


@pytest.mark.cuda
def test_cuda_full_pipeline_and_empty():
    det, tag = ref.planted_maps(20, 17, 128, 2, num_images=2, seed=9, missing=0.1)
    _assert_same(ops.ae_group(det.cuda(), tag.cuda()), ops.ae_group(det, tag))
    empty = ops.ae_group(torch.zeros(1, 14, 32, 32, device="cuda"), torch.zeros(1, 14, 32, 32, 1, device="cuda"))
    assert empty[0].shape == (1, 0, 14, 4) and empty[2].tolist() == [0]


@pytest.mark.cuda
def test_cuda_random_maps_match_cpu():
    g = torch.Generator().manual_seed(0)
    det, tag = torch.rand(2, 5, 20, 24, generator=g), torch.randn(2, 5, 20, 24, 2, generator=g)
    peaks = ops.heatmap_peaks(det, tag, 5, 10)
    want = ops.ae_group(det, tag, peaks, max_people=10)
    got = ops.ae_group(det.cuda(), tag.cuda(), tuple(p.cuda() for p in peaks), max_people=10)
    _assert_same(got, want)


def test_non_contiguous_inputs():
    det, tag = ref.planted_maps(6, 14, 48, 2, num_images=2, seed=8, missing=0.2)
    det_nc = torch.cat([det, det], dim=3)[..., :48]
    tag_nc = tag.permute(4, 0, 1, 2, 3).contiguous().permute(1, 2, 3, 4, 0)
    assert not det_nc.is_contiguous() and not tag_nc.is_contiguous()
    _assert_same(ops.ae_group(det_nc, tag_nc), ops.ae_group(det, tag))
