#!/usr/bin/env python
"""Parameters and multiply-accumulates of the networks in experiment configs.

    python tools/model_info.py --cfg configs/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml [KEY VALUE ...]
    python tools/model_info.py --cfg A.yaml --cfg B.yaml
    python tools/model_info.py --all

MACs are torch.utils.flop_counter.FlopCounterMode FLOPs / 2 for one image at the configured input
size (bottom-up: DATASET.INPUT_SIZE square; top-down: MODEL.IMAGE_SIZE w, h): convolutions,
transposed convolutions, linear layers and matmuls (normalisation and activations not counted).
The window-attention op is counted as 2 * B*H*W * window_area * channels (QK^T and AV over the
real queries). The model runs on the meta device, so no weights are allocated and no arithmetic
is done (falls back to a CPU forward if a layer cannot run on meta).
"""
import argparse
import glob
import os
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from higherpose.config import load_config  # noqa: E402
from higherpose.models import build_model  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_DOWN = ("pose_hrnet", "pose_hrt")


def _window_attention_flops(q_shape, k_shape, v_shape, window, *args, **kwargs):
    b, h, w, c = q_shape
    return 2 * 2 * b * h * w * window[0] * window[1] * c


def _register_window_attention_formula():
    ops = getattr(torch.ops, "higherpose", None)
    for name in ("window_attention", "window_attention_forward"):
        try:
            register_flop_formula(getattr(ops, name))(_window_attention_flops)
        except Exception:  # op not built in this checkout, or a formula already registered
            pass


def input_shape(cfg):
    if cfg.MODEL.NAME in TOP_DOWN:
        w, h = cfg.MODEL.IMAGE_SIZE
        return (1, 3, int(h), int(w))
    s = int(cfg.DATASET.INPUT_SIZE)
    return (1, 3, s, s)


def measure(cfg_file, opts=()):
    cfg = load_config(cfg_file, list(opts))
    shape = input_shape(cfg)
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                model = build_model(cfg).eval()
                x = torch.zeros(shape)
            params = sum(p.numel() for p in model.parameters())
            counter = FlopCounterMode(display=False)
            with counter:
                model(x)
            return {"config": os.path.relpath(cfg_file, REPO), "model": cfg.MODEL.NAME, "input": shape[2:],
                    "params": params, "macs": counter.get_total_flops() / 2, "device": device}
        except (NotImplementedError, RuntimeError) as e:
            if device == "cpu":
                raise
            print(f"# {cfg_file}: meta forward failed ({type(e).__name__}), measuring on CPU", file=sys.stderr)
    raise AssertionError("unreachable")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", action="append", default=[], help="experiment YAML file (repeat for several)")
    parser.add_argument("--all", action="store_true", help="every YAML under configs/")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    files = list(args.cfg)
    if args.all:
        files += sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))
    if not files:
        parser.error("give --cfg FILE or --all")
    _register_window_attention_formula()
    print(f"| {'config':<58} | {'MODEL.NAME':<17} | {'input':>9} | {'params':>12} | {'GMACs':>8} |")
    print(f"|{'-' * 60}|{'-' * 19}|{'-' * 11}|{'-' * 14}|{'-' * 10}|")
    for f in files:
        r = measure(f, args.opts)
        size = "x".join(str(s) for s in r["input"])
        print(f"| {r['config']:<58} | {r['model']:<17} | {size:>9} | {r['params']:>12,} | {r['macs'] / 1e9:>8.3f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
