"""higherpose-model-info: parameters and multiply-accumulates of the networks in experiment configs.

    higherpose-model-info --cfg crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml [KEY VALUE ...]
    higherpose-model-info --cfg A.yaml --cfg B.yaml
    higherpose-model-info --all        # every packaged config
    higherpose-model-info --list       # the packaged config names (what --cfg accepts besides files)

MACs are torch.utils.flop_counter.FlopCounterMode FLOPs / 2 for one image at the configured input
size (bottom-up: DATASET.INPUT_SIZE square; top-down: MODEL.IMAGE_SIZE w, h): convolutions,
transposed convolutions, linear layers and matmuls (normalisation and activations not counted).
The window-attention op is counted as 2 * B*H*W * window_area * channels (QK^T and AV over the
real queries). The model runs on the meta device, so no weights are allocated and no arithmetic
is done (falls back to a CPU forward if a layer cannot run on meta).
"""
import argparse
import sys

from higherpose.cli.common import load_config, parse_with_overrides, run_tool

TOP_DOWN = ("pose_hrnet", "pose_hrt")


def _window_attention_flops(q_shape, k_shape, v_shape, window, *args, **kwargs):
    b, h, w, c = q_shape
    return 2 * 2 * b * h * w * window[0] * window[1] * c


def _register_window_attention_formula():
    import torch
    from torch.utils.flop_counter import register_flop_formula

    import higherpose.ops  # noqa: F401  (loads the library, so torch.ops.higherpose has the ops)
    ops = getattr(torch.ops, "higherpose", None)
    for name in ("window_attention", "window_attention_forward"):
        try:
            register_flop_formula(getattr(ops, name))(_window_attention_flops)
        except Exception:  # op not built in this install, or a formula already registered
            pass


def input_shape(cfg):
    if cfg.MODEL.NAME in TOP_DOWN:
        w, h = cfg.MODEL.IMAGE_SIZE
        return (1, 3, int(h), int(w))
    s = int(cfg.DATASET.INPUT_SIZE)
    return (1, 3, s, s)


def measure(cfg_file, opts=()):
    """{config, model, input, params, macs, device} of one config (a file or a packaged name)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from higherpose.models import build_model

    _register_window_attention_formula()
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
            return {"config": cfg_file, "model": cfg.MODEL.NAME, "input": shape[2:],
                    "params": params, "macs": counter.get_total_flops() / 2, "device": device}
        except (NotImplementedError, RuntimeError) as e:
            if device == "cpu":
                raise
            print(f"# {cfg_file}: meta forward failed ({type(e).__name__}), measuring on CPU", file=sys.stderr)
    raise AssertionError("unreachable")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", action="append", default=[], help="experiment config, a file or a packaged name "
                                                              "(repeat for several)")
    p.add_argument("--all", action="store_true", help="every packaged config")
    p.add_argument("--list", action="store_true", help="print the packaged config names and stop")
    return p


def run(argv=None):
    from higherpose.config import packaged_configs

    parser = build_parser()
    args = parse_with_overrides(parser, argv)
    if args.list:
        print("\n".join(packaged_configs()))
        return 0
    files = list(args.cfg) + (packaged_configs() if args.all else [])
    if not files:
        parser.error("give --cfg FILE, --all or --list")
    print(f"| {'config':<58} | {'MODEL.NAME':<17} | {'input':>9} | {'params':>12} | {'GMACs':>8} |")
    print(f"|{'-' * 60}|{'-' * 19}|{'-' * 11}|{'-' * 14}|{'-' * 10}|")
    for f in files:
        r = measure(f, args.opts)
        size = "x".join(str(s) for s in r["input"])
        print(f"| {r['config']:<58} | {r['model']:<17} | {size:>9} | {r['params']:>12,} | {r['macs'] / 1e9:>8.3f} |",
              flush=True)
    return 0


def main(argv=None):
    return run_tool(run, argv)


if __name__ == "__main__":
    sys.exit(main())
