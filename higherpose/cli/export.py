"""higherpose-export: the bottom-up pipeline of one image size as one deployable program.

    higherpose-export --cfg synthetic/higher_hrnet_tiny.yaml --weights model_best.pth.tar --out pose.pt2
    higherpose-export --cfg experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml \
        --weights model.pth --image-size 512 640 --flip --device cuda --out pose_cuda.pt2

The program takes uint8 BGR images [B, H, W, 3] of the exported size (any batch) and returns poses
[B, P, J, 3] (x, y, score) in image pixels, person scores [B, P] and counts [B]. It runs from
Python (higherpose.deploy.load) and from C++ (examples/cpp/run_pose). See README "Deploy".
"""
import argparse
import os
import sys
import time

from higherpose.cli.common import parse_with_overrides, run_tool
from higherpose.errors import DATA_GUIDE, MissingInputError


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", required=True, help="experiment config: a file or a packaged config name")
    p.add_argument("--weights", required=True, help="checkpoint to export ('none': the freshly built weights)")
    p.add_argument("--out", required=True, help="the program file to write (.pt2)")
    p.add_argument("--image-size", type=int, nargs="+", default=None, metavar="SIZE",
                   help="WIDTH [HEIGHT] of the images the program takes (default: DATASET.INPUT_SIZE, square)")
    flip = p.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_true", default=None, help="flip test on")
    flip.add_argument("--no-flip", dest="flip", action="store_false", help="flip test off")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where the program runs (default cpu)")
    p.add_argument("--no-compile", action="store_true",
                   help="save the torch.export program (Python only) instead of an AOTInductor package")
    return p


def run(argv=None):
    args = parse_with_overrides(build_parser(), argv)
    from higherpose.cli.common import load_config
    from higherpose.deploy import export

    cfg = load_config(args.cfg, args.opts)
    weights = None if args.weights.lower() == "none" else args.weights
    if weights is not None and not os.path.isfile(weights):
        raise MissingInputError(f"weights file (--weights) not found: {weights} (see {DATA_GUIDE})")
    size = args.image_size
    if size is not None and len(size) not in (1, 2):
        raise SystemExit("error: --image-size takes WIDTH [HEIGHT]")
    image_size = None if size is None else (size[0], size[-1])
    start = time.perf_counter()
    try:
        export(cfg, weights, args.out, image_size=image_size, flip=args.flip, device=args.device,
               compile=not args.no_compile)
    except ValueError as err:  # a size or setting the exported pipeline cannot take
        from higherpose.errors import UserInputError
        raise UserInputError(str(err)) from None
    print(f"exported {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def main(argv=None):
    return run_tool(run, argv)


if __name__ == "__main__":
    sys.exit(main())
