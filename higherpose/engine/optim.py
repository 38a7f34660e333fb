"""Optimizer and learning-rate schedule from TRAIN.*.

Optimizers (TRAIN.OPTIMIZER, case-insensitive):
- `adam`: torch Adam with TRAIN.LR only, exactly as upstream HigherHRNet builds it — TRAIN.WD,
  MOMENTUM and NESTEROV have no effect (the published results were trained that way).
- `adamw`: AdamW with decoupled weight decay TRAIN.WD; no decay on relative-position-bias tables
  (as HRFormer's recipe).
- `sgd`: SGD with TRAIN.MOMENTUM, TRAIN.WD and TRAIN.NESTEROV.

Schedule: multi-step decay by TRAIN.LR_FACTOR at the 0-based epochs in TRAIN.LR_STEP (the LR of
epoch e is LR · LR_FACTOR^(number of steps ≤ e), PyTorch's MultiStepLR stepped once per epoch),
times an optional linear warm-up over the first TRAIN.WARMUP_ITERS iterations from
TRAIN.WARMUP_RATIO · LR. Upstream HigherHRNet steps its scheduler before each epoch, which makes
each decay start one epoch earlier (at epoch m−1); set LR_STEP one lower to reproduce that.
"""
import bisect

import torch
from torch.optim.lr_scheduler import LRScheduler

OPTIMIZERS = ("adam", "adamw", "sgd")
NO_DECAY_KEYS = ("relative_position_bias_table",)


def build_optimizer(cfg, model):
    name = str(cfg.TRAIN.OPTIMIZER).lower()
    lr = float(cfg.TRAIN.LR)
    if lr <= 0:
        raise ValueError(f"TRAIN.LR must be positive, got {cfg.TRAIN.LR}")
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if name == "adam":
        return torch.optim.Adam([p for _, p in params], lr=lr)
    if name == "adamw":
        decay = [p for n, p in params if not any(k in n for k in NO_DECAY_KEYS)]
        no_decay = [p for n, p in params if any(k in n for k in NO_DECAY_KEYS)]
        groups = [{"params": decay, "weight_decay": float(cfg.TRAIN.WD)}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD([p for _, p in params], lr=lr, momentum=float(cfg.TRAIN.MOMENTUM),
                               weight_decay=float(cfg.TRAIN.WD), nesterov=bool(cfg.TRAIN.NESTEROV))
    raise ValueError(f"TRAIN.OPTIMIZER must be one of {OPTIMIZERS}, got {cfg.TRAIN.OPTIMIZER!r}")


class WarmupMultiStepLR(LRScheduler):
    """Stepped once per iteration; `last_epoch` counts iterations (PyTorch's naming).

    iters_per_epoch converts the iteration count to the epoch that selects the decay; it is
    not part of the saved state, so a resumed run may use a different epoch length.
    """

    def __init__(self, optimizer, milestones, gamma, iters_per_epoch, warmup_iters=0,
                 warmup_ratio=0.001, last_epoch=-1):
        milestones = [int(m) for m in milestones]
        if milestones != sorted(milestones):
            raise ValueError(f"TRAIN.LR_STEP must be increasing, got {milestones}")
        if iters_per_epoch < 1:
            raise ValueError(f"iters_per_epoch must be >= 1, got {iters_per_epoch}")
        if warmup_iters < 0 or not 0 < warmup_ratio <= 1:
            raise ValueError(f"TRAIN.WARMUP_ITERS must be >= 0 and TRAIN.WARMUP_RATIO in (0, 1], "
                             f"got {warmup_iters} and {warmup_ratio}")
        self.milestones = milestones
        self.gamma = float(gamma)
        self.iters_per_epoch = int(iters_per_epoch)
        self.warmup_iters = int(warmup_iters)
        self.warmup_ratio = float(warmup_ratio)
        super().__init__(optimizer, last_epoch)

    def factor(self, iteration):
        epoch = iteration // self.iters_per_epoch
        f = self.gamma ** bisect.bisect_right(self.milestones, epoch)
        if iteration < self.warmup_iters:
            f *= self.warmup_ratio + (1.0 - self.warmup_ratio) * iteration / self.warmup_iters
        return f

    def get_lr(self):
        f = self.factor(max(self.last_epoch, 0))
        return [base * f for base in self.base_lrs]

    def state_dict(self):
        state = super().state_dict()
        state.pop("iters_per_epoch", None)
        return state

    def load_state_dict(self, state_dict):
        keep = self.iters_per_epoch
        super().load_state_dict(state_dict)
        self.iters_per_epoch = keep


def build_scheduler(cfg, optimizer, iters_per_epoch):
    return WarmupMultiStepLR(optimizer, list(cfg.TRAIN.LR_STEP), cfg.TRAIN.LR_FACTOR,
                             iters_per_epoch, cfg.TRAIN.WARMUP_ITERS, cfg.TRAIN.WARMUP_RATIO)
