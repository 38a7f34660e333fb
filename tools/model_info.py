#!/usr/bin/env python
"""Parameters and multiply-accumulates of the networks in experiment configs.

    python tools/model_info.py --cfg configs/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml [KEY VALUE ...]
    python tools/model_info.py --all
    python tools/model_info.py --list

The `higherpose-model-info` console script; the code is higherpose/cli/model_info.py,
taken from whichever higherpose is installed (nothing is added to sys.path).
"""
import sys

from higherpose.cli.model_info import main

if __name__ == "__main__":
    sys.exit(main())
