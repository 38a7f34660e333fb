#!/usr/bin/env python
"""Export the bottom-up pipeline of one image size as one deployable program (.pt2).

    python tools/export.py --cfg synthetic/higher_hrnet_tiny.yaml --weights model_best.pth.tar --out pose.pt2

The `higherpose-export` console script; the code is higherpose/cli/export.py,
taken from whichever higherpose is installed (nothing is added to sys.path).
"""
import sys

from higherpose.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
