#!/usr/bin/env python
"""Crowd accuracy study: HigherHRNet against higher_pose (and the neck's ablations) at equal
budget, several seeds each, on the real-layout synthetic crowds; writes ACCURACY.md and a plot.

    python tools/study_crowd_accuracy.py                          # every variant, seeds 0,1,2
    python tools/study_crowd_accuracy.py --variants higher_hrnet,higher_pose --seeds 0,1,2,3
    python tools/study_crowd_accuracy.py --report-only            # rewrite the report from runs/

Every run trains one variant with one seed as a user would (higherpose-train in a fresh process,
the variant's config plus its overrides, SEED set, the same rendered data set for everyone) and
evaluates the final weights with higherpose-valid's code path on the same synthetic test split.
Runs go `--jobs` at a time, each with `--threads` torch threads (on a 2-core machine, two
one-thread runs finish sooner than two two-thread runs in a row). A run whose result file exists
is not run again, so an interrupted study continues where it stopped and new variants or seeds
add to the table. The training seed changes the initial weights and the order and augmentation of
the training images; the rendered images (DATASET.SYNTHETIC.SEED) stay the same.
"""
import argparse
import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

# name -> (packaged config, overrides, what it is). Only MODEL.EXTRA.TRANSFORMER differs between
# the higher_pose variants; the twins differ only in MODEL.NAME and the neck.
VARIANTS = {
    "higher_hrnet": ("synthetic/higher_hrnet_tiny.yaml", [], "HigherHRNet (no neck)"),
    "higher_pose": ("synthetic/higher_pose_tiny.yaml", [], "higher_pose: window attention + joint tokens"),
    "window_only": ("synthetic/higher_pose_tiny.yaml", ["MODEL.EXTRA.TRANSFORMER.JOINT_TOKENS", "False"],
                    "higher_pose neck, window attention only"),
    "tokens_only": ("synthetic/higher_pose_tiny.yaml", ["MODEL.EXTRA.TRANSFORMER.WINDOW_ATTENTION", "False"],
                    "higher_pose neck, joint tokens only"),
    # the synthetic crowds hold 1-3 people per image: 4 slots leave one for the background
    "person_slots": ("synthetic/higher_pose_tiny.yaml", ["MODEL.EXTRA.TRANSFORMER.INSTANCE_TOKENS", "4"],
                     "higher_pose + 4 person slots (Slot Attention tokens) in every block"),
}
METRICS = [("AP", "AP"), ("AP50", "Ap .5"), ("AP75", "AP .75"), ("AR", "AR"), ("AP easy", "AP (easy)"),
           ("AP medium", "AP (medium)"), ("AP hard", "AP (hard)")]


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--seeds", default="0,1,2", help="training seeds (comma list)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per run (default: the configs' TRAIN.END_EPOCH); TRAIN.LR_STEP is scaled with it")
    p.add_argument("--output", default=os.path.join("output", "study"), help="runs, data and logs go here")
    p.add_argument("--jobs", type=int, default=2, help="runs at the same time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--report", default="ACCURACY.md", help="the report to write")
    p.add_argument("--plot", default=os.path.join("docs", "accuracy_study.png"), help="the bar chart to write")
    p.add_argument("--label", default="",
                   help="name of this setting when KEY VALUE overrides are given (runs and table rows carry it)")
    p.add_argument("--report-only", action="store_true", help="only rewrite report and plot from existing runs")
    p.add_argument("--machine", default=None, help="machine description for the report (default: from platform)")
    p.add_argument("--run-one", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)  # worker mode
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every run")
    return p


def run_paths(output, variant, epochs, seed, label=""):
    run_dir = os.path.join(output, "runs", f"{variant}_e{epochs}{'_' + label if label else ''}_seed{seed}")
    return run_dir, os.path.join(run_dir, "result.json")


def budget(args, variant):
    """Epochs of a variant's runs: --epochs, else its config's TRAIN.END_EPOCH."""
    from higherpose.config import load_config
    return args.epochs if args.epochs is not None else int(load_config(VARIANTS[variant][0]).TRAIN.END_EPOCH)


def schedule_overrides(args, variant):
    """--epochs stretches the config's schedule: END_EPOCH and every LR_STEP milestone scaled alike."""
    if args.epochs is None:
        return []
    from higherpose.config import load_config
    train = load_config(VARIANTS[variant][0]).TRAIN
    steps = [max(1, round(m * args.epochs / train.END_EPOCH)) for m in train.LR_STEP]
    return ["TRAIN.END_EPOCH", str(args.epochs), "TRAIN.LR_STEP", str(steps)]


def common_overrides(args):
    """The shared data folder (its own one for a setting that changes the rendered data) + overrides."""
    keys = args.opts[0::2]
    data = "data_" + args.label if any(k.startswith("DATASET.SYNTHETIC.") for k in keys) else "data"
    return ["DATASET.ROOT", os.path.join(os.path.abspath(args.output), data)] + list(args.opts)


def run_one(args, variant, seed):
    """Worker: train one variant with one seed in a fresh process, evaluate it, write result.json."""
    from higherpose.cli import valid
    from higherpose.cli.model_info import measure
    from higherpose.config import load_config, resolve_config_path
    from higherpose.engine.logger import output_dirs

    cfg_name, overrides, _ = VARIANTS[variant]
    run_dir, result_file = run_paths(args.output, variant, budget(args, variant), seed, args.label)
    opts = common_overrides(args) + schedule_overrides(args, variant) + overrides + [
        "SEED", str(seed), "OUTPUT_DIR", os.path.join(run_dir, "train"), "LOG_DIR", os.path.join(run_dir, "log"),
        "WORKERS", "0", "AUTO_RESUME", "True"]
    cfg_file = resolve_config_path(cfg_name)
    cfg = load_config(cfg_file, opts)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    t0 = time.perf_counter()
    with open(os.path.join(run_dir, "train.log"), "w") as log:
        code = subprocess.run([sys.executable, "-m", "higherpose.cli.train", "--cfg", cfg_file] + opts,
                              stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    train_seconds = time.perf_counter() - t0
    if code:
        raise SystemExit(f"{variant} seed {seed}: training exited with status {code}; see {run_dir}/train.log")
    weights = os.path.join(output_dirs(cfg, cfg_file)[0], "final_state.pth.tar")
    t0 = time.perf_counter()
    result = valid.run(["--cfg", cfg_file, "--device", "cpu", "--no-progress"] + opts + ["TEST.MODEL_FILE", weights])
    size = measure(cfg_file, opts)
    record = {"variant": variant, "seed": seed, "config": cfg_name, "overrides": overrides,
              "label": args.label, "settings": list(args.opts),
              "epochs": int(cfg.TRAIN.END_EPOCH), "train_images": int(cfg.DATASET.SYNTHETIC.NUM_TRAIN),
              "test_images": int(cfg.DATASET.SYNTHETIC.NUM_TEST), "threads": args.threads,
              "train_seconds": train_seconds, "eval_seconds": time.perf_counter() - t0,
              "params": size["params"], "macs": size["macs"], "metrics": dict(result["metrics"])}
    with open(result_file + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
    os.replace(result_file + ".tmp", result_file)


def render_data(args):
    """Render the shared data set once, before runs start in parallel (they would race on it)."""
    from higherpose.config import load_config
    from higherpose.data.build import ensure_synthetic

    cfg = load_config(VARIANTS["higher_hrnet"][0], common_overrides(args))
    ensure_synthetic(cfg, cfg.DATASET.DATASET, cfg.DATASET.TRAIN)
    ensure_synthetic(cfg, cfg.DATASET.DATASET_TEST, cfg.DATASET.TEST)


def run_all(args, variants, seeds):
    pending = [(v, s) for v in variants for s in seeds
               if not os.path.isfile(run_paths(args.output, v, budget(args, v), s, args.label)[1])]
    if not pending:
        return
    render_data(args)
    running, failed = [], []
    worker = [sys.executable, os.path.abspath(__file__), "--output", args.output, "--threads", str(args.threads),
              "--label", args.label]
    if args.epochs is not None:
        worker += ["--epochs", str(args.epochs)]
    while pending or running:
        while pending and len(running) < args.jobs:
            v, s = pending.pop(0)
            run_dir = run_paths(args.output, v, budget(args, v), s, args.label)[0]
            os.makedirs(run_dir, exist_ok=True)
            print(f"[study] start {v} seed {s} (log: {run_dir}/run.log)", flush=True)
            with open(os.path.join(run_dir, "run.log"), "w") as log:
                running.append((v, s, subprocess.Popen(worker + ["--run-one", v, str(s)] + list(args.opts),
                                                       stdout=log, stderr=subprocess.STDOUT)))
        time.sleep(2)
        for item in list(running):
            v, s, proc = item
            if proc.poll() is not None:
                running.remove(item)
                print(f"[study] {v} seed {s}: " + ("done" if proc.returncode == 0 else f"FAILED ({proc.returncode})"),
                      flush=True)
                if proc.returncode:
                    failed.append((v, s))
                    with open(os.path.join(run_paths(args.output, v, budget(args, v), s, args.label)[0],
                                           "run.log")) as log:
                        print("".join(log.readlines()[-15:]), flush=True)
    if failed:
        raise SystemExit(f"[study] failed runs: {failed}")


def load_runs(output):
    runs = []
    root = os.path.join(output, "runs")
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, name, "result.json")
        if os.path.isfile(path):
            with open(path) as f:
                run = json.load(f)
            run["tags_apart"] = tags_apart_epoch(os.path.join(root, name))
            runs.append(run)
    return runs


PUSH_LOG = re.compile(r"Epoch: \[(\d+)\]\[\d+/\d+\].*?Stage0-push: ([0-9.eE+-]+)")


def tags_apart_epoch(run_dir):
    """Epochs until the tags of different people separate, read off the training log: the first
    epoch whose mean logged stage-0 push loss is below half of the first logged value (taken while
    all tags are still near zero: push is then at its collapsed level, 0.5 x PUSH_LOSS_FACTOR x the
    share of images with several people). Returns 1-based epochs, 0 if never, None without a log."""
    logs = glob.glob(os.path.join(run_dir, "train", "**", "*.log"), recursive=True)
    if not logs:
        return None
    per_epoch = {}
    with open(max(logs, key=os.path.getsize)) as f:
        for line in f:
            m = PUSH_LOG.search(line)
            if m:
                per_epoch.setdefault(int(m.group(1)), []).append(float(m.group(2)))
    if not per_epoch:
        return None
    collapsed = per_epoch[min(per_epoch)][0]
    for epoch in sorted(per_epoch):
        if statistics.mean(per_epoch[epoch]) < 0.5 * collapsed:
            return epoch + 1
    return 0


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs, variants):
    """One row per (variant, epochs, label), in the order of `variants`, then by budget and label."""
    rows = []
    for v in variants:
        for epochs, label in sorted({(r["epochs"], r.get("label", "")) for r in runs if r["variant"] == v}):
            mine = [r for r in runs if r["variant"] == v and r["epochs"] == epochs and r.get("label", "") == label]
            row = {"variant": v, "what": VARIANTS[v][2] if v in VARIANTS else v, "epochs": epochs, "label": label,
                   "settings": " ".join(mine[0].get("settings", [])),
                   "seeds": sorted(r["seed"] for r in mine), "params": mine[0]["params"], "macs": mine[0]["macs"],
                   "train_minutes": mean_std([r["train_seconds"] / 60 for r in mine]),
                   "tags_apart": [r.get("tags_apart") for r in mine]}
            for label, key in METRICS:
                row[label] = mean_std([r["metrics"][key] for r in mine])
            rows.append(row)
    return rows


def apart_cell(epochs):
    """'3' for one run, '3, 5, 9' for several; 'never' for a run whose tags stayed collapsed."""
    return ", ".join("?" if e is None else "never" if e == 0 else str(e) for e in epochs)


def report(args, variants):
    runs = load_runs(args.output)
    rows = summarise(runs, variants)
    if not rows:
        raise SystemExit(f"[study] no finished runs under {args.output}/runs")
    machine = args.machine or f"{platform.machine()}, {os.cpu_count()} cores ({platform.processor() or 'cpu'})"
    epochs = sorted({r["epochs"] for r in rows})
    threads = sorted({r["threads"] for r in runs})
    lines = ["# Accuracy in crowds: HigherHRNet vs higher_pose", "",
             "Written by `tools/study_crowd_accuracy.py` (rerun it to refresh; `--report-only` rewrites this file "
             "from the saved runs).", "",
             f"- Data: synthetic crowds rendered from the real CrowdPose val person layouts shipped with the package "
             f"(sampled poses where a setting says `DATASET.SYNTHETIC.LAYOUTS none`) "
             f"({runs[0]['train_images']} training / {runs[0]['test_images']} test images, 128 px, 14 joints), "
             f"the same rendered set for every run; evaluated with higherpose-valid's code path (CrowdPose "
             f"metrics, single scale, no flip).",
             f"- Budget: {', '.join(map(str, epochs))} epochs per run (a longer budget stretches the configs' "
             f"LR_STEP alike), every other setting from `configs/synthetic/higher_hrnet_tiny.yaml` / "
             f"`higher_pose_tiny.yaml`; seeds as listed.",
             f"- Machine: {machine}; {', '.join(map(str, threads))} torch thread(s) per run, "
             f"{args.jobs} run(s) at a time (training minutes are wall time under that load).", "",
             "Mean ± standard deviation over seeds:", "",
             "| variant | setting | epochs | seeds | params | GMACs | " + " | ".join(label for label, _ in METRICS)
             + " | tags apart (epoch) | train min |",
             "|---|---|---:|---|---:|---:|" + "---:|" * len(METRICS) + "---:|---:|"]
    for r in rows:
        cells = [f"{r[label][0]:.3f} ± {r[label][1]:.3f}" for label, _ in METRICS]
        lines.append(f"| {r['variant']} | {r['label'] or 'config'} | {r['epochs']} | {','.join(map(str, r['seeds']))} | "
                     f"{r['params']:,} | "
                     f"{r['macs'] / 1e9:.3f} | " + " | ".join(cells) + f" | {apart_cell(r['tags_apart'])} | "
                     f"{r['train_minutes'][0]:.1f} |")
    described = {r["variant"]: r["what"] for r in rows}
    lines += ["", "Variants:", ""] + [f"- `{v}`: {what}" for v, what in described.items()]
    settings = {r["label"]: r["settings"] for r in rows if r["label"]}
    if settings:
        lines += ["", "Settings (overrides on top of the config):", ""]
        lines += [f"- `{label}`: `{text}`" for label, text in settings.items()]
    lines += ["", "Tags apart: epochs until the push loss falls below half its value at the start, when all tags "
              "are near zero (read off each run's training log; never = still collapsed at the end).",
              "", "Every run (AP / AP hard):", "",
              "| variant | setting | epochs | seed | AP | AP hard | tags apart (epoch) | train min |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    shown = [r for r in runs if r["variant"] in variants]
    for run in sorted(shown, key=lambda x: (variants.index(x["variant"]), x["epochs"], x.get("label", ""), x["seed"])):
        lines.append(f"| {run['variant']} | {run.get('label') or 'config'} | {run['epochs']} | {run['seed']} | "
                     f"{run['metrics']['AP']:.3f} | "
                     f"{run['metrics']['AP (hard)']:.3f} | {apart_cell([run.get('tags_apart')])} | "
                     f"{run['train_seconds'] / 60:.1f} |")
    if args.plot:
        plot(rows, args.plot)
        rel = os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.report)) or ".")
        lines += ["", f"![AP, AP75 and AP by crowd level, mean ± std over seeds]({rel})"]
    text = "\n".join(lines) + "\n"
    marker = "<!-- study notes -->"
    if os.path.isfile(args.report):  # keep the hand-written notes below the marker
        old = open(args.report).read()
        if marker in old:
            text += "\n" + old[old.index(marker):]
    with open(args.report, "w") as f:
        f.write(text)
    print(text)


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = ["AP", "AP75", "AP easy", "AP medium", "AP hard"]
    x = np.arange(len(labels))
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, r in enumerate(rows):
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, [r[m][0] for m in labels], width,
               yerr=[r[m][1] for m in labels], capsize=3,
               label=f"{r['variant']}{' ' + r['label'] if r['label'] else ''} ({r['epochs']} ep)")
    ax.set_xticks(x, labels)
    ax.set_ylabel("CrowdPose-style AP (synthetic test split)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.run_one:
        run_one(args, args.run_one[0], int(args.run_one[1]))
        return 0
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.opts and not args.label:
        raise SystemExit("error: KEY VALUE overrides change the setting: name it with --label")
    if not args.report_only:
        run_all(args, variants, seeds)
    report(args, variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
