#!/usr/bin/env python
"""Distributed training as upstream's tools/dist_train.py: one process per visible GPU.

    python tools/dist_train.py --cfg experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml
    python tools/dist_train.py --cfg ... --world-size 2 --rank 0 --dist-url tcp://HOST:PORT
    python tools/dist_train.py --cfg ... --cpu-procs 2          # two CPU processes, gloo
    torchrun --nproc-per-node 4 tools/dist_train.py --cfg ...   # env:// rendezvous

The `higherpose-dist-train` console script; the code is higherpose/cli/dist_train.py,
taken from whichever higherpose is installed (nothing is added to sys.path).
"""
import sys

from higherpose.cli.dist_train import main

if __name__ == "__main__":
    sys.exit(main())
