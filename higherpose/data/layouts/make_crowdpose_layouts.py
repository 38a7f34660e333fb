"""Derive the packaged person layouts from CrowdPose's validation annotations.

    python higherpose/data/layouts/make_crowdpose_layouts.py SOURCE [OUT]

SOURCE: crowdpose_val.json of the CrowdPose API (see README.md here). OUT defaults to
crowdpose_val_layouts.json.gz next to this script. The records are those that
`higherpose.data.synthetic.load_layouts(SOURCE)` keeps, values unchanged, so the renderer gives
the same images from this file as from SOURCE.
"""
import argparse
import os
import sys

from higherpose.data.synthetic import PACKAGED_LAYOUTS_FILE, _records_from_annotations, write_layouts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("source", help="crowdpose_val.json of the CrowdPose API")
    p.add_argument("out", nargs="?", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                          PACKAGED_LAYOUTS_FILE))
    args = p.parse_args(argv)
    records = _records_from_annotations(args.source)
    write_layouts(records, args.out, source="CrowdPose crowdpose_val.json (Li et al., CVPR 2019): "
                  "image id, width, height; per person not iscrowd with >= 4 labelled joints: "
                  "joint x/y, labelled flags, bbox")
    persons = sum(len(r["persons"]) for r in records)
    print(f"{args.out}: {len(records)} images, {persons} persons, {os.path.getsize(args.out)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
