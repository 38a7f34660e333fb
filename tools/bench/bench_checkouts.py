#!/usr/bin/env python
"""Before/after of a speed change: the same network step timed with two source trees of the package
(e.g. `git worktree add /tmp/before <commit>`), alternating between them round by round so that
load on a shared machine hits both alike. Prints seconds per step (median over rounds) and after /
before.

    git worktree add /tmp/before caf0406~1 && cp higherpose/_C*.so /tmp/before/higherpose/
    python tools/bench/bench_checkouts.py --before /tmp/before --after . --networks hrformer_s,hrformer_b

Each round runs every (network, mode, layout) once per tree in a fresh process (PYTHONPATH = the
tree; its `higherpose/_C*.so` must be built or copied there, and the two trees must share the op
schema), building the network from the tree's own packaged config, `--warmup` untimed steps and the
median of `--steps` timed ones. Only `load_config` and `build_model` are used, so older trees work.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys


def worker(cfg_file, h, w, mode, channels_last, steps, warmup, threads):
    """Seconds per step of one setting, with the higherpose found on PYTHONPATH (the worker
    imports nothing else of this repository, so it runs against older trees)."""
    import time

    import torch

    from higherpose.config import load_config
    from higherpose.models import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(load_config(cfg_file, ["MODEL.PRETRAINED", ""]), is_train=True)
    images = torch.randn(1, 3, h, w)
    if channels_last:
        model, images = model.to(memory_format=torch.channels_last), images.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        if mode == "infer":
            model.eval()
            with torch.inference_mode():
                model(images)
            return
        model.train()
        outputs = model(images)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        sum((o ** 2).mean() for o in outputs).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", help="source tree of the baseline")
    p.add_argument("--after", help="source tree with the change")
    p.add_argument("--networks", default="hrformer_s,hrformer_b", help="comma list of bench_models.py's networks")
    p.add_argument("--modes", default="train,infer")
    p.add_argument("--channels-last", default="off,on", help="comma list of off, on")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", nargs=5, metavar=("CFG", "H", "W", "MODE", "CHANNELS_LAST"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        cfg_file, h, w, mode, cl = args.worker
        print(json.dumps(worker(cfg_file, int(h), int(w), mode, cl == "on", args.steps, args.warmup, args.threads)))
        return
    from bench_models import NETWORKS  # the same configs and input sizes (this script's folder)

    if not (args.before and args.after):
        p.error("--before and --after are both needed")
    trees = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    for name, tree in trees.items():
        if not os.path.isfile(os.path.join(tree, "higherpose", "__init__.py")):
            raise SystemExit(f"error: --{name} {tree} holds no higherpose package")
    settings = [(n, m, cl) for n in args.networks.split(",") for m in args.modes.split(",")
                for cl in args.channels_last.split(",")]
    for n, _, _ in settings:
        if n not in NETWORKS:
            raise SystemExit(f"error: unknown network {n!r}; known: {', '.join(NETWORKS)}")
    seconds = {(s, t): [] for s in settings for t in trees}
    for r in range(args.rounds):
        for s in settings:
            for t in (("before", "after") if r % 2 == 0 else ("after", "before")):
                cmd = [sys.executable, os.path.abspath(__file__), "--steps", str(args.steps), "--warmup",
                       str(args.warmup), "--threads", str(args.threads), "--worker", NETWORKS[s[0]][0],
                       *map(str, NETWORKS[s[0]][1]), s[1], s[2]]
                env = {**os.environ, "PYTHONPATH": trees[t]}
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=trees[t])
                if out.returncode:
                    raise SystemExit(f"error: {t} {s} failed:\n{out.stderr[-2000:]}")
                seconds[(s, t)].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"before: {trees['before']}\nafter:  {trees['after']}\n"
          f"{args.threads} threads, batch 1, median of {args.steps} steps, median over {args.rounds} alternating rounds")
    print(f"{'network':<17}{'mode':<6}{'layout':<7}{'before s':>10}{'after s':>10}{'after/before':>14}")
    for s in settings:
        before, after = (statistics.median(seconds[(s, t)]) for t in ("before", "after"))
        print(f"{s[0]:<17}{s[1]:<6}{'cl' if s[2] == 'on' else 'nchw':<7}{before:>10.3f}{after:>10.3f}"
              f"{after / before:>13.3f}x")


if __name__ == "__main__":
    main()
