"""Benchmark: end-to-end bottom-up evaluation throughput at CrowdPose settings.

Pipeline = tools/valid.py's: HigherHRNet-W32 at input 512 (short side), flip test, stage outputs
averaged, maps projected to the input size (PROJECT2IMAGE; 512 x 704 maps with T = 2 tag maps
for a 4:3 image), then heatmap peaks + grouping + mapping back to the image.

  model  = pre-processing + network (image and mirror as one batch) + map aggregation
  post   = grouping of the projected maps and mapping back to the image

A network with random weights gives flat maps that make grouping trivially cheap, so post is
timed on *planted* maps of the same shape: 20 people with Gaussian joints and well-separated
tags (what a trained network produces on a crowded image). With --weights, post is timed on the
network's own maps instead.

Baseline (same run, same maps): post-processing with the Python reference parser
(`higherpose.ops.reference.group`, upstream's HeatmapParser algorithm in numpy/Python).

    python tools/bench/bench_valid.py --device cuda --images 64 --batch-size 8 --json out.json
    python tools/bench/bench_valid.py --device cuda --images 64 --batch-size 8 --amp bf16 --channels-last
    python tools/bench/bench_valid.py --device cpu --images 1 --batch-size 1 --repeats 1   # a short CPU run

The reference parser is slow (seconds per image at these map sizes), so it is timed on the first
--reference-images images of each run only; its per-image time is what the ratio uses.

Prints medians over --repeats runs and the ratio op / reference; --json writes all figures.
"""
import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CFG = os.path.join(ROOT, "configs", "crowd_pose", "higher_hrnet", "w32_512_adam_lr1e-3.yaml")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--images", type=int, default=32, help="images per run")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward (upstream: 1)")
    p.add_argument("--repeats", type=int, default=3, help="runs; medians are reported")
    p.add_argument("--image-size", default="640x480", help="WxH of the test images (CrowdPose-like 4:3)")
    p.add_argument("--people", type=int, default=20, help="people in the planted maps")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast for the network")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format for the network")
    p.add_argument("--weights", default=None, help="trained checkpoint (post then uses the network's own maps)")
    p.add_argument("--cfg", default=CFG, help="model config (default CrowdPose HigherHRNet-W32-512)")
    p.add_argument("--skip-reference", action="store_true", help="do not time the reference parser")
    p.add_argument("--reference-images", type=int, default=2,
                   help="images per run whose post-processing is also timed with the reference parser")
    p.add_argument("--json", default=None, help="write the figures here")
    return p.parse_args(argv)


def planted_maps(n, j, h, w, t, people, device, seed=0):
    """Heatmaps [n, j, h, w] with `people` Gaussian joints per map, and tags [n, j, h, w, t] that hold
    each person's tag around its joints (nearest joint wins), plus low noise."""
    g = torch.Generator().manual_seed(seed)
    sigma = 4.0  # 2 px at the 1/2-resolution output, projected to the input size
    px = torch.rand(n, people, generator=g) * (w - 40) + 20
    py = torch.rand(n, people, generator=g) * (h - 80) + 40
    offs = torch.randn(n, people, j, 2, generator=g) * torch.tensor([w, h]) * 0.03
    jx = (px[:, :, None] + offs[..., 0]).clamp(0, w - 1)  # [n, P, j]
    jy = (py[:, :, None] + offs[..., 1]).clamp(0, h - 1)
    amp = 0.5 + 0.5 * torch.rand(n, people, j, generator=g)
    person_tag = torch.arange(people, dtype=torch.float32) * 3.0  # separated by > tag threshold
    yy = torch.arange(h, dtype=torch.float32).view(h, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, w)
    heat = torch.zeros(n, j, h, w)
    best = torch.full((n, j, h, w), float("inf"))
    tags = torch.zeros(n, j, h, w)
    for p in range(people):
        d2 = (yy - jy[:, p, :, None, None]) ** 2 + (xx - jx[:, p, :, None, None]) ** 2
        heat = torch.maximum(heat, amp[:, p, :, None, None] * torch.exp(-d2 / (2 * sigma ** 2)))
        closer = d2 < best
        best = torch.where(closer, d2, best)
        tags = torch.where(closer, person_tag[p], tags)
    heat = heat + 0.02 * torch.rand(n, j, h, w, generator=g)
    tags = tags.unsqueeze(-1).repeat(1, 1, 1, 1, t) + 0.05 * torch.randn(n, j, h, w, t, generator=g)
    return heat.to(device), tags.to(device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    args = parse_args(argv)
    from higherpose.config import load_config
    from higherpose.data import dataset_info
    from higherpose.inference import BottomUpInference, BottomUpSettings
    from higherpose.inference.bottom_up import op_parser, reference_parser
    from higherpose.models import build_model, load_checkpoint

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    cfg = load_config(args.cfg)
    model = build_model(cfg, is_train=False)
    if args.weights:
        load_checkpoint(model, args.weights)
    model = model.to(device).eval()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    settings = BottomUpSettings.from_config(cfg, flip_index=dataset_info(cfg.DATASET.DATASET_TEST).flip_index)
    inf = BottomUpInference(model, settings, amp_dtype=amp)
    w, h = (int(v) for v in args.image_size.lower().split("x"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(args.images)]
    batches = [images[i:i + args.batch_size] for i in range(0, len(images), args.batch_size)]

    # warm-up (cudnn autotuning, allocator, first-call overheads)
    heat, tags, centers, scales = inf.maps(batches[0])
    _sync(device)
    map_shape = tuple(heat.shape)
    tag_t = tags.shape[-1]
    if not args.weights:  # one image's planted maps, repeated over the batch
        one = planted_maps(1, heat.shape[1], heat.shape[2], heat.shape[3], tag_t, args.people, device)
        planted = (one[0].repeat(heat.shape[0], 1, 1, 1), one[1].repeat(heat.shape[0], 1, 1, 1, 1))
    with torch.inference_mode():
        op_parser(*(planted if not args.weights else (heat, tags)), settings)  # warm-up of the op
    _sync(device)

    runs = {"model": [], "post_op": [], "post_reference": []}
    persons = {}
    for r in range(args.repeats):
        t_model = t_op = t_ref = 0.0
        n_ref = 0
        for k, batch in enumerate(batches):
            t0 = time.perf_counter()
            with torch.inference_mode():
                heat, tags, centers, scales = inf.maps(batch)
            _sync(device)
            t_model += time.perf_counter() - t0
            post_inputs = (heat, tags) if args.weights else tuple(x[:len(batch)] for x in planted)
            inf.parser = op_parser
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = inf.postprocess(post_inputs[0], post_inputs[1], centers, scales)
            _sync(device)
            t_op += time.perf_counter() - t0
            persons["op"] = sum(len(o[1]) for o in out[:args.reference_images])
            if not args.skip_reference and k == 0:
                # the slow baseline: on the first images of the run only (per-image time is what counts)
                m = min(len(batch), args.reference_images)
                inf.parser = reference_parser
                t0 = time.perf_counter()
                with torch.inference_mode():
                    out = inf.postprocess(post_inputs[0][:m], post_inputs[1][:m], centers[:m], scales[:m])
                t_ref += time.perf_counter() - t0
                n_ref += m
                persons["reference"] = sum(len(o[1]) for o in out)
        n = len(images)
        runs["model"].append(t_model / n)
        runs["post_op"].append(t_op / n)
        if n_ref:
            runs["post_reference"].append(t_ref / n_ref)
            t_ref = t_ref / n_ref * n  # for the per-run line below
        print(f"run {r + 1}/{args.repeats}: model {1e3 * t_model / n:.1f} ms/img, post (op) {1e3 * t_op / n:.1f} "
              f"ms/img" + ("" if args.skip_reference else f", post (reference) {1e3 * t_ref / n:.1f} ms/img"),
              flush=True)

    med = {k: statistics.median(v) for k, v in runs.items() if v}
    e2e_op = med["model"] + med["post_op"]
    res = {
        "benchmark": "bench_valid", "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
        "config": os.path.relpath(args.cfg, ROOT), "input_size": int(cfg.DATASET.INPUT_SIZE),
        "image_size": [w, h], "map_shape": list(map_shape), "tag_maps": int(tag_t), "flip_test": True,
        "project2image": bool(cfg.TEST.PROJECT2IMAGE), "images": len(images), "batch_size": args.batch_size,
        "repeats": args.repeats, "amp": args.amp, "channels_last": args.channels_last,
        "post_inputs": "network maps" if args.weights else f"planted maps, {args.people} people",
        "persons_found": persons,
        "ms_per_image": {k: 1e3 * v for k, v in med.items()},
        "images_per_s": {"end_to_end_op": 1.0 / e2e_op, "model_only": 1.0 / med["model"],
                         "post_op_only": 1.0 / max(med["post_op"], 1e-12)},
    }
    print(f"\nbench_valid on {res['device_name']} ({device}), maps {list(map_shape)} T={tag_t}, "
          f"batch {args.batch_size}, amp {args.amp}, {len(images)} images x {args.repeats} runs (medians)")
    print(f"  model (pre-processing + network with flip + map aggregation): {1e3 * med['model']:.1f} ms/img")
    print(f"  post-processing, compiled ops:                                {1e3 * med['post_op']:.1f} ms/img")
    print(f"  end to end, compiled ops: {1.0 / e2e_op:.2f} images/s")
    if "post_reference" in med:
        e2e_ref = med["model"] + med["post_reference"]
        res["images_per_s"]["end_to_end_reference"] = 1.0 / e2e_ref
        res["speedup_post"] = med["post_reference"] / max(med["post_op"], 1e-12)
        res["speedup_end_to_end"] = e2e_ref / e2e_op
        print(f"  post-processing, Python reference parser (baseline):          {1e3 * med['post_reference']:.1f} ms/img")
        print(f"  end to end, reference parser: {1.0 / e2e_ref:.2f} images/s")
        print(f"  ratio: post-processing {res['speedup_post']:.1f}x faster, end to end {res['speedup_end_to_end']:.2f}x")
    print(f"  persons found on the first {args.reference_images} image(s): {persons}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
