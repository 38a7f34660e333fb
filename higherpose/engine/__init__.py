"""Training engine: the loop, distributed set-up, checkpoints, optimizer/LR schedule, logging.

`higherpose.engine.main(argv)` is tools/dist_train.py; `train(cfg, ctx, cfg_file)` runs one
process of a training job.
"""
from .checkpoint import atomic_save, load_file
from .distributed import DistContext
from .launcher import main, make_plan, parse, run
from .optim import WarmupMultiStepLR, build_optimizer, build_scheduler
from .trainer import Components, train

__all__ = ["main", "parse", "make_plan", "run", "train", "Components", "DistContext",
           "build_optimizer", "build_scheduler", "WarmupMultiStepLR", "atomic_save", "load_file"]
