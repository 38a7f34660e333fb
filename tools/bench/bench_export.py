#!/usr/bin/env python
"""Throughput of the exported bottom-up pipeline (an AOTInductor package, higherpose.deploy) against
the eager Predictor at the same settings, measured in the same run, interleaved round by round.

Both take the same uint8 BGR images of the exported size and return the same poses
(tests/test_deploy.py); the Predictor does its pre- and post-processing with numpy / OpenCV on the
host around the eager network, the package runs the whole pipeline as generated code.

    python tools/bench/bench_export.py                                   # tiny synthetic config, CPU
    python tools/bench/bench_export.py --cfg experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml \
        --device cuda --batches 1,8 --flip
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from higherpose import Predictor, deploy


def images_for(size, count, seed=0):
    """Synthetic-crowd-like test images: smooth random blobs (values do not change the work much)."""
    rng = np.random.default_rng(seed)
    w, h = size
    return [np.clip(rng.normal(127, 60, (h, w, 3)), 0, 255).astype(np.uint8) for _ in range(count)]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", default="synthetic/higher_hrnet_tiny.yaml")
    p.add_argument("--weights", default=None, help="checkpoint (default: the freshly built weights)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", default="1,8", help="comma list of batch sizes")
    p.add_argument("--flip", action="store_true", help="flip test on (default: the config's)")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per batch size (median reported)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = ["TEST.FLIP_TEST", "True"] if args.flip else []
    device = torch.device(args.device)
    torch.manual_seed(0)
    predictor = Predictor(args.cfg, args.weights, device=device, opts=opts)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        package = deploy.export(predictor.cfg, args.weights, os.path.join(tmp, "pose.pt2"), device=args.device)
        export_s = time.perf_counter() - start
        program = deploy.load(package)
    size = program.image_size
    print(f"export + AOTInductor compile: {export_s:.1f} s; {predictor.cfg.MODEL.NAME}, {size[0]}x{size[1]}, "
          f"flip {program.info['flip_test']}, {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'batch':>5}  {'eager img/s':>11}  {'exported img/s':>14}  {'exported/eager':>14}")
    for batch in [int(b) for b in args.batches.split(",") if b]:
        images = images_for(size, batch)
        for _ in range(2):  # warm-up
            predictor(images), program(images)
        eager, exported = [], []
        for _ in range(args.rounds):
            eager.append(timed(lambda: predictor(images, batch_size=batch), device))
            exported.append(timed(lambda: program(images), device))
        e, x = batch / statistics.median(eager), batch / statistics.median(exported)
        print(f"{batch:>5}  {e:>11.1f}  {x:>14.1f}  {x / e:>13.2f}x")


if __name__ == "__main__":
    main()
