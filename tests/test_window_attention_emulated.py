"""The CUDA window-attention kernels, run on the CPU by the block emulator (tests/csrc), against
the pure-PyTorch reference: every kernel family ("rows", "tiles", "mma"), both pad modes, with and
without the bias table, odd sizes, grid offsets, rectangular windows, head_dims 5..128,
fp32/fp16/bf16, strided inputs, shuffled thread schedules. Machines without a GPU (CI) check the kernels' logic
here; on a GPU, test_window_attention_cuda.py runs the same kernels for real."""
import pytest
import torch

from higherpose.ops.reference.window_attention import window_attention as reference

import emulated_ops

forward = emulated_ops.load().window_attention_forward_emulated
backward = emulated_ops.load().window_attention_backward_emulated

FAMILIES = ["rows", "tiles", "mma"]
TOL = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1e-2}

CASES = [  # b, h, w, heads, d, window, offset
    (2, 11, 9, 3, 13, (7, 5), (3, 2)),
    (1, 16, 12, 2, 18, (7, 7), (1, 0)),
    (1, 8, 6, 1, 32, (7, 7), (3, 0)),
    (2, 9, 13, 2, 39, (7, 7), (6, 6)),  # HRFormer-B's head_dim
    (1, 7, 14, 1, 64, (7, 7), (0, 0)),
    (1, 12, 10, 2, 100, (4, 3), (1, 2)),
    (1, 8, 8, 1, 128, (8, 8), (0, 0)),  # the largest tiles window and head_dim
    (1, 13, 11, 2, 8, (9, 9), (4, 4)),  # 81 positions: beyond the tiles kernels, runs on rows
    (1, 3, 2, 2, 5, (1, 1), (0, 0)),  # one-position windows
    (1, 9, 8, 1, 64, (4, 4), (1, 3)),  # one 16-row mma strip with the widest head
]


def make(b, h, w, heads, d, window, with_bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = heads * d
    q, k, v = (torch.randn(b, h, w, c, generator=g) for _ in range(3))
    k_pad, v_pad = torch.randn(c, generator=g) * 0.5, torch.randn(c, generator=g) * 0.5
    rel_bias = torch.randn((2 * window[0] - 1) * (2 * window[1] - 1), heads, generator=g) if with_bias else None
    grad = torch.randn(b, h, w, c, generator=g)
    return [q, k, v, k_pad, v_pad, rel_bias], grad


def expected(inputs, grad, heads, window, offset, pad_mode):
    """Reference output and gradients in float64 (the inputs as the kernel sees them)."""
    leaves = [t.double().requires_grad_() if t is not None else None for t in inputs]
    out = reference(leaves[0], leaves[1], leaves[2], heads, window, None, offset, pad_mode, *leaves[3:])
    out.backward(grad.double())
    return out.detach(), [t.grad if t is not None else None for t in leaves]


def emulated(inputs, grad, heads, window, offset, pad_mode, family, seed):
    q, k, v, k_pad, v_pad, rel_bias = inputs
    scale = (q.shape[-1] // heads) ** -0.5
    args = (list(window), heads, scale, list(offset), pad_mode, k_pad, v_pad, rel_bias, family, seed)
    out, lse = forward(q, k, v, *args)
    grads = backward(grad, q, k, v, out, lse, *args)
    return out, lse, grads


def check(inputs, grad, heads, window, offset, pad_mode, family, seed=0, dtype=torch.float32):
    cast = [t.to(dtype) if t is not None else None for t in inputs]
    out, lse, grads = emulated(cast, grad.to(dtype), heads, window, offset, pad_mode, family, seed)
    assert out.dtype == dtype and lse.dtype == torch.float32
    ref_out, ref_grads = expected(cast, grad.to(dtype), heads, window, offset, pad_mode)
    tol = TOL[dtype]
    torch.testing.assert_close(out.double(), ref_out, atol=tol, rtol=tol)
    for name, got, want in zip(["q", "k", "v", "k_pad", "v_pad", "rel_bias"], grads, ref_grads):
        if want is None:
            continue
        scale = max(1.0, want.abs().max().item())  # summed gradients (pads, bias) grow with the tile count
        torch.testing.assert_close(got.double() / scale, want / scale, atol=4 * tol, rtol=4 * tol, msg=name)
    return lse


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("pad_mode", ["zeros", "mask"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("family", FAMILIES)
def test_emulated_kernels_match_reference(family, case, pad_mode, with_bias):
    b, h, w, heads, d, window, offset = case
    inputs, grad = make(b, h, w, heads, d, window, with_bias)
    check(inputs, grad, heads, window, offset, pad_mode, family)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("family", FAMILIES)
def test_emulated_kernels_half_precision(family, dtype):
    inputs, grad = make(2, 9, 13, 2, 39, (7, 7), True)
    check(inputs, grad, 2, (7, 7), (6, 6), "zeros", family, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("pad_mode", ["zeros", "mask"])
@pytest.mark.parametrize("case", CASES)
def test_emulated_tensor_core_kernels(case, pad_mode, with_bias, dtype):
    """The mma family (float16 / bfloat16 on tensor cores; cases beyond its limits fall back)."""
    b, h, w, heads, d, window, offset = case
    inputs, grad = make(b, h, w, heads, d, window, with_bias)
    check(inputs, grad, heads, window, offset, pad_mode, "mma", dtype=dtype)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("family", FAMILIES)
def test_emulated_kernels_under_shuffled_schedules(family, seed):
    """Threads resumed in a random order between barriers: a missing barrier reads NaN-filled or
    stale shared memory and fails here."""
    inputs, grad = make(1, 10, 9, 2, 18, (7, 7), True, seed=seed)
    check(inputs, grad, 2, (7, 7), (2, 1), "zeros", family, seed=seed)


def test_lse_is_the_log_sum_exp_of_the_logits():
    heads, d = 1, 6
    inputs, grad = make(1, 7, 7, heads, d, (7, 7), False)
    q, k = inputs[0], inputs[1]
    for family in FAMILIES:
        _, lse, _ = emulated(inputs, grad, heads, (7, 7), (0, 0), "mask", family, 0)
        logits = torch.einsum("pc,kc->pk", q.reshape(49, d).double(), k.reshape(49, d).double()) * d ** -0.5
        torch.testing.assert_close(lse.reshape(49).double(), torch.logsumexp(logits, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_emulated_kernels_take_strided_inputs(family):
    b, h, w, heads, d = 2, 9, 8, 2, 6
    c = heads * d
    g = torch.Generator().manual_seed(5)
    qkv = torch.randn(b, h, w, 3 * c, generator=g)
    k_pad = torch.randn(2 * c, generator=g)[::2]
    inputs = [qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:], k_pad, torch.randn(c, generator=g), None]
    grad = torch.randn(b, w, h, c, generator=g).transpose(1, 2)  # non-contiguous output gradient
    check(inputs, grad, heads, (7, 7), (1, 3), "zeros", family)


def test_emulated_ops_refuse_bad_arguments():
    inputs, grad = make(1, 7, 7, 2, 8, (7, 7), False)
    q, k, v = inputs[:3]
    with pytest.raises(RuntimeError, match='kernel must be "rows", "tiles" or "mma"'):
        forward(q, k, v, [7, 7], 2, 0.3, [0, 0], "zeros", None, None, None, "fastest", 0)
    with pytest.raises(RuntimeError, match="seed must be >= 0"):
        forward(q, k, v, [7, 7], 2, 0.3, [0, 0], "zeros", None, None, None, "rows", -1)
    with pytest.raises(RuntimeError, match="float64"):
        forward(q.double(), k.double(), v.double(), [7, 7], 2, 0.3, [0, 0], "zeros", None, None, None, "rows", 0)
    big = torch.zeros(1, 4, 4, 2 * 130)
    with pytest.raises(RuntimeError, match="head_dim up to 128"):
        forward(big, big, big, [7, 7], 2, 0.3, [0, 0], "zeros", None, None, None, "tiles", 0)


def test_emulated_ops_have_fake_kernels():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q = torch.empty(2, 9, 8, 12)
        out, lse = forward(q, q, q, [7, 7], 2, 0.3, [0, 0], "zeros", None, None, None, "tiles", 0)
        grads = backward(q, q, q, q, out, lse, [7, 7], 2, 0.3, [0, 0], "zeros", None, None, None, "tiles", 0)
    assert out.shape == q.shape and lse.shape == (2, 2, 9, 8)
    assert [tuple(g.shape) for g in grads] == [(2, 9, 8, 12)] * 3 + [(12,), (12,), (0,)]
