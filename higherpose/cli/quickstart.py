"""higherpose-quickstart: synthetic crowds -> train on the CPU -> evaluate -> report, in one output folder.

    higherpose-quickstart [--quick] [--output output/quickstart] [--cfg synthetic/higher_pose_tiny.yaml]

Steps: (1) render a synthetic CrowdPose-format crowd set (person layouts taken from the real
CrowdPose val annotations shipped with the package, `--layouts`), (2) train the synthetic config
with higherpose-train (a fresh process), (3) evaluate the trained model as higherpose-valid does,
(4) write metrics.md (the table), training_curve.png and annotated test images (samples/) into
the output folder, and print the table. `--quick` runs a shortened version end to end (tests).
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

from higherpose.cli.common import load_config, parse_with_overrides, run_tool
from higherpose.data.synthetic import PACKAGED_LAYOUTS

DEFAULT_CFG = "synthetic/higher_pose_tiny.yaml"  # a packaged config name; ACCURACY.md says why this one
# --quick: just enough of every step to prove the pipeline works end to end.
QUICK_OVERRIDES = ["TRAIN.END_EPOCH", "1", "TRAIN.MAX_ITERS_PER_EPOCH", "2"]
QUICK_SIZES = {"NUM_TRAIN": 8, "NUM_TEST": 4}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", default=DEFAULT_CFG, help=f"synthetic training config (default {DEFAULT_CFG})")
    p.add_argument("--output", default=os.path.join("output", "quickstart"), help="output folder")
    p.add_argument("--quick", action="store_true", help="shortened run (a few iterations, a few images)")
    p.add_argument("--layouts", default=None,
                   help=f"person layouts for the generator: '{PACKAGED_LAYOUTS}' (real CrowdPose val layouts "
                        "shipped with the package), 'none' (sampled poses) or a CrowdPose-format annotation file "
                        "(default: the config's DATASET.SYNTHETIC.LAYOUTS, else the packaged layouts)")
    p.add_argument("--samples", type=int, default=4, help="annotated test images to write")
    p.add_argument("--device", default="cpu", help="device for evaluation and samples (training uses the config)")
    return p


def _step(name, t0):
    dt = time.perf_counter() - t0
    print(f"[quickstart] {name}: {dt:.1f} s", flush=True)
    return dt


def run(argv=None):
    """The four steps; returns the summary written to <output>/summary.json."""
    args = parse_with_overrides(build_parser(), argv)
    from higherpose.cli import valid
    from higherpose.config import resolve_config_path
    from higherpose.data.synthetic import generate
    from higherpose.engine.logger import output_dirs

    t_all = time.perf_counter()
    out = os.path.abspath(args.output)
    data_dir = os.path.join(out, "data")
    train_out = os.path.join(out, "train")
    overrides = ["DATASET.ROOT", data_dir, "OUTPUT_DIR", train_out, "LOG_DIR", os.path.join(out, "log")]
    overrides += (QUICK_OVERRIDES if args.quick else []) + list(args.opts)
    cfg = load_config(args.cfg, overrides)  # a bad --cfg or override stops here, before anything is deleted
    cfg_file = resolve_config_path(args.cfg)
    # a fresh run each time: this folder belongs to the quickstart only
    for sub in ("train", "log", "samples", "data"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    os.makedirs(out, exist_ok=True)
    timings = {}

    # (1) data
    t0 = time.perf_counter()
    syn = dict(cfg.DATASET.SYNTHETIC) if cfg.DATASET.get("SYNTHETIC") else {}
    if args.quick:
        syn.update(QUICK_SIZES)
    layouts = args.layouts if args.layouts is not None else str(syn.get("LAYOUTS", PACKAGED_LAYOUTS))
    sampled = layouts in ("none", "")  # the rule of synthetic.load_layouts
    source = ("sampled poses" if sampled else "the packaged CrowdPose val person layouts"
              if layouts == PACKAGED_LAYOUTS else f"the person layouts of {layouts}")
    print(f"[quickstart] rendering synthetic crowds into {data_dir} ({source})", flush=True)
    generate(data_dir, num_train=int(syn.get("NUM_TRAIN", 64)), num_test=int(syn.get("NUM_TEST", 16)),
             image_size=int(syn.get("IMAGE_SIZE", cfg.DATASET.INPUT_SIZE)), seed=int(syn.get("SEED", 0)),
             layouts=None if sampled else layouts, min_people=int(syn.get("MIN_PEOPLE", 1)),
             max_people=int(syn.get("MAX_PEOPLE", 6)))
    timings["data"] = _step("data", t0)

    # (2) training, as a user runs it, in a fresh process
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "higherpose.cli.train", "--cfg", cfg_file] + overrides
    print("[quickstart] " + " ".join(cmd), flush=True)
    code = subprocess.run(cmd).returncode
    if code:
        print(f"[quickstart] training exited with status {code}", file=sys.stderr)
        raise SystemExit(code)
    timings["train"] = _step("train", t0)
    final_dir = output_dirs(cfg, cfg_file)[0]
    weights = os.path.join(final_dir, "model_best.pth.tar")
    if not os.path.isfile(weights):
        weights = os.path.join(final_dir, "final_state.pth.tar")
    if not os.path.isfile(weights):
        raise RuntimeError(f"training wrote no model_best.pth.tar / final_state.pth.tar in {final_dir}")

    # (3) evaluation, in this process
    t0 = time.perf_counter()
    result = valid.run(["--cfg", cfg_file, "--device", args.device, "--no-progress"] + overrides
                       + ["TEST.MODEL_FILE", weights])
    timings["evaluate"] = _step("evaluate", t0)

    # (4) report
    t0 = time.perf_counter()
    table = result["table"] or "(no metrics: the test split has no annotations)"
    with open(os.path.join(out, "metrics.md"), "w") as f:
        f.write(table + "\n")
    curves = sorted(glob.glob(os.path.join(final_dir, "*.png")))
    for c in curves:
        shutil.copy(c, os.path.join(out, os.path.basename(c)))
    samples = write_samples(cfg, weights, os.path.join(out, "samples"), args.samples, args.device)
    timings["report"] = _step("report", t0)
    timings["total"] = time.perf_counter() - t_all
    summary = {"config": args.cfg, "config_file": cfg_file, "layouts": layouts, "quick": args.quick,
               "weights": weights, "metrics": dict(result["metrics"] or {}), "results_file": result["results_file"],
               "curves": [os.path.basename(c) for c in curves], "samples": samples, "seconds": timings,
               "eval_timing": result["timing"]}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("\n" + table)
    print(f"\n[quickstart] done in {timings['total']:.0f} s; report in {out} "
          f"(metrics.md, {', '.join(summary['curves']) or 'no curve'}, samples/)")
    return summary


def write_samples(cfg, weights, folder, count, device):
    """Draw the predicted poses (left) next to the ground truth (right) for a few test images."""
    import cv2
    import numpy as np

    from higherpose import Predictor
    from higherpose.data import build_dataset
    from higherpose.vis import draw_poses

    os.makedirs(folder, exist_ok=True)
    dataset = build_dataset(cfg, is_train=False)
    predictor = Predictor(cfg, weights, device=device)
    written = []
    for image_id in dataset.image_ids[:count]:
        image = dataset.read_image(image_id)
        pred = predictor(image)
        left = draw_poses(image, pred.keypoints, pred.scores, predictor.skeleton, keypoint_threshold=0.1)
        gt = [np.asarray(a["keypoints"], np.float64).reshape(-1, 3) for a in dataset.annotations(image_id)]
        gt = np.stack(gt) if gt else np.zeros((0, len(predictor.joint_names), 3))
        right = draw_poses(image, gt, None, predictor.skeleton, keypoint_threshold=0.5, show_scores=False)
        canvas = np.concatenate([left, np.full((image.shape[0], 4, 3), 255, np.uint8), right], axis=1)
        path = os.path.join(folder, f"{image_id}.jpg")
        cv2.imwrite(path, canvas)
        written.append(os.path.relpath(path, os.path.dirname(folder)))
    return written


def main(argv=None):
    return run_tool(run, argv)


if __name__ == "__main__":
    sys.exit(main())
