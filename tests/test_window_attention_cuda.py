"""CUDA window attention against the CPU kernel (itself held to the pure-PyTorch reference in
test_window_attention.py): forward and backward in float32 / float16 / bfloat16, the module under
autocast and torch.compile, streams and bad inputs, for both CUDA kernel families (chosen by
higherpose.ops.window_attention_kernel). Needs a GPU (`pytest -m cuda`)."""
import subprocess
import sys

import pytest
import torch

from higherpose.models.attention import WindowMultiheadAttention
from higherpose.ops import centre_offset, window_attention, window_attention_kernel
from higherpose.ops.reference.window_attention import window_attention as reference

pytestmark = pytest.mark.cuda

TOL = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}


@pytest.fixture(params=["rows", "tiles", "mma"])
def kernel_family(request):
    """Runs the test once per CUDA kernel family (forced for the test's duration)."""
    with window_attention_kernel(request.param):
        yield request.param


def make(b, h, w, heads, d, window, with_bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = heads * d
    q, k, v = (torch.randn(b, h, w, c, generator=g) for _ in range(3))
    k_pad, v_pad = torch.randn(c, generator=g) * 0.5, torch.randn(c, generator=g) * 0.5
    rel_bias = torch.randn((2 * window[0] - 1) * (2 * window[1] - 1), heads, generator=g) if with_bias else None
    return q, k, v, k_pad, v_pad, rel_bias


def run(inputs, heads, window, offset, pad_mode, grad):
    inputs = [t.detach().requires_grad_() if t is not None else None for t in inputs]
    out = window_attention(inputs[0], inputs[1], inputs[2], heads, window, None, offset, pad_mode, *inputs[3:])
    grads = torch.autograd.grad(out, [t for t in inputs if t is not None], grad.to(out.dtype), allow_unused=True)
    return out, grads


CASES = [  # b, h, w, heads, d, window, offset
    (2, 11, 9, 3, 13, (7, 5), (3, 2)),
    (2, 16, 12, 2, 18, (7, 7), (1, 0)),
    (1, 8, 6, 1, 32, (7, 7), (3, 0)),
    (2, 9, 13, 2, 39, (7, 7), (6, 6)),
    (2, 7, 14, 1, 64, (7, 7), (0, 0)),
    (1, 12, 10, 2, 100, (4, 3), (1, 2)),
    (1, 13, 11, 2, 8, (9, 9), (4, 4)),  # 81 rows x 4 lanes > 256 threads: a second pass of row groups
    (1, 10, 9, 1, 72, (7, 7), (2, 3)),  # head_dim > 64: 8 lanes per row, two passes, > 48 KB shared memory
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("pad_mode", ["zeros", "mask"])
@pytest.mark.parametrize("case", CASES)
def test_cuda_matches_cpu(case, pad_mode, with_bias, dtype, kernel_family):
    b, h, w, heads, d, window, offset = case
    inputs = make(b, h, w, heads, d, window, with_bias)
    # The CPU side computes in float32 on the same (rounded) values the GPU sees.
    rounded = [t.to(dtype).float() if t is not None else None for t in inputs]
    grad = torch.randn(b, h, w, heads * d).to(dtype).float()
    cpu_out, cpu_grads = run(rounded, heads, window, offset, pad_mode, grad)
    gpu_inputs = [t.to("cuda", dtype) if t is not None else None for t in inputs]
    gpu_out, gpu_grads = run(gpu_inputs, heads, window, offset, pad_mode, grad.cuda())
    assert gpu_out.dtype == dtype and gpu_out.is_cuda
    tol = TOL[dtype]
    torch.testing.assert_close(gpu_out.float().cpu(), cpu_out, atol=tol, rtol=tol)
    names = [n for n, t in zip(["q", "k", "v", "k_pad", "v_pad", "rel_bias"], inputs) if t is not None]
    for name, a, e in zip(names, gpu_grads, cpu_grads):
        if e is None:
            assert a is None or torch.count_nonzero(a) == 0, name
            continue
        scale = max(1.0, e.abs().max().item())  # summed gradients (pads, bias) grow with the tile count
        torch.testing.assert_close(a.float().cpu() / scale, e / scale, atol=4 * tol, rtol=4 * tol, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_hrformer_b_branch0_against_reference(dtype, kernel_family):
    """Batch 4 of HRFormer-B's first branch (C 78, 2 heads, 64x48) against the pure-PyTorch reference."""
    q, k, v, k_pad, v_pad, _ = (t.cuda() if t is not None else None for t in make(4, 64, 48, 2, 39, (7, 7), False))
    offset = centre_offset(64, 48, (7, 7))
    args = [t.to(dtype) for t in (q, k, v)]
    out = window_attention(*args, 2, 7, None, offset, "zeros", k_pad.to(dtype), v_pad.to(dtype))
    expected = reference(q, k, v, 2, (7, 7), None, offset, "zeros", k_pad, v_pad, None)
    tol = TOL[dtype]
    torch.testing.assert_close(out.float(), expected, atol=tol, rtol=tol)


def test_strided_inputs_on_cuda(kernel_family):
    b, h, w, heads, d = 2, 9, 8, 2, 6
    c = heads * d
    qkv = torch.randn(b, h, w, 3 * c, device="cuda")
    q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
    k_pad = torch.randn(2 * c, device="cuda")[::2]
    v_pad = torch.randn(c, device="cuda")
    out = window_attention(q, k, v, heads, 7, None, (1, 3), "zeros", k_pad, v_pad)
    expected = window_attention(q.cpu(), k.cpu(), v.cpu(), heads, 7, None, (1, 3), "zeros", k_pad.cpu(), v_pad.cpu())
    torch.testing.assert_close(out.cpu(), expected, atol=1e-5, rtol=1e-5)


def test_runs_on_the_current_stream(kernel_family):
    inputs = [t.cuda() for t in make(2, 16, 12, 2, 18, (7, 7), False)[:5]]
    expected = window_attention(*inputs[:3], 2, 7, None, (1, 0), "zeros", *inputs[3:])
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = window_attention(*inputs[:3], 2, 7, None, (1, 0), "zeros", *inputs[3:])
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_module_under_cuda_autocast(dtype, kernel_family):
    module = WindowMultiheadAttention(78, 2, with_rpe=True).cuda()
    x = torch.randn(2, 16, 12, 78, device="cuda")
    with torch.no_grad():
        expected = module(x)
    with torch.autocast("cuda", dtype=dtype):
        out = module(x)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, atol=TOL[dtype], rtol=TOL[dtype])
    out.float().sum().backward()
    assert module.relative_position_bias_table.grad.dtype == torch.float32
    assert torch.isfinite(module.k_proj.bias.grad).all()


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_module_on_cuda(backend, kernel_family):
    if backend == "inductor":
        pytest.importorskip("triton", reason="inductor on CUDA needs triton")
    module = WindowMultiheadAttention(64, 2, with_rpe=True).cuda()
    x = torch.randn(2, 16, 12, 64, device="cuda", requires_grad=True)
    compiled = torch.compile(module, backend=backend, fullgraph=True)
    out = compiled(x)
    torch.testing.assert_close(out, module(x), atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_cuda_bad_inputs():
    q = torch.zeros(1, 9, 8, 8, device="cuda")
    with pytest.raises(RuntimeError, match="k_pad is on"):
        window_attention(q, q, q, 2, 7, None, (0, 0), "zeros", torch.zeros(8), None)
    with pytest.raises(RuntimeError, match="k is on|differs"):
        window_attention(q, q.cpu(), q, 2, 7)
    with pytest.raises(RuntimeError, match="float64"):
        qd = q.double()
        window_attention(qd, qd, qd, 2, 7)
    # head_dim > 128: test_head_dim_over_128_is_refused_in_a_process_that_survives


def test_unknown_kernel_family_is_refused():
    with pytest.raises(RuntimeError, match='kernel family must be "rows", "tiles" or "mma"'):
        with window_attention_kernel("fastest"):
            pass


def test_head_dim_over_128_is_refused_in_a_process_that_survives():
    # In a child process, so that a crash (as once reported on an H100) fails this test with the
    # signal instead of ending the test run; the op's own check must raise a RuntimeError.
    code = ("import torch, higherpose.ops as ops\n"
            "big = torch.zeros(1, 4, 4, 2 * 130, device='cuda')\n"
            "try:\n    ops.window_attention(big, big, big, 2, 7)\nexcept RuntimeError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit status {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert "head_dim up to 128" in done.stdout, done.stdout + done.stderr

