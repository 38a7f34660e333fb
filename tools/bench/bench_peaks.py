"""Benchmark: the fused heatmap-peaks op against the PyTorch composition it replaces.

The baseline is upstream HigherHRNet's peak finding: max_pool2d, an equality mask, topk over the
flattened masked maps and a gather of the tags at the peaks, measured in the same run on the same
inputs. Inputs look like network output: a few Gaussian blobs per map on a low-amplitude noisy
background (CrowdPose: 14 joints, k = 30 people, NMS kernel 5).

CPU: one thread and all threads. CUDA (when present): CUDA-event timing of back-to-back calls
(includes the host-side launch cost) and of CUDA-graph replays (device time only); the
memory-bandwidth bound is the bytes of heatmaps read once divided by the device-to-device copy
bandwidth measured in the same run, and the fraction printed is bound / graph time.

    python tools/bench/bench_peaks.py --device all --repeats 7 --json out.json
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

import higherpose.ops as hops

KERNEL = 5
K = 30
SHAPES = [  # (N, J, H, W, T)
    (1, 14, 128, 128, 1),
    (1, 14, 512, 512, 2),
    (8, 14, 128, 128, 1),
    (8, 14, 128, 128, 2),
]


def make_inputs(n, j, h, w, t, dtype, device, seed=0):
    """Heatmaps with ~10 Gaussian blobs per map on a noisy background, and random tags."""
    g = torch.Generator().manual_seed(seed)
    people = 10
    sigma = 2.0 * max(h, w) / 128
    cy = torch.rand(n, j, people, 1, 1, generator=g) * h
    cx = torch.rand(n, j, people, 1, 1, generator=g) * w
    amp = 0.3 + 0.7 * torch.rand(n, j, people, 1, 1, generator=g)
    yy = torch.arange(h, dtype=torch.float32).view(1, 1, 1, h, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, 1, 1, 1, w)
    blobs = torch.zeros(n, j, h, w)
    for p in range(people):  # one person at a time keeps memory at one map stack
        d2 = (yy - cy[:, :, p:p + 1]) ** 2 + (xx - cx[:, :, p:p + 1]) ** 2
        blobs = torch.maximum(blobs, (amp[:, :, p:p + 1] * torch.exp(-d2 / (2 * sigma ** 2)))[:, :, 0])
    heatmaps = blobs + 0.01 * torch.rand(n, j, h, w, generator=g)
    tags = torch.randn(n, j, h, w, t, generator=g)
    return heatmaps.to(device=device, dtype=dtype), tags.to(device=device, dtype=dtype)


def composition(heatmaps, tags, kernel=KERNEL, k=K):
    """Upstream's peak finding as PyTorch ops: max-pool NMS, equality mask, topk, tag gather."""
    n, j, h, w = heatmaps.shape
    t = tags.shape[-1]
    pooled = F.max_pool2d(heatmaps, kernel, 1, kernel // 2)
    kept = heatmaps * torch.eq(pooled, heatmaps).to(heatmaps.dtype)
    values, index = kept.view(n, j, -1).topk(k, dim=2)
    peak_tags = tags.reshape(n, j, h * w, t).gather(2, index.unsqueeze(-1).expand(n, j, k, t))
    return values, index % w, index // w, peak_tags


def fused(heatmaps, tags, kernel=KERNEL, k=K):
    return hops.heatmap_peaks(heatmaps, tags, kernel, k)


def time_cpu(fn, args, repeats, inner):
    fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn(*args)
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def time_cuda_events(fn, args, repeats, inner):
    for _ in range(3):
        fn(*args)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn(*args)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / inner)
    return statistics.median(times)


def time_cuda_graph(fn, args, repeats, inner):
    """Device time per call: `inner` calls captured in one CUDA graph, replayed."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn(*args)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(inner):
            fn(*args)
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / inner)
    return statistics.median(times)


def copy_bandwidth(device, nbytes=256 << 20, repeats=10):
    """Device-to-device copy bandwidth in bytes/s (read + write counted), median of repeats."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * nbytes / statistics.median(times)


def check_same(a, b):
    """The fused op and the composition must agree on the peaks' values (sanity, not a test)."""
    return torch.equal(a[0].float(), b[0].float())


def shape_name(shape):
    n, j, h, w, t = shape
    return f"{n}x{j}x{h}x{w} T={t}"


def bench_cpu(repeats, rows, threads_label, threads):
    torch.set_num_threads(threads)
    for shape in SHAPES:
        heatmaps, tags = make_inputs(*shape, torch.float32, "cpu")
        inner = 20 if shape[2] <= 128 and shape[0] == 1 else 3
        base = time_cpu(composition, (heatmaps, tags), repeats, inner)
        ours = time_cpu(fused, (heatmaps, tags), repeats, inner)
        row = dict(device="cpu", threads=threads_label, shape=shape_name(shape), dtype="float32",
                   baseline_ms=base * 1e3, fused_ms=ours * 1e3, speedup=base / ours,
                   same_values=check_same(fused(heatmaps, tags), composition(heatmaps, tags)))
        rows.append(row)
        print(f"cpu  {threads_label:>9}  {row['shape']:<20} float32   composition {row['baseline_ms']:9.3f} ms"
              f"   fused {row['fused_ms']:9.3f} ms   x{row['speedup']:6.2f}   same values: {row['same_values']}",
              flush=True)


def bench_cuda(repeats, rows, dtypes):
    device = torch.device("cuda")
    bandwidth = copy_bandwidth(device)
    print(f"cuda {torch.cuda.get_device_name(device)}: measured device-to-device copy bandwidth "
          f"{bandwidth / 1e12:.3f} TB/s", flush=True)
    for dtype in dtypes:
        for shape in SHAPES:
            heatmaps, tags = make_inputs(*shape, dtype, device)
            bound = heatmaps.numel() * heatmaps.element_size() / bandwidth
            base_ev = time_cuda_events(composition, (heatmaps, tags), repeats, 50)
            ours_ev = time_cuda_events(fused, (heatmaps, tags), repeats, 50)
            base_gr = time_cuda_graph(composition, (heatmaps, tags), repeats, 20)
            ours_gr = time_cuda_graph(fused, (heatmaps, tags), repeats, 20)
            name = str(dtype).replace("torch.", "")
            row = dict(device="cuda", gpu=torch.cuda.get_device_name(device), shape=shape_name(shape),
                       dtype=name, baseline_ms=base_ev * 1e3, fused_ms=ours_ev * 1e3,
                       speedup=base_ev / ours_ev, baseline_graph_ms=base_gr * 1e3,
                       fused_graph_ms=ours_gr * 1e3, speedup_graph=base_gr / ours_gr,
                       bandwidth_bound_ms=bound * 1e3, fraction_of_bound=bound / ours_gr,
                       copy_bandwidth_tbs=bandwidth / 1e12,
                       same_values=check_same(fused(heatmaps, tags), composition(heatmaps, tags)))
            rows.append(row)
            print(f"cuda {row['shape']:<20} {name:<9} events: composition {row['baseline_ms']*1e3:8.1f} us"
                  f"  fused {row['fused_ms']*1e3:8.1f} us  x{row['speedup']:5.2f} | graph: composition "
                  f"{row['baseline_graph_ms']*1e3:8.1f} us  fused {row['fused_graph_ms']*1e3:8.1f} us"
                  f"  x{row['speedup_graph']:5.2f} | bound {row['bandwidth_bound_ms']*1e3:6.2f} us"
                  f"  fraction {row['fraction_of_bound']:.2f} | same values: {row['same_values']}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is printed")
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    parser.add_argument("--no-half", action="store_true", help="CUDA: float32 only")
    args = parser.parse_args(argv)

    print(f"heatmap peaks: kernel {KERNEL}, k {K}; baseline = max_pool2d + eq + topk + gather "
          f"(torch {torch.__version__})", flush=True)
    rows = []
    if args.device in ("cpu", "all"):
        all_threads = torch.get_num_threads()
        bench_cpu(args.repeats, rows, "1 thread", 1)
        bench_cpu(args.repeats, rows, f"{all_threads} threads", all_threads)
        torch.set_num_threads(all_threads)
    if args.device in ("cuda", "all"):
        if torch.cuda.is_available() and hops.cuda_compiled():
            dtypes = [torch.float32] if args.no_half else [torch.float32, torch.float16, torch.bfloat16]
            bench_cuda(args.repeats, rows, dtypes)
        elif args.device == "cuda":
            raise SystemExit("bench_peaks: --device cuda asked for, but no GPU or no CUDA kernels were built")
        else:
            print("cuda: skipped (no GPU, or higherpose was built without CUDA)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
