#!/usr/bin/env python
"""The main job: synthetic crowds -> train on the CPU -> evaluate -> report, in one output folder.

    python tools/quickstart.py [--quick] [--output output/quickstart] [--cfg synthetic/higher_hrnet_tiny.yaml]

The `higherpose-quickstart` console script; the code is higherpose/cli/quickstart.py,
taken from whichever higherpose is installed (nothing is added to sys.path).
"""
import sys

from higherpose.cli.quickstart import main

if __name__ == "__main__":
    sys.exit(main())
