"""The window-attention op (CPU) against the pure-PyTorch reference, hand-worked cases, gradcheck,
opcheck, torch.compile, autocast and bad inputs. CUDA parity is in test_window_attention_cuda.py."""
import math
import os

import pytest
import torch

from higherpose.ops import centre_offset, window_attention
from higherpose.ops.reference.window_attention import window_attention as reference

DTYPE_TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def make(b, h, w, heads, d, dtype=torch.float64, bias_window=None, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    c = heads * d

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_(requires_grad)

    q, k, v = randn(b, h, w, c), randn(b, h, w, c), randn(b, h, w, c)
    k_pad, v_pad = randn(c), randn(c)
    rel_bias = None
    if bias_window is not None:
        wh, ww = bias_window
        rel_bias = randn((2 * wh - 1) * (2 * ww - 1), heads)
    return q, k, v, k_pad, v_pad, rel_bias


CASES = [  # b, h, w, heads, d, window, offset
    (2, 11, 9, 3, 13, (7, 5), (3, 2)),   # odd sizes, rectangular window
    (1, 16, 12, 2, 18, (7, 7), (1, 0)),  # HRFormer-T head_dim, 16x12 with centre padding
    (1, 8, 6, 1, 32, (7, 7), (3, 0)),    # HRFormer-S head_dim
    (1, 9, 13, 2, 39, (7, 7), (6, 6)),   # HRFormer-B head_dim, largest offset
    (2, 7, 14, 1, 64, (7, 7), (0, 0)),   # multiples of the window, no padding
    (1, 5, 6, 2, 8, (2, 3), (1, 2)),     # small rectangular windows
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("pad_mode", ["zeros", "mask"])
@pytest.mark.parametrize("case", CASES)
def test_forward_backward_match_reference(case, pad_mode, with_bias, dtype):
    b, h, w, heads, d, window, offset = case
    q, k, v, k_pad, v_pad, rel_bias = make(b, h, w, heads, d, dtype, window if with_bias else None,
                                           requires_grad=True)
    args = (q, k, v, heads, window, None, offset, pad_mode, k_pad, v_pad, rel_bias)
    out = window_attention(*args)
    expected = reference(*args)
    tol = DTYPE_TOL[dtype]
    torch.testing.assert_close(out, expected, atol=tol, rtol=tol)
    inputs = [t for t in (q, k, v, k_pad, v_pad, rel_bias) if t is not None]
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, inputs, grad, allow_unused=True)
    want = torch.autograd.grad(expected, inputs, grad, allow_unused=True)
    for name, a, e in zip(["q", "k", "v", "k_pad", "v_pad", "rel_bias"], got, want):
        if e is None:  # k_pad / v_pad are unused in "mask" mode
            assert pad_mode == "mask" and name in ("k_pad", "v_pad")
            assert a is None or torch.count_nonzero(a) == 0
            continue
        torch.testing.assert_close(a, e, atol=10 * tol, rtol=10 * tol, msg=f"grad of {name}")


def test_default_pads_are_zeros_and_default_scale():
    q, k, v, _, _, _ = make(1, 10, 9, 2, 5)
    offset = centre_offset(10, 9, (7, 7))
    out = window_attention(q, k, v, 2, 7, offset=offset)
    zeros = torch.zeros(10, dtype=q.dtype)
    expected = reference(q, k, v, 2, (7, 7), 5 ** -0.5, offset, "zeros", zeros, zeros, None)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)


def test_one_by_one_window_returns_values():
    """A 1x1 window holds one key: the softmax weight is 1 and the output is v itself."""
    q, k, v, k_pad, v_pad, _ = make(2, 5, 4, 2, 3)
    out = window_attention(q, k, v, 2, (1, 1), 0.7, (0, 0), "zeros", k_pad, v_pad)
    torch.testing.assert_close(out, v, atol=1e-14, rtol=0)


def test_whole_image_window_in_mask_mode_is_global_attention():
    """With one window that covers the image and padding masked, it is plain global attention."""
    b, h, w, heads, d = 1, 5, 3, 2, 4
    q, k, v, k_pad, v_pad, _ = make(b, h, w, heads, d)
    out = window_attention(q, k, v, heads, (7, 4), 0.5, (1, 1), "mask", k_pad, v_pad)
    qh, kh, vh = (t.reshape(b, h * w, heads, d).transpose(1, 2) for t in (q, k, v))
    attn = torch.softmax(0.5 * qh @ kh.transpose(-1, -2), dim=-1)
    expected = (attn @ vh).transpose(1, 2).reshape(b, h, w, heads * d)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)


def test_zeros_mode_pad_keys_count_by_hand():
    """1x2 image in a 1x3 window (one pad cell): softmax over [q.k0, q.k1, q.k_pad] by hand."""
    q = torch.tensor([[[[1.0], [2.0]]]], dtype=torch.float64)
    k = torch.tensor([[[[0.5], [-1.0]]]], dtype=torch.float64)
    v = torch.tensor([[[[3.0], [5.0]]]], dtype=torch.float64)
    k_pad, v_pad = torch.tensor([2.0], dtype=torch.float64), torch.tensor([-7.0], dtype=torch.float64)
    out = window_attention(q, k, v, 1, (1, 3), 1.0, (0, 0), "zeros", k_pad, v_pad)
    for i, qi in enumerate([1.0, 2.0]):
        logits = torch.tensor([qi * 0.5, qi * -1.0, qi * 2.0], dtype=torch.float64)
        expected = (torch.softmax(logits, 0) * torch.tensor([3.0, 5.0, -7.0], dtype=torch.float64)).sum()
        assert math.isclose(out[0, 0, i, 0].item(), expected.item(), rel_tol=1e-12)


def test_change_at_one_pixel_reaches_only_its_window():
    q, k, v, k_pad, v_pad, _ = make(2, 12, 10, 2, 4)
    offset = (2, 3)
    out = window_attention(q, k, v, 2, 5, None, offset, "zeros", k_pad, v_pad)
    k2 = k.clone()
    k2[1, 6, 4] += 1.0  # window row (6 + 2) // 5 = 1, column (4 + 3) // 5 = 1 of image 1
    out2 = window_attention(q, k2, v, 2, 5, None, offset, "zeros", k_pad, v_pad)
    changed = (out2 - out).abs().amax(-1) > 0
    rows, cols = torch.arange(12)[:, None], torch.arange(10)[None, :]
    in_window = ((rows + 2) // 5 == 1) & ((cols + 3) // 5 == 1)
    assert torch.equal(changed[1], in_window)
    assert not changed[0].any()


def test_strided_inputs():
    b, h, w, heads, d = 2, 9, 8, 2, 6
    c = heads * d
    qkv = torch.randn(b, h, w, 3 * c, dtype=torch.float64)
    q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
    k_pad = torch.randn(2 * c, dtype=torch.float64)[::2]
    v_pad = torch.randn(c, dtype=torch.float64)
    rel_bias = torch.randn(2, 13 * 13, dtype=torch.float64).t()  # [169, 2], transposed strides
    args = (q, k, v, heads, 7, None, (1, 3), "zeros", k_pad, v_pad, rel_bias)
    torch.testing.assert_close(window_attention(*args), reference(q, k, v, heads, (7, 7), None, (1, 3), "zeros",
                                                                  k_pad, v_pad, rel_bias), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_on_cpu(dtype):
    q, k, v, k_pad, v_pad, rel_bias = make(1, 9, 8, 2, 16, torch.float32, (7, 7))
    args = (q, k, v, 2, (7, 7), None, (2, 3), "zeros", k_pad, v_pad, rel_bias)
    expected = reference(*args)
    half = [t.to(dtype) if isinstance(t, torch.Tensor) else t for t in args]
    out = window_attention(*half)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("pad_mode", ["zeros", "mask"])
def test_gradcheck(pad_mode):
    q, k, v, k_pad, v_pad, rel_bias = make(1, 5, 4, 2, 3, bias_window=(3, 2), requires_grad=True)

    def fn(q, k, v, k_pad, v_pad, rel_bias):
        return window_attention(q, k, v, 2, (3, 2), 0.8, (1, 1), pad_mode, k_pad, v_pad, rel_bias)

    inputs = (q, k, v, k_pad, v_pad, rel_bias)
    if pad_mode == "mask":  # k_pad / v_pad take no part
        inputs = (q, k, v, k_pad.detach(), v_pad.detach(), rel_bias)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7)


def test_gradcheck_zeros_mode_without_pads_or_bias():
    q, k, v, _, _, _ = make(2, 4, 5, 1, 2, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q, k, v: window_attention(q, k, v, 1, (3, 3), None, (2, 0), "zeros"), (q, k, v))


def test_opcheck():
    q, k, v, k_pad, v_pad, rel_bias = make(1, 5, 6, 2, 3, torch.float32, (3, 3), requires_grad=True)
    args = (q, k, v, [3, 3], 2, 0.5, [1, 2], "zeros", k_pad, v_pad, rel_bias)
    torch.library.opcheck(torch.ops.higherpose.window_attention.default, args)
    torch.library.opcheck(torch.ops.higherpose.window_attention_forward.default,
                          tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args))
    plain = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
    out, lse = torch.ops.higherpose.window_attention_forward(*plain)
    torch.library.opcheck(torch.ops.higherpose.window_attention_backward.default,
                          (torch.randn_like(out), plain[0], plain[1], plain[2], out, lse) + plain[3:])
    mask_args = (q, k, v, [3, 3], 2, 0.5, [0, 0], "mask", None, None, None)
    torch.library.opcheck(torch.ops.higherpose.window_attention.default, mask_args)


def test_torch_compile_fullgraph_through_op():
    q, k, v, k_pad, v_pad, rel_bias = make(1, 9, 8, 2, 4, torch.float32, (7, 7), requires_grad=True)

    def fn(q, k, v, k_pad, v_pad, rel_bias):
        return window_attention(q, k, v, 2, 7, None, (2, 3), "zeros", k_pad, v_pad, rel_bias).square().sum()

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    inputs = (q, k, v, k_pad, v_pad, rel_bias)
    got = torch.autograd.grad(compiled(*inputs), inputs)
    want = torch.autograd.grad(fn(*inputs), inputs)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e)


def test_autocast_cpu_bfloat16_casts_parameters():
    """Under CPU autocast, bf16 q/k/v meet fp32 pads and bias: the op runs in bf16 and backprops."""
    q, k, v, k_pad, v_pad, rel_bias = make(1, 9, 8, 2, 8, torch.float32, (7, 7), requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = window_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), 2, 7, None, (2, 3), "zeros",
                               k_pad, v_pad, rel_bias)
    assert out.dtype == torch.bfloat16
    expected = reference(q, k, v, 2, (7, 7), None, (2, 3), "zeros", k_pad, v_pad, rel_bias)
    torch.testing.assert_close(out.float(), expected, atol=5e-2, rtol=5e-2)
    out.float().sum().backward()
    for t in (q, k, v, k_pad, v_pad, rel_bias):
        assert t.grad is not None and t.grad.dtype == torch.float32 and torch.isfinite(t.grad).all()


def test_no_grad_and_inference_mode():
    q, k, v, k_pad, v_pad, _ = make(1, 6, 5, 1, 4, torch.float32)
    expected = reference(q, k, v, 1, (3, 3), None, (1, 1), "zeros", k_pad, v_pad, None)
    with torch.inference_mode():
        out = window_attention(q, k, v, 1, 3, None, (1, 1), "zeros", k_pad, v_pad)
    torch.testing.assert_close(out, expected)


def test_empty_batch():
    q = torch.zeros(0, 5, 5, 4)
    assert window_attention(q, q, q, 2, 3).shape == (0, 5, 5, 4)


BAD = [
    (dict(num_heads=3), "does not divide"),
    (dict(num_heads=0), "does not divide"),
    (dict(window=(0, 7)), "window"),
    (dict(window=(7, -1)), "window"),
    # position counts that overflow 64 bits must not slip past the 1024-position limit
    (dict(window=(2**32, 2**32), offset=(0, 0)), "more than 1024 positions"),
    (dict(window=(2**62, 4)), "more than 1024 positions"),
    (dict(window=(2**63 - 1, 2)), "more than 1024 positions"),
    (dict(window=(1025, 1)), "more than 1024 positions"),
    (dict(offset=(7, 0)), "offset"),
    (dict(offset=(0, -1)), "offset"),
    (dict(pad_mode="reflect"), "pad_mode"),
    (dict(k=torch.zeros(1, 9, 7, 8)), "k shape"),
    (dict(v=torch.zeros(1, 9, 8, 8, dtype=torch.float64)), "v dtype"),
    (dict(q=torch.zeros(9, 8, 8)), "q must be"),
    (dict(k_pad=torch.zeros(7)), "k_pad must be"),
    (dict(v_pad=torch.zeros(8, dtype=torch.float64)), "v_pad dtype"),
    (dict(rel_bias=torch.zeros(169, 3)), "rel_bias must be"),
    (dict(rel_bias=torch.zeros(168, 2)), "rel_bias must be"),
    (dict(rel_bias=torch.zeros(169, 2, dtype=torch.float16)), "rel_bias dtype"),
    (dict(q=torch.zeros(1, 9, 8, 8, dtype=torch.int64), k=torch.zeros(1, 9, 8, 8, dtype=torch.int64),
          v=torch.zeros(1, 9, 8, 8, dtype=torch.int64)), "floating"),
]


# Integer arguments are integers: a float is refused with a TypeError naming it, never truncated.
NOT_INTEGERS = [
    (dict(num_heads=1.5), "num_heads must be an integer"),
    (dict(num_heads=True), "num_heads must be an integer"),
    (dict(window=(3.9, 3.9)), r"window\[0\] must be an integer"),
    (dict(window=2.0), "window must be an integer or a sequence"),
    (dict(window=(7, 7, 7)), "window must have 2 entries"),
    (dict(offset=(0.9, 0.9)), r"offset\[0\] must be an integer"),
    (dict(scale="0.5"), "scale must be a real number"),
    (dict(pad_mode=0), "pad_mode must be"),
]


@pytest.mark.parametrize("change,message", BAD + NOT_INTEGERS,
                         ids=[m + str(i) for i, (_, m) in enumerate(BAD + NOT_INTEGERS)])
def test_bad_inputs_raise_clear_errors(change, message):
    args = dict(q=torch.zeros(1, 9, 8, 8), k=torch.zeros(1, 9, 8, 8), v=torch.zeros(1, 9, 8, 8), num_heads=2,
                window=(7, 7), scale=None, offset=(0, 0), pad_mode="zeros", k_pad=torch.zeros(8),
                v_pad=torch.zeros(8), rel_bias=None)
    args.update(change)
    with pytest.raises((RuntimeError, ValueError, TypeError), match=message):
        window_attention(**args)


@pytest.mark.parametrize("change,message", BAD, ids=[m + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_inputs_fail_the_same_way_in_the_meta_kernel(change, message):
    # The checks are written once and run on every path: meta tensors reach the C++ Meta kernel.
    args = dict(q=torch.zeros(1, 9, 8, 8), k=torch.zeros(1, 9, 8, 8), v=torch.zeros(1, 9, 8, 8), num_heads=2,
                window=(7, 7), scale=None, offset=(0, 0), pad_mode="zeros", k_pad=torch.zeros(8),
                v_pad=torch.zeros(8), rel_bias=None)
    args.update(change)
    args = {name: value.to("meta") if isinstance(value, torch.Tensor) else value for name, value in args.items()}
    with pytest.raises((RuntimeError, ValueError), match=message):
        window_attention(**args)


def test_zero_channels_are_refused():
    q = torch.zeros(1, 4, 4, 0)
    with pytest.raises(RuntimeError, match="q has no channels"):
        window_attention(q, q, q, 2, 3)


def test_double_backward_is_refused_at_the_first_backward():
    q, k, v, k_pad, v_pad, _ = make(1, 6, 5, 1, 4, torch.float64)
    q.requires_grad_()
    out = window_attention(q, k, v, 1, 3, None, (1, 1), "zeros", k_pad, v_pad)
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        torch.autograd.grad(out.sum(), q, create_graph=True)
    # without create_graph the same backward runs (and matches the reference)
    out = window_attention(q, k, v, 1, 3, None, (1, 1), "zeros", k_pad, v_pad)
    (grad,) = torch.autograd.grad(out.sum(), q)
    expected = reference(q, k, v, 1, (3, 3), None, (1, 1), "zeros", k_pad, v_pad, None)
    (want,) = torch.autograd.grad(expected.sum(), q)
    torch.testing.assert_close(grad, want)


def test_bad_inputs_under_compile_raise():
    def fn(q):
        return window_attention(q, q, q, 2, 7, None, (7, 0))

    with pytest.raises(Exception, match="offset"):
        torch.compile(fn, backend="aot_eager", fullgraph=True)(torch.zeros(1, 9, 8, 8))


def test_backward_op_checks_lse():
    q = torch.zeros(1, 4, 4, 2)
    with pytest.raises(RuntimeError, match="lse must be"):
        torch.ops.higherpose.window_attention_backward(q, q, q, q, q, torch.zeros(1, 1, 4, 4), [2, 2], 2, 1.0,
                                                       [0, 0], "zeros", None, None, None)


@pytest.mark.skipif(not hasattr(torch, "cuda") or torch.cuda.is_available(), reason="checks the CPU-only build")
def test_device_mismatch_is_reported():
    q = torch.zeros(1, 4, 4, 2)
    with pytest.raises(RuntimeError, match="k_pad is on meta|k_pad"):
        window_attention(q, q, q, 1, 2, None, (0, 0), "zeros", torch.zeros(2, device="meta"))


# ----------------------------------------------------------------------------- CUDA kernel family choice

def test_kernel_family_can_be_forced_and_restored():
    from higherpose.ops import window_attention_kernel

    set_kernel = torch.ops.higherpose.set_window_attention_kernel
    assert set_kernel("auto") == "auto"  # nothing forced in the test process
    with window_attention_kernel("tiles"):
        assert set_kernel("tiles") == "tiles"
        with window_attention_kernel("mma"):
            assert set_kernel("mma") == "mma"
        assert set_kernel("tiles") == "tiles"
    assert set_kernel("auto") == "auto"
    with pytest.raises(RuntimeError, match='kernel family must be "rows", "tiles" or "mma", got "fast"'):
        set_kernel("fast")
    assert set_kernel("auto") == "auto"  # a refused value changes nothing


@pytest.mark.parametrize("value, expected", [("mma", "mma"), ("", "auto"), ("bogus", "HIGHERPOSE_WINDOW_ATTENTION_KERNEL")])
def test_kernel_family_environment_variable_is_read_once(value, expected):
    import subprocess
    import sys

    code = ("import os, torch, higherpose.ops\n"
            "set_kernel = torch.ops.higherpose.set_window_attention_kernel\n"
            "try:\n    first = set_kernel('rows')\nexcept RuntimeError as e:\n    print('error', e); raise SystemExit\n"
            "os.environ['HIGHERPOSE_WINDOW_ATTENTION_KERNEL'] = 'tiles'  # too late: read once\n"
            "print(first, set_kernel('auto'))\n")
    env = dict(os.environ, HIGHERPOSE_WINDOW_ATTENTION_KERNEL=value)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    if expected.startswith("HIGHERPOSE"):
        assert done.stdout.startswith("error") and expected in done.stdout, done.stdout
    else:
        assert done.stdout.split() == [expected, "rows"], done.stdout
