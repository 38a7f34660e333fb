"""Benchmark: the compiled grouping op (ae_group) against the Python reference parser.

The baseline is `higherpose.ops.reference.group`, a numpy + scipy re-implementation of upstream
HigherHRNet's HeatmapParser with upstream's structure and cost (max-pool peaks, per-joint
matching in Python, per-person full-map refine of every joint type), measured in the same run on
the same inputs. Inputs are planted maps (`reference.group.planted_maps`): 20 people with
CrowdPose's 14 joints, 10% of joints missing (so refine has work), at 128x128 with one tag map
and 512x512 with two (what upstream's CrowdPose test parses: maps projected to the image size,
flip adds the second tag map). Settings: the released CrowdPose yamls (NMS 5, detection
threshold 0.1, max 30 people, tag threshold 1, detection value used, adjust and refine on).

CPU, one thread: the whole post-processing, peaks included, for both sides; prints medians, the
ratio and whether the outputs are identical. With --device cuda: the op's whole post-processing
(peaks + grouping + refine) per image at 512x512 / T = 2, CUDA-synchronised wall time.

    python tools/bench/bench_group.py [--device cpu|cuda|all] [--repeats 5]
"""
import argparse
import statistics
import time

import torch

import higherpose.ops as hops
from higherpose.ops.reference import group as ref

CASES = [  # (size, T)
    (128, 1),
    (512, 2),
]
PEOPLE, JOINTS, MISSING = 20, 14, 0.1
SETTINGS = dict(nms_kernel=5, max_people=30, detection_threshold=0.1, tag_threshold=1.0,
                use_detection_val=True, ignore_too_much=False, adjust=True, refine=True)


def median_time(fn, repeats, sync=None):
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        t0 = time.perf_counter()
        out = fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), out


def bench_cpu(repeats):
    torch.set_num_threads(1)
    print("CPU, one thread: ae_group (peaks + grouping + refine) vs the Python reference parser")
    print("(medians; the fastest run in brackets, for a shared machine)")
    print(f"{'maps':>16} {'persons':>8} {'reference ms':>22} {'op ms':>16} {'ratio':>7}  identical")
    for size, t in CASES:
        det, tag = ref.planted_maps(PEOPLE, JOINTS, size, t, seed=size + t, missing=MISSING)
        ref_reps = max(1, repeats if size <= 128 else min(repeats, 3))
        t_ref, best_ref, want = median_time(lambda: ref.ae_group(det, tag, **SETTINGS), ref_reps)
        hops.ae_group(det, tag, **SETTINGS)  # warm-up
        t_op, best_op, got = median_time(lambda: hops.ae_group(det, tag, **SETTINGS), max(repeats, 11))
        same = all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(got, want))
        print(f"{f'1x{JOINTS}x{size}x{size} T={t}':>16} {int(got[2][0]):>8} "
              f"{f'{t_ref * 1e3:.1f} [{best_ref * 1e3:.1f}]':>22} {f'{t_op * 1e3:.2f} [{best_op * 1e3:.2f}]':>16} "
              f"{t_ref / t_op:>6.0f}x  {same}")


def bench_cuda(repeats):
    if not torch.cuda.is_available():
        print("CUDA: no GPU available, skipped")
        return
    size, t = 512, 2
    det, tag = ref.planted_maps(PEOPLE, JOINTS, size, t, seed=size + t, missing=MISSING)
    want = hops.ae_group(det, tag, **SETTINGS)
    det, tag = det.cuda(), tag.cuda()
    sync = torch.cuda.synchronize
    for _ in range(3):
        hops.ae_group(det, tag, **SETTINGS)
    t_gpu, _, got = median_time(lambda: hops.ae_group(det, tag, **SETTINGS), max(repeats, 20), sync)
    same = all(a.shape == b.shape and torch.equal(a.cpu(), b) for a, b in zip(got, want))
    print(f"CUDA ({torch.cuda.get_device_name()}): peaks + grouping + refine, 1x{JOINTS}x{size}x{size} T={t}, "
          f"{int(got[2][0])} persons: median {t_gpu * 1e3:.3f} ms per image (goal <= 2 ms); "
          f"identical to CPU: {same}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.device in ("cpu", "all"):
        bench_cpu(args.repeats)
    if args.device in ("cuda", "all"):
        bench_cuda(args.repeats)


if __name__ == "__main__":
    main()
