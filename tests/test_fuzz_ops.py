"""Property-based fuzzing of every op (hypothesis): generated shapes, dtypes, strides, windows,
offsets, heads, k, thresholds and special values (NaN, +-inf). Each example either equals the
pure-PyTorch / numpy reference, or raises a RuntimeError / ValueError / TypeError whose message
names the op and the argument that is wrong — never a crash, a hang or a different answer.

Each example starts from valid arguments and, with some probability, breaks exactly one of them in
a known way, so the test knows which argument the error must name. The default run has a fixed
example budget and is derandomised (seconds, the same examples every time); `-m slow` runs a
larger random search. Every op call runs under a watchdog: a call that hangs ends the test process
with a traceback instead of stalling CI.
"""
import faulthandler
import math
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import higherpose.ops as ops
from higherpose.ops.reference import group as group_reference
from higherpose.ops.reference.peaks import heatmap_peaks as peaks_reference
from higherpose.ops.reference.window_attention import window_attention as attention_reference

CALL_TIMEOUT_S = 120  # far above any call here (milliseconds); only a hang reaches it
COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FAST = settings(max_examples=60, derandomize=True, **COMMON)
SLOW = settings(max_examples=600, **COMMON)
ERRORS = (RuntimeError, ValueError, TypeError)


def guarded(fn, *args, **kwargs):
    """fn(*args, **kwargs) under the watchdog."""
    # to the process's own stderr: pytest may have replaced sys.stderr with an object without a file
    faulthandler.dump_traceback_later(CALL_TIMEOUT_S, exit=True, file=sys.__stderr__)
    try:
        return fn(*args, **kwargs)
    finally:
        faulthandler.cancel_dump_traceback_later()


def expect_error(fn, op, argument):
    """fn() must raise one of ERRORS naming the op and the argument."""
    with pytest.raises(ERRORS) as info:
        guarded(fn)
    message = str(info.value)
    assert op in message and argument in message, f"{op} error does not name {argument!r}: {message}"


def special_values(draw, t, dtype):
    """t with a few entries (maybe) replaced by NaN / +inf / -inf."""
    count = draw(st.integers(0, 3)) if t.numel() else 0
    flat = t.reshape(-1).clone()
    for _ in range(count):
        flat[draw(st.integers(0, flat.numel() - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    return flat.reshape(t.shape).to(dtype)


def maybe_strided(draw, t):
    """t, or a non-contiguous view of the same values (transposed storage)."""
    if t.dim() >= 4 and draw(st.booleans()):
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    return t


# ----------------------------------------------------------------------------- heatmap_peaks

PEAKS_FAULTS = [
    (lambda a: a.update(kernel=a["kernel"] + 1), "kernel"),  # even
    (lambda a: a.update(kernel=-3), "kernel"),
    (lambda a: a.update(kernel=2.5), "kernel"),
    (lambda a: a.update(k=0), "k"),
    (lambda a: a.update(k=-4), "k"),
    (lambda a: a.update(k=2**62, heatmaps=torch.zeros(1, 1, 2, 2), tags=torch.zeros(1, 1, 2, 2, 1)), "k"),
    (lambda a: a.update(k=1.5), "k"),
    (lambda a: a.update(tags=a["tags"].new_zeros(*a["heatmaps"].shape[:3], a["heatmaps"].shape[3] + 1, 1)), "tags"),
    (lambda a: a.update(tags=a["tags"].double() if a["tags"].dtype != torch.float64 else a["tags"].float()), "tags"),
    (lambda a: a.update(heatmaps=a["heatmaps"].flatten(0, 1)), "heatmaps"),
    (lambda a: a.update(heatmaps=a["heatmaps"].long(), tags=a["tags"].long()), "heatmaps"),
]


@st.composite
def peaks_arguments(draw):
    n, j, h, w, t = (draw(st.integers(lo, hi)) for lo, hi in ((0, 2), (0, 3), (0, 9), (0, 9), (1, 3)))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    # few distinct levels: plateaus and ties are where peak finding goes wrong
    heatmaps = torch.randint(0, draw(st.sampled_from([2, 4, 1000])), (n, j, h, w), generator=g).float() / 7
    args = dict(heatmaps=maybe_strided(draw, special_values(draw, heatmaps, dtype)),
                tags=torch.randn(n, j, h, w, t, generator=g).to(dtype),
                kernel=draw(st.sampled_from([1, 3, 5, 7])), k=draw(st.integers(1, 40)))
    fault = draw(st.one_of(st.none(), st.sampled_from(PEAKS_FAULTS))) if draw(st.integers(0, 3)) == 0 else None
    return args, fault


def check_peaks(case):
    args, fault = case
    call = lambda: ops.heatmap_peaks(args["heatmaps"], args["tags"], args["kernel"], args["k"])  # noqa: E731
    if fault is not None:
        mutate, argument = fault
        mutate(args)
        expect_error(call, "heatmap_peaks", argument)
        return
    got = guarded(call)
    want = peaks_reference(args["heatmaps"], args["tags"], args["kernel"], args["k"])
    for name, a, b in zip(("values", "x", "y", "peak_tags"), got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=name)


@FAST
@given(peaks_arguments())
def test_fuzz_heatmap_peaks(case):
    check_peaks(case)


@pytest.mark.slow
@SLOW
@given(peaks_arguments())
def test_fuzz_heatmap_peaks_long(case):
    check_peaks(case)


# ----------------------------------------------------------------------------- ae_group

GROUP_FAULTS = [
    (lambda a: a.update(joint_order=a["joint_order"][:-1]), "joint_order"),
    (lambda a: a.update(joint_order=list(range(1, len(a["joint_order"]) + 1))), "joint_order"),  # J is not a joint
    (lambda a: a.update(joint_order=[0.5] * len(a["joint_order"])), "joint_order"),
    (lambda a: a.update(max_people=0), "max_people"),
    (lambda a: a.update(max_people=2.5), "max_people"),
    (lambda a: a.update(detection_threshold=math.nan), "detection_threshold"),
    (lambda a: a.update(tag_threshold=math.inf), "tag_threshold"),
    (lambda a: a.update(tag_threshold="1"), "tag_threshold"),
    (lambda a: a.update(adjust="yes"), "adjust"),
    (lambda a: a.update(tags=a["tags"][:, :, :-1]), "tags"),
]


@st.composite
def group_arguments(draw):
    n, j, size, t = draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(4, 16)), draw(st.integers(1, 2))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    if draw(st.booleans()):
        people = draw(st.integers(0, 4))
        heatmaps, tags = group_reference.planted_maps(people, j, size, t, num_images=n, seed=draw(st.integers(0, 99)),
                                                      missing=draw(st.sampled_from([0.0, 0.3])))
    else:
        heatmaps, tags = torch.rand(n, j, size, size, generator=g), torch.randn(n, j, size, size, t, generator=g) * 2
    if draw(st.integers(0, 4)) == 0:
        heatmaps = special_values(draw, heatmaps, torch.float32)
    args = dict(heatmaps=heatmaps, tags=tags, joint_order=ops.default_joint_order(j),
                detection_threshold=draw(st.sampled_from([0.0, 0.1, 0.5, 0.9])),
                tag_threshold=draw(st.sampled_from([0.3, 1.0, 5.0])), use_detection_val=draw(st.booleans()),
                ignore_too_much=draw(st.booleans()), max_people=draw(st.integers(1, 6)), adjust=draw(st.booleans()),
                refine=draw(st.booleans()), nms_kernel=draw(st.sampled_from([1, 3, 5])))
    if draw(st.booleans()):
        args["joint_order"] = list(draw(st.permutations(range(j))))
    fault = draw(st.sampled_from(GROUP_FAULTS)) if draw(st.integers(0, 3)) == 0 else None
    return args, fault


def check_group(case):
    args, fault = case
    if fault is not None:
        mutate, argument = fault
        mutate(args)
        expect_error(lambda: ops.ae_group(**args), "ae_group", argument)
        return
    heatmaps, tags = args.pop("heatmaps"), args.pop("tags")
    peaks = ops.heatmap_peaks(heatmaps, tags, args["nms_kernel"], args["max_people"])
    try:
        want = group_reference.ae_group(heatmaps, tags, peaks, **args)
    except ValueError as err:  # the reference refuses non-finite candidates; so must the op
        assert "non-finite" in str(err), err
        expect_error(lambda: ops.ae_group(heatmaps, tags, peaks, **args), "ae_group", "finite")
        return
    got = guarded(ops.ae_group, heatmaps, tags, peaks, **args)
    for name, a, b in zip(("poses", "scores", "counts"), got, want):
        assert a.shape == b.shape and torch.equal(a, b), f"{name} differ"


@FAST
@given(group_arguments())
def test_fuzz_ae_group(case):
    check_group(case)


@pytest.mark.slow
@SLOW
@given(group_arguments())
def test_fuzz_ae_group_long(case):
    check_group(case)


# ----------------------------------------------------------------------------- window_attention

ATTENTION_FAULTS = [
    (lambda a: a.update(num_heads=a["num_heads"] + 0.5), "num_heads"),
    (lambda a: a.update(num_heads=0), "num_heads"),
    (lambda a: a.update(num_heads=a["q"].shape[-1] + 1), "num_heads"),
    (lambda a: a.update(window=(0, a["window"][1])), "window"),
    (lambda a: a.update(window=(2**32, 2**32), offset=(0, 0)), "window"),
    (lambda a: a.update(window=(2**62, 4), offset=(0, 0)), "window"),
    (lambda a: a.update(window=(float(a["window"][0]), a["window"][1])), "window"),
    (lambda a: a.update(offset=(a["window"][0], 0)), "offset"),
    (lambda a: a.update(offset=(-1, 0)), "offset"),
    (lambda a: a.update(offset=(0.5, 0)), "offset"),
    (lambda a: a.update(pad_mode="reflect"), "pad_mode"),
    (lambda a: a.update(k=a["k"][:, :-1] if a["k"].shape[1] > 1 else a["k"][..., :0]), "k"),
    (lambda a: a.update(v=a["v"].double() if a["v"].dtype != torch.float64 else a["v"].float()), "v"),
    (lambda a: a.update(rel_bias=torch.zeros((2 * a["window"][0] - 1) * (2 * a["window"][1] - 1) + 1, a["num_heads"],
                                             dtype=a["q"].dtype)), "rel_bias"),
    (lambda a: a.update(k_pad=torch.zeros(a["q"].shape[-1] + 1, dtype=a["q"].dtype)), "k_pad"),
    (lambda a: a.update(scale=math.nan), "scale"),
]


@st.composite
def attention_arguments(draw):
    b, h, w = draw(st.integers(0, 2)), draw(st.integers(1, 8)), draw(st.integers(1, 8))
    heads, d = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    wh, ww = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    c = heads * d

    def rand(*shape):
        return torch.randn(*shape, generator=g) * 0.7

    args = dict(q=maybe_strided(draw, special_values(draw, rand(b, h, w, c), dtype)),
                k=maybe_strided(draw, special_values(draw, rand(b, h, w, c), dtype)),
                v=maybe_strided(draw, special_values(draw, rand(b, h, w, c), dtype)),
                num_heads=heads, window=(wh, ww), scale=draw(st.sampled_from([None, 0.3, 1.0])),
                offset=(draw(st.integers(0, wh - 1)), draw(st.integers(0, ww - 1))),
                pad_mode=draw(st.sampled_from(["zeros", "mask"])),
                k_pad=rand(c).to(dtype) if draw(st.booleans()) else None,
                v_pad=rand(c).to(dtype) if draw(st.booleans()) else None,
                rel_bias=(rand((2 * wh - 1) * (2 * ww - 1), heads).to(dtype) if draw(st.booleans()) else None))
    fault = draw(st.sampled_from(ATTENTION_FAULTS)) if draw(st.integers(0, 3)) == 0 else None
    return args, fault


def check_attention(case):
    args, fault = case
    call = lambda: ops.window_attention(**args)  # noqa: E731
    if fault is not None:
        mutate, argument = fault
        mutate(args)
        expect_error(call, "window_attention", argument)
        return
    got = guarded(call)
    wide = {name: (t.double() if isinstance(t, torch.Tensor) else t) for name, t in args.items()}
    want = attention_reference(**wide)
    tol = 1e-9 if args["q"].dtype == torch.float64 else 2e-2
    got = got.double()
    assert torch.equal(got.isnan(), want.isnan()), "NaN positions differ"
    finite = want.isfinite()
    assert torch.equal(got.isinf(), want.isinf()) and torch.equal(got[~finite & ~want.isnan()],
                                                                   want[~finite & ~want.isnan()]), "infinities differ"
    torch.testing.assert_close(got[finite], want[finite], rtol=tol, atol=tol)


@FAST
@given(attention_arguments())
def test_fuzz_window_attention(case):
    check_attention(case)


@pytest.mark.slow
@SLOW
@given(attention_arguments())
def test_fuzz_window_attention_long(case):
    check_attention(case)


# ----------------------------------------------------------------------------- linear_sum_assignment

@st.composite
def cost_matrices(draw):
    rows, cols = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    cost = torch.randint(0, draw(st.sampled_from([2, 5, 100])), (rows, cols), generator=g).double()
    return special_values(draw, cost, torch.float64) if draw(st.integers(0, 3)) == 0 else cost


def check_assignment(cost):
    from scipy.optimize import linear_sum_assignment as scipy_solver

    try:
        want = scipy_solver(cost.numpy())
    except ValueError:  # NaN, -inf or an infeasible matrix: the op must refuse it too
        expect_error(lambda: ops.linear_sum_assignment(cost), "linear_sum_assignment", "cost")
        return
    rows, cols = guarded(ops.linear_sum_assignment, cost)
    assert np.array_equal(rows.numpy(), want[0]) and np.array_equal(cols.numpy(), want[1])


@FAST
@given(cost_matrices())
def test_fuzz_linear_sum_assignment(cost):
    check_assignment(cost)


@pytest.mark.slow
@SLOW
@given(cost_matrices())
def test_fuzz_linear_sum_assignment_long(cost):
    check_assignment(cost)
