#!/usr/bin/env python
"""Render a synthetic CrowdPose-format data set (json/crowdpose_*.json + images/).

    python tools/make_synthetic.py --out data/synthetic_crowd --num-train 200 --num-test 50 \\
        --image-size 256 --seed 0 [--layouts crowdpose|none|FILE]

The `higherpose-make-synthetic` console script; the code is higherpose/cli/make_synthetic.py,
taken from whichever higherpose is installed (nothing is added to sys.path).
"""
import sys

from higherpose.cli.make_synthetic import main

if __name__ == "__main__":
    sys.exit(main())
