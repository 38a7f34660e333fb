#!/usr/bin/env python
"""Whole-network throughput: training steps and inference, in images per second, for every
network of the package, with the fused window-attention op against the same network with the
pure-PyTorch reference attention (upstream's formulation) measured in the same run.

Networks (config, input): HigherHRNet-W32 (512 x 512), higher_pose (512 x 512), HRFormer-S and
HRFormer-B (256 x 192), HRNet-W32 (256 x 192). For each: training step (forward, loss, backward,
Adam step) and inference (forward under inference_mode); float32 or bfloat16 autocast; NCHW or
channels-last; eager or torch.compile (fullgraph; the first call's extra time is reported as
compile time). Networks with window attention run twice per setting: with the op ("ours") and
with higherpose.ops.reference.window_attention ("reference"), and the ratio ours / reference is
printed. The training loss is a mean square of every output (the same cost order as the heatmap
loss; the point is the network). Freshly built weights (speed does not depend on them).

    python tools/bench/bench_models.py --device cpu --batch 1 --steps 3 --compile off,on
    python tools/bench/bench_models.py --device cuda --batch 8 --steps 20 --dtypes fp32,bf16 \
        --channels-last off,on --compile off,on --json models.json

Each figure is the median over --steps timed steps after --warmup steps; --rounds repeats the
whole measurement and reports the median of the rounds (the machines are shared and noisy).
"""
import argparse
import itertools
import json
import platform
import statistics
import time

import torch

from higherpose.config import load_config
from higherpose.models import build_model
from higherpose.models.attention import WindowMultiheadAttention, use_attention

NETWORKS = {
    "higher_hrnet_w32": ("crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml", (512, 512)),
    "higher_pose": ("crowd_pose/higher_pose/w32_512_adam_lr1e-3.yaml", (512, 512)),
    "hrformer_s": ("coco/hrt/hrt_small_coco_256x192.yaml", (256, 192)),
    "hrformer_b": ("coco/hrt/hrt_base_coco_256x192.yaml", (256, 192)),
    "hrnet_w32": ("coco/hrnet/w32_256x192_adam_lr1e-3.yaml", (256, 192)),
}
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(name, attention, channels_last, device):
    cfg_file, size = NETWORKS[name]
    torch.manual_seed(0)
    model = build_model(load_config(cfg_file, ["MODEL.PRETRAINED", ""]), is_train=True).to(device)
    has_attention = any(isinstance(m, WindowMultiheadAttention) for m in model.modules())
    if attention == "reference":
        use_attention(model, "reference")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, size, has_attention


def measure(name, mode, dtype, channels_last, compiled, attention, args, device):
    """(images per second, compile seconds or None) of one setting."""
    model, (h, w), _ = build(name, attention, channels_last, device)
    images = torch.randn(args.batch, 3, h, w, device=device)
    if channels_last:
        images = images.to(memory_format=torch.channels_last)
    net = torch.compile(model, fullgraph=True) if compiled else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    autocast = torch.autocast(device.type, dtype=DTYPES[dtype]) if DTYPES[dtype] else None

    def step():
        if mode == "infer":
            model.eval()
            with torch.inference_mode():
                if autocast:
                    with autocast:
                        net(images)
                else:
                    net(images)
            return
        model.train()
        if autocast:
            with autocast:
                outputs = net(images)
        else:
            outputs = net(images)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        loss = sum((o.float() ** 2).mean() for o in outputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def timed():
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        return time.perf_counter() - start

    first = timed()
    for _ in range(args.warmup):
        timed()
    times = [timed() for _ in range(args.steps)]
    median = statistics.median(times)
    return args.batch / median, (first - median) if compiled else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--networks", default=",".join(NETWORKS), help=f"comma list of {', '.join(NETWORKS)}")
    p.add_argument("--modes", default="train,infer")
    p.add_argument("--dtypes", default="fp32", help="comma list of fp32, bf16 (autocast)")
    p.add_argument("--channels-last", default="off", help="comma list of off, on")
    p.add_argument("--compile", default="off", help="comma list of off, on")
    p.add_argument("--attention", default="op,reference",
                   help="comma list of op, reference (networks with window attention)")
    p.add_argument("--batch", type=int, default=None, help="images per step (default 1 on CPU, 8 on CUDA)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 3 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1, help="repeat everything, report medians")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    args.batch = args.batch or (8 if device.type == "cuda" else 1)
    args.steps = args.steps or (20 if device.type == "cuda" else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    split = lambda text: [v for v in text.split(",") if v]  # noqa: E731
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"model throughput: {machine}, torch {torch.__version__}, batch {args.batch}, median of {args.steps} "
          f"steps x {args.rounds} round(s)")
    print(f"{'network':<17}{'mode':<6}{'dtype':<6}{'layout':<8}{'compile':<8}{'ours img/s':>11}{'ref img/s':>10}"
          f"{'ours/ref':>9}{'compile s':>10}")
    rows = []
    for name, mode, dtype, cl, comp in itertools.product(split(args.networks), split(args.modes), split(args.dtypes),
                                                          split(args.channels_last), split(args.compile)):
        _, _, has_attention = build(name, "op", False, device)
        kinds = split(args.attention) if has_attention else ["op"]
        results = {kind: [] for kind in kinds}
        compile_s = []
        for _ in range(args.rounds):
            for kind in kinds:  # interleaved, so a load change hits both alike
                rate, seconds = measure(name, mode, dtype, cl == "on", comp == "on", kind, args, device)
                results[kind].append(rate)
                if seconds is not None and kind == "op":
                    compile_s.append(seconds)
        ours = statistics.median(results["op"]) if "op" in results else None
        ref = statistics.median(results["reference"]) if "reference" in results else None
        row = {"network": name, "mode": mode, "dtype": dtype, "channels_last": cl == "on", "compile": comp == "on",
               "ours_images_per_s": ours, "reference_images_per_s": ref,
               "ours_over_reference": (ours / ref) if ours and ref else None,
               "compile_seconds": statistics.median(compile_s) if compile_s else None}
        rows.append(row)
        def fmt(value, spec, width, suffix=""):
            return (format(value, spec) + suffix if value is not None else "-").rjust(width)

        print(f"{name:<17}{mode:<6}{dtype:<6}{'cl' if cl == 'on' else 'nchw':<8}{comp:<8}{fmt(ours, '.2f', 11)}"
              f"{fmt(ref, '.2f', 10)}{fmt(row['ours_over_reference'], '.2f', 9, 'x')}"
              f"{fmt(row['compile_seconds'], '.1f', 10)}", flush=True)
        if args.json:  # after every row, so an interrupted run keeps what it measured
            with open(args.json, "w") as f:
                json.dump({"machine": machine, "torch": torch.__version__, "batch": args.batch, "steps": args.steps,
                           "rounds": args.rounds, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
