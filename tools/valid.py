#!/usr/bin/env python
"""Evaluate a model on its test split: results JSON, metrics table, timing.

    python tools/valid.py --cfg experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml \\
        TEST.MODEL_FILE model.pth TEST.SCALE_FACTOR '[0.5, 1.0, 2.0]' [--device cpu]

The `higherpose-valid` console script; the code is higherpose/cli/valid.py,
taken from whichever higherpose is installed (nothing is added to sys.path).
"""
import sys

from higherpose.cli.valid import main

if __name__ == "__main__":
    sys.exit(main())
