"""NaN and infinity in window attention's inputs reach the outputs exactly as in the pure-PyTorch
reference: the same positions are NaN / +inf / -inf (a NaN key makes its whole window NaN, an
infinite logit makes inf - inf = NaN in the softmax, a -inf logit weighs 0), and the finite values
agree. Checked for the CPU kernel in every dtype and for every CUDA kernel family through the block
emulator (tests/csrc), forward, and backward where the special value is a NaN. A diverging training
run must show up as NaN, never as a plausible number."""
import math

import pytest
import torch

from higherpose.ops import window_attention
from higherpose.ops.reference.window_attention import window_attention as reference

HEADS, D, WINDOW, OFFSET = 2, 4, (3, 3), (1, 1)
SHAPE = (1, 5, 6, HEADS * D)  # windows of the grid: rows -1..1, 2..4, 5..7 and columns -1..1, 2..4, 5..7

# (tensor, index, value): one special entry. Position (2, 3) lies in the middle window.
CASES = {
    "nan in q": ("q", (0, 2, 3, 1), math.nan),
    "nan in k": ("k", (0, 2, 3, 1), math.nan),
    "nan in v": ("v", (0, 2, 3, 5), math.nan),
    "+inf in k": ("k", (0, 2, 3, 1), math.inf),
    "-inf in k": ("k", (0, 2, 3, 1), -math.inf),
    "+inf in v": ("v", (0, 2, 3, 5), math.inf),
    "nan in q, corner": ("q", (0, 0, 0, 0), math.nan),
    "nan in k_pad": ("k_pad", (2,), math.nan),
    "inf in v_pad": ("v_pad", (6,), math.inf),
    "nan in rel_bias": ("rel_bias", (12, 1), math.nan),
}


def make(case, dtype, pad_mode):
    g = torch.Generator().manual_seed(0)
    c = HEADS * D
    tensors = {name: torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5 for name, shape in
               (("q", SHAPE), ("k", SHAPE), ("v", SHAPE), ("k_pad", (c,)), ("v_pad", (c,)),
                ("rel_bias", ((2 * WINDOW[0] - 1) * (2 * WINDOW[1] - 1), HEADS)))}
    name, index, value = CASES[case]
    tensors[name][index] = value
    return {name: t.to(dtype) for name, t in tensors.items()}


def args_of(t, pad_mode):
    k_pad, v_pad = (t["k_pad"], t["v_pad"]) if pad_mode == "zeros" else (None, None)
    return t["q"], t["k"], t["v"], HEADS, WINDOW, None, OFFSET, pad_mode, k_pad, v_pad, t["rel_bias"]


def assert_same_specials(got, want, what):
    """The same NaN / +inf / -inf positions, and close finite values (the op may run in a lower dtype)."""
    tol = 1e-2 if got.dtype != torch.float64 else 1e-9
    got, want = got.double(), want.double()
    assert torch.equal(got.isnan(), want.isnan()), f"{what}: NaN positions differ"
    assert torch.equal(got == math.inf, want == math.inf), f"{what}: +inf positions differ"
    assert torch.equal(got == -math.inf, want == -math.inf), f"{what}: -inf positions differ"
    finite = want.isfinite()
    torch.testing.assert_close(got[finite], want[finite], atol=tol, rtol=tol, msg=what)


def expected(t, pad_mode, grad_out):
    """The reference in float64 on the values the op sees, and its gradients."""
    leaves = {name: v.double().requires_grad_() for name, v in t.items()}
    out = reference(*args_of(leaves, pad_mode))
    used = [name for name in ("q", "k", "v", "k_pad", "v_pad", "rel_bias") if pad_mode == "zeros" or "pad" not in name]
    grads = torch.autograd.grad(out, [leaves[n] for n in used], grad_out.double())
    return out.detach(), dict(zip(used, grads))


@pytest.mark.parametrize("pad_mode", ["zeros", "mask"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cpu_kernel_propagates_special_values(dtype, case, pad_mode):
    t = make(case, dtype, pad_mode)
    grad_out = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1)).to(dtype)
    want, want_grads = expected(t, pad_mode, grad_out)
    leaves = {name: v.clone().requires_grad_() for name, v in t.items()}
    out = window_attention(*args_of(leaves, pad_mode))
    assert_same_specials(out, want, f"{case}, {dtype}, output")
    if math.isnan(CASES[case][2]):  # gradients: NaN must reach them where it reaches the reference's
        grads = torch.autograd.grad(out, [leaves[n] for n in want_grads], grad_out)
        for (name, w), g in zip(want_grads.items(), grads):
            assert torch.equal(g.isnan(), w.isnan()), f"{case}, {dtype}: NaN positions of grad {name} differ"


def test_nan_key_makes_its_whole_window_nan_and_nothing_else():
    # A hand-worked case: window (3, 3) at offset (1, 1) puts (2, 3) in the window of rows 2..4 and
    # columns 2..4; every query there attends to the NaN key, no query elsewhere does.
    t = make("nan in k", torch.float32, "mask")
    out = window_attention(*args_of(t, "mask"))
    nan_rows = out.isnan().any(-1)[0]
    expected_rows = torch.zeros(5, 6, dtype=torch.bool)
    expected_rows[2:5, 2:5] = True
    assert torch.equal(nan_rows, expected_rows)
    # the head of the NaN channel (channel 1: head 0) only
    assert out[0, 2:5, 2:5, :D].isnan().all() and not out[0, 2:5, 2:5, D:].isnan().any()


EMULATED_CASES = ["nan in k", "+inf in k", "-inf in k", "nan in v", "+inf in v", "nan in k_pad", "nan in rel_bias"]


@pytest.mark.parametrize("family", ["rows", "tiles", "mma"])
@pytest.mark.parametrize("case", EMULATED_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_kernels_propagate_special_values(family, case, dtype):
    import emulated_ops

    ops = emulated_ops.load()
    t = make(case, dtype, "zeros")
    grad_out = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1)).to(dtype)
    want, want_grads = expected(t, "zeros", grad_out)
    q, k, v = t["q"], t["k"], t["v"]
    args = ([3, 3], HEADS, D ** -0.5, list(OFFSET), "zeros", t["k_pad"], t["v_pad"], t["rel_bias"], family, 0)
    out, lse = ops.window_attention_forward_emulated(q, k, v, *args)
    assert_same_specials(out, want, f"{family}, {case}, {dtype}, output")
    if math.isnan(CASES[case][2]):
        grads = ops.window_attention_backward_emulated(grad_out, q, k, v, out, lse, *args)
        for (name, w), g in zip(want_grads.items(), grads):
            assert torch.equal(g.isnan(), w.isnan()), f"{family}, {case}, {dtype}: NaN positions of grad {name} differ"
