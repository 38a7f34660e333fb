#!/usr/bin/env python
"""Pose estimation on an image, a folder of images or a video; annotated copies are written.

    python tools/demo.py --cfg experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml \\
        --weights model_best.pth.tar --input people.jpg --output out/ [--heatmap] [--kpt-thr 0.1]

The `higherpose-demo` console script; the code is higherpose/cli/demo.py,
taken from whichever higherpose is installed (nothing is added to sys.path).
"""
import sys

from higherpose.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
