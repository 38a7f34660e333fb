#!/usr/bin/env python
"""Train in one process (CPU or one GPU), or as one process of a torchrun launch.

    python tools/train.py --cfg configs/synthetic/higher_hrnet_tiny.yaml [KEY VALUE ...]
    torchrun --nproc-per-node 2 tools/train.py --cfg ... [KEY VALUE ...]

Options as tools/dist_train.py; this one never spawns one process per GPU by itself.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from higherpose.engine import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(spawn_per_gpu=False, description=__doc__.strip().splitlines()[0]))
