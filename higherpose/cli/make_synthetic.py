"""higherpose-make-synthetic: render a synthetic CrowdPose-format data set (json/crowdpose_*.json + images/).

Example:
  higherpose-make-synthetic --out data/synthetic_crowd --num-train 200 --num-test 50 --image-size 256 --seed 0

Person layouts: `--layouts crowdpose` (default) reuses the real CrowdPose val layouts shipped with
the package, `--layouts none` samples poses, `--layouts FILE` reads a CrowdPose-format annotation file.
"""
import argparse
import os
import sys
import time

from higherpose.cli.common import run_tool
from higherpose.data.synthetic import PACKAGED_LAYOUTS


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (gets json/ and images/)")
    p.add_argument("--num-train", type=int, default=200)
    p.add_argument("--num-test", type=int, default=50)
    p.add_argument("--num-val", type=int, default=None, help="default: same as --num-test")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layouts", default=PACKAGED_LAYOUTS,
                   help=f"person layouts: '{PACKAGED_LAYOUTS}' (packaged real CrowdPose layouts, default), "
                        "'none' (sampled poses) or a CrowdPose-format annotation file")
    p.add_argument("--min-people", type=int, default=1)
    p.add_argument("--max-people", type=int, default=6)
    p.add_argument("--format", choices=("jpg", "png"), default="jpg")
    p.add_argument("--marker-scale", type=float, default=1.0, help="joint marker radius factor")
    p.add_argument("--clutter", type=float, default=1.0, help="distractor amount factor (0 = none)")
    return p


def run(argv=None):
    """Render the set; returns generate()'s {split: annotation file}."""
    from higherpose.data.synthetic import generate

    args = build_parser().parse_args(argv)
    start = time.time()
    paths = generate(args.out, args.num_train, args.num_test, args.image_size, args.seed, layouts=args.layouts,
                     min_people=args.min_people, max_people=args.max_people, num_val=args.num_val,
                     image_format=args.format, marker_scale=args.marker_scale, clutter=args.clutter)
    print(f"wrote {', '.join(sorted(paths))} under {os.path.join(args.out, 'json')} "
          f"in {time.time() - start:.1f} s")
    return paths


def main(argv=None):
    return run_tool(run, argv)


if __name__ == "__main__":
    sys.exit(main())
