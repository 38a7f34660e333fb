"""The heatmap-peaks op: CPU kernel vs the pure-PyTorch reference, the reference vs hand-worked
cases, CUDA vs CPU (marked cuda), bad inputs, torch.compile and opcheck."""
import math

import pytest
import torch

import higherpose.ops as hops
from higherpose.ops.reference import heatmap_peaks as reference_peaks

NAN = float("nan")
INF = float("inf")


def flat_index_tags(n, j, h, w, t, dtype=torch.float32, device="cpu"):
    """Tags that spell out where they were read: tag c at (y, x) is (c + 1) * (y * W + x)."""
    flat = torch.arange(h * w, dtype=torch.float64).view(1, 1, h, w, 1)
    scale = torch.arange(1, t + 1, dtype=torch.float64).view(1, 1, 1, 1, t)
    return (flat * scale).expand(n, j, h, w, t).contiguous().to(dtype=dtype, device=device)


def assert_same(got, want):
    names = ("values", "x", "y", "peak_tags")
    for name, g, w in zip(names, got, want):
        assert g.dtype == w.dtype, f"{name}: dtype {g.dtype} != {w.dtype}"
        assert g.shape == w.shape, f"{name}: shape {tuple(g.shape)} != {tuple(w.shape)}"
        torch.testing.assert_close(g.cpu(), w.cpu(), rtol=0, atol=0, equal_nan=True, msg=name)


def check_against_reference(heatmaps, tags, kernel, k):
    got = hops.heatmap_peaks(heatmaps, tags, kernel, k)
    assert_same(got, reference_peaks(heatmaps, tags, kernel, k))
    return got


def planted_gaussians(n, j, h, w, people=6, sigma=1.5, noise=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy = torch.arange(h, dtype=torch.float64).view(h, 1)
    xx = torch.arange(w, dtype=torch.float64).view(1, w)
    maps = torch.zeros(n, j, h, w, dtype=torch.float64)
    for a in range(n):
        for b in range(j):
            for _ in range(people):
                cy, cx = torch.rand(2, generator=g).tolist()
                amp = 0.2 + 0.8 * torch.rand(1, generator=g).item()
                blob = amp * torch.exp(-((yy - cy * h) ** 2 + (xx - cx * w) ** 2) / (2 * sigma ** 2))
                maps[a, b] = torch.maximum(maps[a, b], blob)
    maps += noise * torch.rand(n, j, h, w, generator=g, dtype=torch.float64)
    return maps.float()


# ----------------------------------------------------------------------------------------------
# The reference itself, against cases worked by hand.

TINY = [[1.0, 3.0, 2.0, 2.0],
        [0.0, 1.0, 5.0, 2.0],
        [4.0, 4.0, 0.0, 1.0]]


@pytest.mark.parametrize("impl", [reference_peaks, hops.heatmap_peaks], ids=["reference", "op"])
def test_hand_worked_kernel3(impl):
    # 3x3 suppression: 5 at (y=1, x=2) and the 4 at (2, 0) are peaks (the 4 at (2, 1) sees the 5);
    # k = 4 leaves two slots filled with -inf, x = y = -1 and zero tags.
    heatmaps = torch.tensor(TINY).view(1, 1, 3, 4)
    tags = flat_index_tags(1, 1, 3, 4, 2)
    values, x, y, peak_tags = impl(heatmaps, tags, 3, 4)
    assert values.tolist() == [[[5.0, 4.0, -INF, -INF]]]
    assert x.tolist() == [[[2, 0, -1, -1]]]
    assert y.tolist() == [[[1, 2, -1, -1]]]
    assert peak_tags.tolist() == [[[[6.0, 12.0], [8.0, 16.0], [0.0, 0.0], [0.0, 0.0]]]]


@pytest.mark.parametrize("impl", [reference_peaks, hops.heatmap_peaks], ids=["reference", "op"])
def test_hand_worked_kernel1_ties_by_flat_index(impl):
    # Kernel 1: every pixel is a peak. The two 4s tie; the lower flat index (8) ranks first.
    heatmaps = torch.tensor(TINY).view(1, 1, 3, 4)
    values, x, y, _ = impl(heatmaps, flat_index_tags(1, 1, 3, 4, 1), 1, 4)
    assert values.tolist() == [[[5.0, 4.0, 4.0, 3.0]]]
    assert x.tolist() == [[[2, 0, 1, 1]]]
    assert y.tolist() == [[[1, 2, 2, 0]]]


@pytest.mark.parametrize("impl", [reference_peaks, hops.heatmap_peaks], ids=["reference", "op"])
def test_hand_worked_plateau_and_border(impl):
    # A flat 2x2 map: every pixel equals its neighbourhood's maximum, so all four are peaks, in
    # flat-index order; k = 6 > H*W pads two slots. Pixels outside the map never win.
    heatmaps = torch.full((1, 1, 2, 2), 2.0)
    values, x, y, peak_tags = impl(heatmaps, flat_index_tags(1, 1, 2, 2, 1), 5, 6)
    assert values.tolist() == [[[2.0, 2.0, 2.0, 2.0, -INF, -INF]]]
    assert x.tolist() == [[[0, 1, 0, 1, -1, -1]]]
    assert y.tolist() == [[[0, 0, 1, 1, -1, -1]]]
    assert peak_tags[..., 0].tolist() == [[[0.0, 1.0, 2.0, 3.0, 0.0, 0.0]]]


@pytest.mark.parametrize("impl", [reference_peaks, hops.heatmap_peaks], ids=["reference", "op"])
def test_hand_worked_nan(impl):
    # NaN is never a peak and never suppresses: the 1 next to the NaN is a peak; 0.5 is not
    # (the 1 is its neighbour). An all-NaN map has no peaks. -inf with only NaN around is a peak.
    heatmaps = torch.tensor([[[[NAN, 1.0], [0.0, 0.5]],
                              [[NAN, NAN], [NAN, NAN]],
                              [[NAN, NAN], [NAN, -INF]]]])
    tags = flat_index_tags(1, 3, 2, 2, 1)
    values, x, y, _ = impl(heatmaps, tags, 3, 2)
    assert values.tolist() == [[[1.0, -INF], [-INF, -INF], [-INF, -INF]]]
    assert x.tolist() == [[[1, -1], [-1, -1], [1, -1]]]
    assert y.tolist() == [[[0, -1], [-1, -1], [1, -1]]]


# ----------------------------------------------------------------------------------------------
# CPU kernel against the reference.

@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
@pytest.mark.parametrize("t", [1, 2])
def test_random_maps_match_reference(kernel, t):
    torch.manual_seed(kernel * 10 + t)
    heatmaps = torch.rand(2, 5, 23, 17)
    tags = torch.randn(2, 5, 23, 17, t)
    check_against_reference(heatmaps, tags, kernel, 30)


@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
def test_plateaus_match_reference(kernel):
    # Few distinct values: large plateaus and many equal neighbours, ties everywhere.
    torch.manual_seed(kernel)
    heatmaps = torch.randint(0, 3, (2, 4, 16, 19)).float()
    check_against_reference(heatmaps, torch.randn(2, 4, 16, 19, 2), kernel, 40)


def test_planted_gaussians_found_and_match_reference():
    heatmaps = planted_gaussians(2, 3, 48, 40, people=5, noise=1e-3)
    values, x, y, _ = check_against_reference(heatmaps, torch.randn(2, 3, 48, 40, 2), 5, 8)
    # The strongest peak of every map is its global maximum.
    flat_max = heatmaps.view(2, 3, -1).max(-1)
    assert torch.equal(values[..., 0], flat_max.values)
    assert torch.equal(y[..., 0] * 40 + x[..., 0], flat_max.indices)


def test_border_peaks():
    heatmaps = torch.zeros(1, 2, 8, 8)
    heatmaps[0, 0, 0, 0] = 3.0
    heatmaps[0, 0, 7, 7] = 2.0
    heatmaps[0, 1, 0, 7] = 1.0
    heatmaps[0, 1, 7, 0] = 1.0
    values, x, y, _ = check_against_reference(heatmaps, torch.randn(1, 2, 8, 8, 1), 3, 2)
    assert values[0, 0].tolist() == [3.0, 2.0] and x[0, 0].tolist() == [0, 7]
    assert values[0, 1].tolist() == [1.0, 1.0] and y[0, 1].tolist() == [0, 7]


def test_k_larger_than_map():
    torch.manual_seed(1)
    heatmaps = torch.rand(1, 2, 3, 4)
    values, x, _, _ = check_against_reference(heatmaps, torch.randn(1, 2, 3, 4, 2), 1, 50)
    assert torch.isfinite(values[..., :12]).all() and (values[..., 12:] == -INF).all()
    assert (x[..., 12:] == -1).all()


def test_kernel_larger_than_map():
    torch.manual_seed(2)
    check_against_reference(torch.rand(2, 2, 2, 3), torch.randn(2, 2, 2, 3, 1), 7, 3)


def test_non_contiguous_inputs():
    torch.manual_seed(3)
    base = torch.rand(2, 6, 21, 30)
    heatmaps = base.transpose(2, 3)[:, ::2]  # [2, 3, 30, 21], transposed and strided
    tags = torch.randn(2, 3, 2, 21, 30).permute(0, 1, 4, 3, 2)  # [2, 3, 30, 21, 2]
    assert not heatmaps.is_contiguous() and not tags.is_contiguous()
    got = check_against_reference(heatmaps, tags, 5, 20)
    assert_same(got, hops.heatmap_peaks(heatmaps.contiguous(), tags.contiguous(), 5, 20))


def test_expanded_tags():
    torch.manual_seed(4)
    heatmaps = torch.rand(1, 2, 9, 9)
    tags = torch.randn(1, 1, 9, 9, 1).expand(1, 2, 9, 9, 2)  # zero strides
    check_against_reference(heatmaps, tags, 3, 5)


@pytest.mark.parametrize("shape", [(0, 14, 16, 16), (2, 0, 16, 16), (1, 2, 0, 5), (1, 2, 5, 0)])
def test_empty(shape):
    heatmaps = torch.rand(shape)
    values, x, y, peak_tags = check_against_reference(heatmaps, torch.rand(*shape, 2), 3, 4)
    assert values.shape == (shape[0], shape[1], 4) and peak_tags.shape == (shape[0], shape[1], 4, 2)
    assert (x == -1).all() and (values == -INF).all()


def test_no_tag_maps():
    torch.manual_seed(5)
    check_against_reference(torch.rand(1, 2, 7, 7), torch.rand(1, 2, 7, 7, 0), 3, 4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_dtypes_match_reference(dtype):
    # Compared in the input precision: low-precision rounding creates ties that must break the
    # same way as in the reference.
    torch.manual_seed(6)
    heatmaps = planted_gaussians(2, 3, 20, 24, noise=0.05).to(dtype)
    tags = torch.randn(2, 3, 20, 24, 2).to(dtype)
    values, _, _, peak_tags = check_against_reference(heatmaps, tags, 5, 12)
    assert values.dtype == dtype and peak_tags.dtype == dtype


def test_nan_maps_match_reference():
    torch.manual_seed(7)
    heatmaps = torch.rand(2, 3, 15, 15)
    heatmaps[torch.rand_like(heatmaps) < 0.2] = NAN
    heatmaps[0, 0] = NAN
    values, x, _, _ = check_against_reference(heatmaps, torch.randn(2, 3, 15, 15, 2), 3, 30)
    assert not torch.isnan(values).any()
    assert (values[0, 0] == -INF).all() and (x[0, 0] == -1).all()


def test_infinities_match_reference():
    heatmaps = torch.tensor([[[[INF, 1.0, -INF], [-INF, -INF, -INF], [2.0, -INF, INF]]]])
    check_against_reference(heatmaps, flat_index_tags(1, 1, 3, 3, 1), 3, 5)
    check_against_reference(heatmaps, flat_index_tags(1, 1, 3, 3, 1), 1, 9)


def test_wrapper_defaults_are_crowdpose():
    torch.manual_seed(8)
    heatmaps, tags = torch.rand(1, 14, 32, 32), torch.randn(1, 14, 32, 32, 2)
    assert_same(hops.heatmap_peaks(heatmaps, tags), reference_peaks(heatmaps, tags, 5, 30))


# ----------------------------------------------------------------------------------------------
# Bad inputs: a RuntimeError naming the argument.

def _good():
    return torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8, 2)


BAD_INPUTS = [
    (lambda h, t: (h[0], t, 3, 4), "heatmaps must be"),
    (lambda h, t: (h, t[..., 0], 3, 4), "tags must be"),
    (lambda h, t: (h, t[:, :1], 3, 4), "tags .* do not match heatmaps"),
    (lambda h, t: (h, t[:, :, :7], 3, 4), "tags .* do not match heatmaps"),
    (lambda h, t: (h, t[:, :, :, :5], 3, 4), "tags .* do not match heatmaps"),
    (lambda h, t: (h, t, 4, 4), "kernel must be a positive odd"),
    (lambda h, t: (h, t, 0, 4), "kernel must be a positive odd"),
    (lambda h, t: (h, t, -3, 4), "kernel must be a positive odd"),
    (lambda h, t: (h, t, 3, 0), "k must be at least 1"),
    (lambda h, t: (h.to(torch.int32), t.to(torch.int32), 3, 4), "heatmaps must be a floating dtype"),
    (lambda h, t: (h, t.double(), 3, 4), "tags dtype .* differs from heatmaps"),
    (lambda h, t: (h, t.to("meta"), 3, 4), "tags are on meta but heatmaps are on cpu"),
]


@pytest.mark.parametrize("case, pattern", BAD_INPUTS)
def test_bad_inputs(case, pattern):
    with pytest.raises(RuntimeError, match=pattern):
        hops.heatmap_peaks(*case(*_good()))


@pytest.mark.parametrize("case, pattern", BAD_INPUTS[:-1])  # (the last one mixes devices on purpose)
def test_bad_inputs_fail_the_same_way_in_the_meta_kernel(case, pattern):
    # The checks are written once and run on every path: meta tensors reach the C++ Meta kernel.
    h, t = _good()
    with pytest.raises(RuntimeError, match=pattern):
        hops.heatmap_peaks(*case(h.to("meta"), t.to("meta")))


def test_bad_inputs_reach_the_kernel_checks_directly():
    # The C++ checks, without the Python wrapper.
    h, t = _good()
    with pytest.raises(RuntimeError, match="kernel must be a positive odd"):
        torch.ops.higherpose.heatmap_peaks(h, t, 2, 4)
    with pytest.raises(RuntimeError, match="heatmaps must be a floating dtype"):
        torch.ops.higherpose.heatmap_peaks(h.long(), t.long(), 3, 4)


def test_non_integer_kernel_rejected():
    h, t = _good()
    with pytest.raises(TypeError, match="kernel"):
        hops.heatmap_peaks(h, t, 3.5, 4)
    with pytest.raises(TypeError, match="k must be an integer"):
        hops.heatmap_peaks(h, t, 3, 2.5)


def test_huge_k_is_refused_naming_k():
    h, t = _good()
    # sizes that overflow 64-bit byte counts: refused before any allocation
    with pytest.raises(RuntimeError, match=r"k = 4611686018427387904 is too large"):
        hops.heatmap_peaks(h, t, 3, 2**62)
    # representable but far beyond memory: the allocator's failure names k
    with pytest.raises(RuntimeError, match=r"not enough memory for the outputs of k = 1099511627776"):
        hops.heatmap_peaks(h, t, 3, 2**40)


# ----------------------------------------------------------------------------------------------
# torch.compile and the custom-op checks.

def test_torch_compile_fullgraph():
    def decode(heatmaps, tags):
        values, x, y, peak_tags = hops.heatmap_peaks(heatmaps * 2.0, tags, 3, 6)
        return values.sum(-1), (x + y).float(), peak_tags.mean(-1)

    torch.manual_seed(9)
    heatmaps, tags = torch.rand(2, 3, 12, 12), torch.randn(2, 3, 12, 12, 2)
    compiled = torch.compile(decode, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(heatmaps, tags), decode(heatmaps, tags)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_fake_kernel_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        values, x, y, peak_tags = hops.heatmap_peaks(torch.empty(3, 14, 64, 48), torch.empty(3, 14, 64, 48, 2), 5, 30)
    assert values.shape == (3, 14, 30) and values.dtype == torch.float32
    assert x.dtype == torch.int64 and y.shape == (3, 14, 30) and peak_tags.shape == (3, 14, 30, 2)


def test_opcheck():
    torch.manual_seed(10)
    samples = [
        (torch.rand(2, 3, 10, 11), torch.randn(2, 3, 10, 11, 2), 3, 5),
        (torch.rand(1, 2, 6, 6).transpose(2, 3), torch.randn(1, 2, 6, 6, 1), 5, 40),
    ]
    for args in samples:
        torch.library.opcheck(torch.ops.higherpose.heatmap_peaks.default, args)


# ----------------------------------------------------------------------------------------------
# CUDA against the CPU kernel (same dtype, same results including tie order and fill).

needs_cuda_kernels = pytest.mark.skipif(
    not (torch.cuda.is_available() and hops.cuda_compiled()),
    reason="needs a GPU and higherpose built with its CUDA kernels")


def cuda_vs_cpu(heatmaps, tags, kernel, k):
    got = hops.heatmap_peaks(heatmaps.cuda(), tags.cuda(), kernel, k)
    assert all(o.is_cuda for o in got)
    assert_same(got, hops.heatmap_peaks(heatmaps, tags, kernel, k))
    return got


@pytest.mark.cuda
@needs_cuda_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kernel", [1, 3, 5, 7, 9, 11])
def test_cuda_random_matches_cpu(dtype, kernel):
    torch.manual_seed(kernel)
    heatmaps = planted_gaussians(2, 3, 70, 45, noise=0.05).to(dtype)
    tags = torch.randn(2, 3, 70, 45, 2).to(dtype)
    cuda_vs_cpu(heatmaps, tags, kernel, 30)
    cuda_vs_cpu(torch.rand(2, 3, 70, 45).to(dtype), tags, kernel, 7)


@pytest.mark.cuda
@needs_cuda_kernels
@pytest.mark.parametrize("hw", [(1, 1), (1, 40), (40, 1), (5, 3), (33, 31), (129, 130), (200, 67)])
def test_cuda_odd_sizes_match_cpu(hw):
    h, w = hw
    torch.manual_seed(h * w)
    heatmaps = torch.randint(0, 5, (2, 3, h, w)).float()  # ties and plateaus across tile edges
    tags = torch.randn(2, 3, h, w, 2)
    for kernel in (1, 3, 5, 9, 13):
        cuda_vs_cpu(heatmaps, tags, kernel, 30)


@pytest.mark.cuda
@needs_cuda_kernels
@pytest.mark.parametrize("k", [1, 30, 32, 33, 100, 4096, 5000])
def test_cuda_many_candidates_match_cpu(k):
    # Kernel 1 makes every pixel a candidate (16384 per map, beyond the shared-memory sort):
    # exercises the chunked radix-select path for k > 32 and the register path for k <= 32.
    torch.manual_seed(k)
    heatmaps = torch.randint(0, 7, (1, 3, 128, 128)).float()
    heatmaps[0, 1] = 1.0  # one flat map: all keys share a value, ranked by index alone
    tags = torch.randn(1, 3, 128, 128, 1)
    cuda_vs_cpu(heatmaps, tags, 1, k)
    cuda_vs_cpu(heatmaps, tags, 3, k)


@pytest.mark.cuda
@needs_cuda_kernels
def test_cuda_k_larger_than_map_and_empty():
    torch.manual_seed(11)
    cuda_vs_cpu(torch.rand(2, 2, 3, 4), torch.randn(2, 2, 3, 4, 2), 3, 50)
    cuda_vs_cpu(torch.rand(2, 2, 3, 4), torch.randn(2, 2, 3, 4, 2), 1, 50)
    cuda_vs_cpu(torch.rand(0, 14, 16, 16), torch.randn(0, 14, 16, 16, 2), 5, 30)
    cuda_vs_cpu(torch.rand(1, 2, 0, 16), torch.randn(1, 2, 0, 16, 2), 5, 30)


@pytest.mark.cuda
@needs_cuda_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_non_contiguous_matches_cpu(dtype):
    torch.manual_seed(12)
    heatmaps = torch.rand(2, 8, 50, 61).to(dtype).transpose(2, 3)[:, 1::2]
    tags = torch.randn(2, 4, 2, 61, 50).to(dtype).permute(0, 1, 3, 4, 2)
    got = cuda_vs_cpu(heatmaps, tags, 5, 30)
    assert_same(got, hops.heatmap_peaks(heatmaps.contiguous().cuda(), tags.contiguous().cuda(), 5, 30))


@pytest.mark.cuda
@needs_cuda_kernels
def test_cuda_nan_matches_cpu():
    torch.manual_seed(13)
    heatmaps = torch.rand(2, 3, 40, 40)
    heatmaps[torch.rand_like(heatmaps) < 0.3] = NAN
    heatmaps[1, 2] = NAN
    heatmaps[0, 0, :5, :5] = -INF
    cuda_vs_cpu(heatmaps, torch.randn(2, 3, 40, 40, 2), 3, 30)
    cuda_vs_cpu(heatmaps, torch.randn(2, 3, 40, 40, 2), 11, 30)


@pytest.mark.cuda
@needs_cuda_kernels
def test_cuda_big_maps_match_cpu():
    heatmaps = planted_gaussians(8, 14, 512, 512, people=3, sigma=6.0, noise=1e-3, seed=14)
    tags = torch.randn(8, 14, 512, 512, 2)
    cuda_vs_cpu(heatmaps, tags, 5, 30)
    cuda_vs_cpu(heatmaps[:1].half(), tags[:1].half(), 5, 30)


@pytest.mark.cuda
@needs_cuda_kernels
def test_cuda_float64_rejected_with_a_clear_error():
    with pytest.raises(RuntimeError, match="float64"):
        hops.heatmap_peaks(torch.rand(1, 1, 4, 4, device="cuda", dtype=torch.float64),
                           torch.rand(1, 1, 4, 4, 1, device="cuda", dtype=torch.float64), 3, 2)


@pytest.mark.cuda
@needs_cuda_kernels
def test_cuda_device_mismatch_rejected():
    with pytest.raises(RuntimeError, match="tags are on cpu"):
        hops.heatmap_peaks(torch.rand(1, 1, 4, 4, device="cuda"), torch.rand(1, 1, 4, 4, 1), 3, 2)


@pytest.mark.cuda
@needs_cuda_kernels
def test_cuda_current_stream_and_graph_capture():
    torch.manual_seed(15)
    heatmaps = torch.rand(2, 14, 64, 64, device="cuda")
    tags = torch.randn(2, 14, 64, 64, 2, device="cuda")
    want = hops.heatmap_peaks(heatmaps.cpu(), tags.cpu(), 5, 30)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = hops.heatmap_peaks(heatmaps, tags, 5, 30)
    torch.cuda.current_stream().wait_stream(stream)
    assert_same(got, want)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = hops.heatmap_peaks(heatmaps, tags, 5, 30)
    graph.replay()
    torch.cuda.synchronize()
    assert_same(captured, want)


@pytest.mark.cuda
@needs_cuda_kernels
def test_cuda_opcheck_and_compile():
    torch.manual_seed(16)
    args = (torch.rand(2, 3, 20, 20, device="cuda"), torch.randn(2, 3, 20, 20, 2, device="cuda"), 5, 6)
    torch.library.opcheck(torch.ops.higherpose.heatmap_peaks.default, args)
    compiled = torch.compile(lambda h, t: hops.heatmap_peaks(h, t, 5, 6), fullgraph=True, backend="aot_eager")
    assert_same(compiled(args[0], args[1]), hops.heatmap_peaks(args[0].cpu(), args[1].cpu(), 5, 6))


def test_math_of_flat_index_tags():
    # Guard for the helper the hand-worked tests rely on.
    tags = flat_index_tags(1, 1, 3, 4, 2)
    assert tags[0, 0, 2, 1].tolist() == [9.0, 18.0]
    assert math.isclose(tags.sum().item(), 3 * sum(range(12)))
