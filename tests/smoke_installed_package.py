"""Smoke test of an installed higherpose (a wheel in a fresh virtual environment), run from a
directory that is not the checkout, by tools/check_wheel.sh:

    cd "$(mktemp -d)" && /path/to/venv/bin/python /path/to/checkout/tests/smoke_installed_package.py

It checks what a new user does first: the ops run, config names resolve from the package, the
networks / data / evaluation / inference modules import, the Predictor runs on an image, and the
console scripts render a tiny synthetic test split and evaluate a model on it.
"""
import importlib
import os
import subprocess
import sys
import sysconfig

import numpy as np
import torch

import higherpose
import higherpose.ops as ops


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAIL {what}")
    print(f"ok   {what}", flush=True)


def main():
    site = sysconfig.get_paths()["purelib"]
    check(os.path.dirname(higherpose.__file__).startswith(site) and not os.path.exists("higherpose"),
          f"higherpose is imported from the environment ({higherpose.__file__})")

    # ops: a planted peak per joint map, two persons told apart by their tags, attention over one window
    heatmaps, tags = torch.zeros(1, 14, 24, 24), torch.zeros(1, 14, 24, 24, 1)
    heatmaps[0, :, 5, 3], heatmaps[0, :, 5, 19] = 1.0, 0.8
    tags[0, :, 5, 19] = 4.0
    values, x, y, _ = ops.heatmap_peaks(heatmaps, tags, kernel=5, k=2)
    check(x[0, :, 0].eq(3).all() and x[0, :, 1].eq(19).all(), "heatmap_peaks finds the planted peaks")
    poses, scores, counts = ops.ae_group(heatmaps, tags, adjust=False, refine=False)
    check(counts.tolist() == [2], "ae_group groups two persons")
    q = torch.randn(1, 7, 7, 8, requires_grad=True)
    out = ops.window_attention(q, q, q, num_heads=2, window=7, pad_mode="mask")
    out.sum().backward()
    check(out.shape == q.shape and q.grad is not None, "window_attention runs forward and backward")

    # configs ship with the package
    from higherpose.config import load_config, resolve_config_path
    for name in ("experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml",
                 "configs/synthetic/higher_hrnet_tiny.yaml", "higher_hrnet_tiny"):
        path = resolve_config_path(name)
        check(path.startswith(os.path.dirname(higherpose.__file__)), f"config {name} resolves to {path}")
    cfg = load_config("experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml")
    check(cfg.DATASET.NUM_JOINTS == 14, "the CrowdPose W32 config loads")

    for module in ("higherpose.models", "higherpose.data", "higherpose.evaluation", "higherpose.inference"):
        importlib.import_module(module)
    check(True, "models, data, evaluation and inference import")
    from higherpose.models import build_model

    # a model's weights, the Predictor on one image, then evaluation through the console scripts
    tiny = load_config("synthetic/higher_hrnet_tiny.yaml")
    torch.manual_seed(0)
    torch.save(build_model(tiny, is_train=False).state_dict(), "weights.pth")
    predictor = higherpose.Predictor("configs/synthetic/higher_hrnet_tiny.yaml", "weights.pth", device="cpu")
    result = predictor(np.full((96, 128, 3), 127, np.uint8))
    check(result.keypoints.ndim == 3 and result.keypoints.shape[1:] == (14, 3), "Predictor runs on an image")

    bin_dir = os.path.dirname(sys.executable)
    subprocess.run([os.path.join(bin_dir, "higherpose-make-synthetic"), "--out", "synthetic", "--num-train", "0",
                    "--num-test", "3", "--image-size", "128"], check=True)
    done = subprocess.run([os.path.join(bin_dir, "higherpose-valid"), "--cfg", "synthetic/higher_hrnet_tiny.yaml",
                           "DATASET.ROOT", "synthetic", "DATASET.SYNTHETIC.GENERATE", "False", "TEST.MODEL_FILE",
                           "weights.pth", "OUTPUT_DIR", "output", "LOG_DIR", "log", "--device", "cpu",
                           "--no-progress"], capture_output=True, text=True)
    check(done.returncode == 0 and "AP" in done.stdout + done.stderr,
          "higherpose-valid evaluates on a synthetic test split" + ("" if done.returncode == 0 else
                                                                    f":\n{done.stdout}\n{done.stderr}"))
    print("installed package: all checks passed")


if __name__ == "__main__":
    main()
