#!/usr/bin/env python
"""Distributed training as upstream's tools/dist_train.py: one process per visible GPU.

    python tools/dist_train.py --cfg experiments/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml
    python tools/dist_train.py --cfg ... --world-size 2 --rank 0 --dist-url tcp://HOST:PORT
    python tools/dist_train.py --cfg ... --cpu-procs 2          # two CPU processes, gloo
    torchrun --nproc-per-node 4 tools/dist_train.py --cfg ...   # env:// rendezvous

With one GPU, `--gpu ID`, or no GPU it runs in this process (no spawn).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from higherpose.engine import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(spawn_per_gpu=True, description=__doc__.strip().splitlines()[0]))
