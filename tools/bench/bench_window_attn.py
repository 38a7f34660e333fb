"""Benchmark of the fused window-attention op against two baselines measured in the same run.

Baselines (HRFormer "zeros" semantics, centre-padding grid, pad keys/values = k_pad/v_pad):
  reference  higherpose.ops.reference.window_attention: pad -> partition -> matmul/softmax ->
             merge -> crop in plain PyTorch (the upstream formulation);
  sdpa       the same windows batched as [windows, heads, L, d] through
             torch.nn.functional.scaled_dot_product_attention.

Shapes: HRFormer-B branches (C 78/156/312/624, heads 2/4/8/16, 64x48/32x24/16x12/8x6) and
HRFormer-S branch 0 (C 32, 1 head, 64x48). Prints medians of --repeats runs for forward and
forward+backward, peak memory above the inputs on CUDA, and ratios (baseline time / op time,
op memory / baseline memory). On CUDA every kernel family named by --kernels ("rows", "tiles",
"mma"; forced with higherpose.ops.window_attention_kernel) is measured as its own implementation in the same rounds.

    python tools/bench/bench_window_attn.py --device cuda --batch 32 --repeats 20 --json out.json
    python tools/bench/bench_window_attn.py --device cpu --batch 1 --repeats 10
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from higherpose.ops import centre_offset, window_attention, window_attention_kernel
from higherpose.ops.reference.window_attention import relative_position_index, window_grid
from higherpose.ops.reference.window_attention import window_attention as reference_attention

SHAPES = [  # name, channels, heads, H, W
    ("B-branch0", 78, 2, 64, 48),
    ("B-branch1", 156, 4, 32, 24),
    ("B-branch2", 312, 8, 16, 12),
    ("B-branch3", 624, 16, 8, 6),
    ("S-branch0", 32, 1, 64, 48),
]


def sdpa_attention(q, k, v, num_heads, window, scale, offset, pad_mode, k_pad, v_pad, rel_bias):
    """Window attention through F.scaled_dot_product_attention (pad -> partition -> SDPA -> merge)."""
    b, h, w, c = q.shape
    wh, ww = window
    d = c // num_heads
    nh, top, _ = window_grid(h, wh, offset[0])
    nw, left, _ = window_grid(w, ww, offset[1])
    hp, wp = nh * wh, nw * ww

    def pad_partition(x, fill):
        if fill is None:
            out = x.new_zeros((b, hp, wp, c))
        else:
            out = fill.to(x.dtype).expand(b, hp, wp, c).clone()
        out[:, top:top + h, left:left + w] = x
        out = out.reshape(b, nh, wh, nw, ww, num_heads, d).permute(0, 1, 3, 5, 2, 4, 6)
        return out.reshape(b * nh * nw, num_heads, wh * ww, d)

    mask = None
    if rel_bias is not None:
        index = relative_position_index(window).to(rel_bias.device)
        mask = rel_bias[index.flatten()].reshape(wh * ww, wh * ww, num_heads).permute(2, 0, 1).to(q.dtype)
    out = F.scaled_dot_product_attention(pad_partition(q, None), pad_partition(k, k_pad),
                                         pad_partition(v, v_pad), attn_mask=mask, scale=scale)
    out = out.reshape(b, nh, nw, num_heads, wh, ww, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, hp, wp, c)
    return out[:, top:top + h, left:left + w]


BASELINES = {"reference": reference_attention, "sdpa": sdpa_attention}


def op_with_kernel(family):
    """The op with the CUDA kernel family `family` forced (None: the default rule)."""

    def run(*args):
        with window_attention_kernel(family or "auto"):
            return window_attention(*args)

    return run


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_inputs(batch, channels, heads, h, w, dtype, device, rpe):
    g = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    q, k, v = (randn(batch, h, w, channels) for _ in range(3))
    k_pad, v_pad = randn(channels) * 0.1, randn(channels) * 0.1
    rel_bias = randn(169, heads) * 0.02 if rpe else None
    return q, k, v, k_pad, v_pad, rel_bias


def run_once(fn, inputs, heads, backward, grad):
    q, k, v, k_pad, v_pad, rel_bias = inputs
    window = (7, 7)
    offset = centre_offset(q.shape[1], q.shape[2], window)
    scale = (q.shape[-1] // heads) ** -0.5
    if backward:
        out = fn(q, k, v, heads, window, scale, offset, "zeros", k_pad, v_pad, rel_bias)
        out.backward(grad)
    else:
        with torch.no_grad():
            fn(q, k, v, heads, window, scale, offset, "zeros", k_pad, v_pad, rel_bias)


def measure_all(implementations, inputs, heads, backward, repeats, warmup, device, clock):
    """Median seconds of every implementation over `repeats` rounds (the implementations take turns
    inside each round, so a load change on a shared machine hits them alike) and peak memory
    (bytes above what was allocated before the call, CUDA only)."""
    if backward:
        inputs = tuple(t.detach().requires_grad_() if t is not None else None for t in inputs)
    grad = torch.randn_like(inputs[0]) if backward else None

    def clear():
        for t in inputs:
            if t is not None:
                t.grad = None

    for _ in range(warmup):
        for fn in implementations.values():
            run_once(fn, inputs, heads, backward, grad)
            clear()
    sync(device)
    times = {name: [] for name in implementations}
    peaks = {name: None for name in implementations}
    for _ in range(repeats):
        for name, fn in implementations.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            start = clock()
            run_once(fn, inputs, heads, backward, grad)
            sync(device)
            times[name].append(clock() - start)
            if device.type == "cuda":
                peaks[name] = max(peaks[name] or 0, torch.cuda.max_memory_allocated(device) - base)
            clear()
    return {name: (statistics.median(t), peaks[name]) for name, t in times.items()}


def print_goal_summary(results, ops, cuda):
    """Per op: the worst forward+backward speed-up over the reference and, on CUDA, the worst
    peak-memory ratio, with where each happens, against the goals (H100: >= 3x and <= 0.5x at
    every shape; CPU: not slower than the reference)."""
    rows = [r for r in results if r["pass"] == "fwd+bwd"]
    if not rows:
        return
    speedup = 3.0 if cuda else 1.0
    print("goals: " + ("fwd+bwd >= 3x the reference and peak memory <= 0.5x at every shape (H100)" if cuda
                       else "fwd+bwd not slower than the reference at every shape (CPU)"))
    for op in ops:
        worst = min(rows, key=lambda r: r[f"reference_over_{op}"])
        line = (f"  {op}: slowest {worst[f'reference_over_{op}']:.2f}x ({worst['shape']} {worst['dtype']})"
                f" -> {'met' if worst[f'reference_over_{op}'] >= speedup else 'NOT met'}")
        if cuda:
            fattest = max(rows, key=lambda r: r[f"{op}_over_ref_mem"])
            line += (f"; memory at most {fattest[f'{op}_over_ref_mem']:.2f}x ({fattest['shape']} {fattest['dtype']})"
                     f" -> {'met' if fattest[f'{op}_over_ref_mem'] <= 0.5 else 'NOT met'}")
        print(line)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=None, help="default 32 on CUDA, 1 on CPU")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--dtypes", default=None, help="comma list; default float32,bfloat16 (CUDA), float32 (CPU)")
    parser.add_argument("--rpe", action="store_true", help="also add a relative-position-bias table")
    parser.add_argument("--shapes", default=None, help="comma list of shape names (default all)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: elapsed time; cpu: CPU time of this process (steadier on a shared CPU)")
    parser.add_argument("--kernels", default="rows,tiles,mma",
                        help="CUDA kernel families to measure, comma list of rows,tiles,mma (CUDA only)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch or (32 if device.type == "cuda" else 1)
    dtype_names = args.dtypes or ("float32,bfloat16" if device.type == "cuda" else "float32")
    dtypes = [getattr(torch, n) for n in dtype_names.split(",")]
    shapes = [s for s in SHAPES if args.shapes is None or s[0] in args.shapes.split(",")]

    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    if args.clock == "cpu" and device.type == "cuda":
        parser.error("--clock cpu is for --device cpu")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if device.type == "cuda":
        families = [f for f in args.kernels.split(",") if f]
        if not families or any(f not in ("rows", "tiles", "mma") for f in families):
            parser.error(f"--kernels takes rows, tiles and/or mma, got {args.kernels!r}")
        ops = {f"op-{f}": op_with_kernel(f) for f in families}
    else:
        ops = {"op": op_with_kernel(None)}  # the CPU kernels have no families
    implementations = {**ops, **BASELINES}
    print(f"window attention benchmark: {machine}, torch {torch.__version__}, batch {batch}, "
          f"median of {args.repeats}, {args.clock} clock, rpe={args.rpe}")
    header = f"{'shape':<10} {'dtype':<9} {'pass':<7}"
    header += "".join(f" {name + ' ms':>12}" for name in ops) + f" {'ref ms':>8} {'sdpa ms':>8}"
    header += "".join(f" {'ref/' + name:>12}" for name in ops) + f" {'sdpa/' + next(iter(ops)):>12}"
    if device.type == "cuda":
        header += "".join(f" {name + ' MB':>12}" for name in ops) + f" {'ref MB':>8} {'sdpa MB':>8}"
        header += "".join(f" {name + '/ref mem':>16}" for name in ops)
    print(header)
    results = []
    for name, channels, heads, h, w in shapes:
        for dtype in dtypes:
            inputs = make_inputs(batch, channels, heads, h, w, dtype, device, args.rpe)
            for backward in (False, True):
                row = {"shape": name, "channels": channels, "heads": heads, "H": h, "W": w, "batch": batch,
                       "dtype": str(dtype).replace("torch.", ""), "pass": "fwd+bwd" if backward else "fwd"}
                measured = measure_all(implementations, inputs, heads, backward, args.repeats, args.warmup,
                                       device, clock)
                for impl, (seconds, peak) in measured.items():
                    row[f"{impl}_ms"] = seconds * 1e3
                    row[f"{impl}_peak_mb"] = None if peak is None else peak / 2**20
                for impl in ops:
                    row[f"reference_over_{impl}"] = row["reference_ms"] / row[f"{impl}_ms"]
                    row[f"sdpa_over_{impl}"] = row["sdpa_ms"] / row[f"{impl}_ms"]
                first = next(iter(ops))
                # Kept for readers of older JSON files: the ratios of the first op measured.
                row["ref_over_op"] = row[f"reference_over_{first}"]
                row["sdpa_over_op"] = row[f"sdpa_over_{first}"]
                line = f"{name:<10} {row['dtype']:<9} {row['pass']:<7}"
                line += "".join(f" {row[impl + '_ms']:12.3f}" for impl in ops)
                line += f" {row['reference_ms']:8.3f} {row['sdpa_ms']:8.3f}"
                line += "".join(f" {row['reference_over_' + impl]:12.2f}" for impl in ops)
                line += f" {row['sdpa_over_' + first]:12.2f}"
                if device.type == "cuda":
                    for impl in ops:
                        row[f"{impl}_over_ref_mem"] = row[f"{impl}_peak_mb"] / max(row["reference_peak_mb"], 1e-9)
                    row["op_over_ref_mem"] = row[f"{first}_over_ref_mem"]
                    line += "".join(f" {row[impl + '_peak_mb']:12.1f}" for impl in ops)
                    line += f" {row['reference_peak_mb']:8.1f} {row['sdpa_peak_mb']:8.1f}"
                    line += "".join(f" {row[impl + '_over_ref_mem']:16.2f}" for impl in ops)
                print(line, flush=True)
                results.append(row)
    print_goal_summary(results, list(ops), device.type == "cuda")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "kernels": list(ops), "torch": torch.__version__, "batch": batch, "repeats": args.repeats,
                       "clock": args.clock, "rpe": args.rpe, "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
