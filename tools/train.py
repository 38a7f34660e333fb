#!/usr/bin/env python
"""Train in one process (CPU or one GPU), or as one process of a torchrun launch.

    python tools/train.py --cfg configs/synthetic/higher_hrnet_tiny.yaml [KEY VALUE ...]
    torchrun --nproc-per-node 2 tools/train.py --cfg ... [KEY VALUE ...]

The `higherpose-train` console script; the code is higherpose/cli/train.py,
taken from whichever higherpose is installed (nothing is added to sys.path).
"""
import sys

from higherpose.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
