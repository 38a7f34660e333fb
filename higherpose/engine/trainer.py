"""The training loop: one function, `train`, run by every process of a training job.

Bottom-up batches are (images, heatmaps list, masks list, joints list) and the loss is
higherpose.losses' MultiLossFactory (per stage: heatmap, push, pull losses per image). Top-down
batches are (images, target, target_weight, meta) with JointsMSELoss.

Reproducibility: data order comes from a DistributedSampler seeded by SEED + epoch (one process
is a world of one, so single- and multi-process runs see the same global order), per-sample
augmentation from `dataset.set_epoch(epoch)`, and the DataLoader's worker seeds from a
generator seeded per epoch (never the global RNG). A checkpoint holds every rank's torch, numpy,
python and CUDA RNG states, so a run resumed mid-epoch (TRAIN.CHECKPOINT_EVERY_ITERS) continues
exactly where the saved one stood.

Host synchronisation happens only at logging steps (PRINT_FREQ) and checkpoints.
"""
import itertools
import os
import random
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from . import checkpoint as ckpt
from .distributed import DistContext, all_gather_objects, all_reduce_mean, barrier
from .logger import TensorBoard, close_logger, create_logger, plot_training_curve
from .optim import build_optimizer, build_scheduler

TOP_DOWN_MODELS = ("pose_hrt", "pose_hrnet")
CHECKPOINT = "checkpoint.pth.tar"
BEST = "model_best.pth.tar"
FINAL = "final_state.pth.tar"
CURVE = "training_curve.png"


@dataclass
class Components:
    """Builders of the model, dataset and loss; None = higherpose's own (tests swap them)."""
    build_model: Optional[Callable] = None  # (cfg, is_train) -> nn.Module
    build_dataset: Optional[Callable] = None  # (cfg, is_train) -> Dataset
    build_loss: Optional[Callable] = None  # (cfg) -> nn.Module

    def resolved(self):
        build_model, build_dataset, build_loss = self.build_model, self.build_dataset, self.build_loss
        if build_model is None:
            from higherpose.models import build_model
        if build_dataset is None:
            from higherpose.data import build_dataset
        if build_loss is None:
            from higherpose.losses import build_loss  # JointsMSELoss for top-down models
        return Components(build_model, build_dataset, build_loss)


def is_top_down(cfg):
    return cfg.MODEL.NAME in TOP_DOWN_MODELS


def images_per_process(cfg):
    n = cfg.TRAIN.BATCH_SIZE_PER_GPU if is_top_down(cfg) else cfg.TRAIN.IMAGES_PER_GPU
    name = "TRAIN.BATCH_SIZE_PER_GPU" if is_top_down(cfg) else "TRAIN.IMAGES_PER_GPU"
    if int(n) < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return int(n)


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start part-way into its epoch (mid-epoch resume)."""

    def __init__(self, dataset, num_replicas, rank, shuffle, seed):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=False)
        self.skip = 0

    def set_skip(self, n):
        self.skip = int(n)

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self):
        return max(self.num_samples - self.skip, 0)


def _seed_worker(worker_id):
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def _to_device(x, device):
    if torch.is_tensor(x):
        return x.to(device, non_blocking=True)
    if isinstance(x, (list, tuple)):
        return [_to_device(v, device) for v in x]
    return x


def _amp_settings(cfg, device):
    """(autocast dtype or None, GradScaler) from FP16.*."""
    if not cfg.FP16.ENABLED:
        return None, torch.amp.GradScaler(device.type, enabled=False)
    name = str(cfg.FP16.DTYPE).lower()
    if name in ("bfloat16", "bf16"):
        return torch.bfloat16, torch.amp.GradScaler(device.type, enabled=False)
    if name in ("float16", "fp16", "half"):
        # Dynamic loss scaling always (upstream's static scale is a common cause of NaN losses);
        # FP16.STATIC_LOSS_SCALE > 1 sets the initial scale.
        init = float(cfg.FP16.STATIC_LOSS_SCALE) if cfg.FP16.STATIC_LOSS_SCALE > 1 else 2.0 ** 16
        return torch.float16, torch.amp.GradScaler(device.type, init_scale=init)
    raise ValueError(f"FP16.DTYPE must be 'float16' or 'bfloat16', got {cfg.FP16.DTYPE!r}")


class LossComputer:
    """Total loss and its named parts (detached) for one batch."""

    def __init__(self, criterion, top_down):
        self.criterion = criterion
        self.top_down = top_down

    def __call__(self, outputs, batch):
        if self.top_down:
            _, target, target_weight, _ = batch
            if isinstance(outputs, (list, tuple)):
                outputs = outputs[-1]
            loss = self.criterion(outputs.float(), target, target_weight)
            return loss, {"heatmaps": loss.detach()}
        _, heatmaps, masks, joints = batch
        outputs = [o.float() for o in outputs]
        heatmaps_losses, push_losses, pull_losses = self.criterion(outputs, heatmaps, masks, joints)
        total = 0.0
        parts = {}
        for stage, (hm, push, pull) in enumerate(zip(heatmaps_losses, push_losses, pull_losses)):
            for kind, value in (("heatmaps", hm), ("push", push), ("pull", pull)):
                if value is None:
                    continue
                value = value.mean()
                total = total + value
                parts[f"Stage{stage}-{kind}"] = value.detach()
        if not parts:
            raise ValueError("the loss produced no terms: check LOSS.WITH_HEATMAPS_LOSS/WITH_AE_LOSS")
        return total, parts


class _Stop(Exception):
    """Raised by the test hook `stop_after_iters` to end training as a crash would."""


def train(cfg, ctx: DistContext, cfg_file, components: Optional[Components] = None,
          stop_after_iters: Optional[int] = None):
    """Train as configured; returns the final output folder.

    `stop_after_iters` (tests): stop abruptly once this many iterations (counted from the
    start of the schedule) are done, without writing anything more — as if killed.
    """
    comps = (components or Components()).resolved()
    device = ctx.device
    top_down = is_top_down(cfg)

    logger, final_dir, tb_dir = create_logger(cfg, cfg_file, "train", ctx.rank)
    try:
        if ctx.is_main:
            logger.info(f"world size {ctx.world_size}, device {device}")
        logger.debug(cfg.dump())
        _seed_everything(cfg.SEED + ctx.rank)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = cfg.CUDNN.BENCHMARK
            torch.backends.cudnn.deterministic = cfg.CUDNN.DETERMINISTIC
            torch.backends.cudnn.enabled = cfg.CUDNN.ENABLED

        model = comps.build_model(cfg, True)
        if cfg.MODEL.SYNC_BN and ctx.distributed:
            if device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:
                logger.warning("MODEL.SYNC_BN ignored: PyTorch's SyncBatchNorm needs GPUs; CPU "
                               "processes keep per-process batch statistics")
        model.to(device)
        net = model
        if ctx.distributed:
            net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        if cfg.TRAIN.COMPILE:
            # The training forward (and, through AOTAutograd, its backward) compiled; checkpoints keep
            # saving `model`, whose parameter names torch.compile does not change.
            net = torch.compile(net, mode=cfg.TRAIN.COMPILE_MODE or None)
            if ctx.is_main:
                logger.info(f"=> torch.compile (mode {cfg.TRAIN.COMPILE_MODE or 'default'}): the first iterations "
                            "include compilation")
        criterion = comps.build_loss(cfg).to(device)
        compute_loss = LossComputer(criterion, top_down)

        # Rank 0 first: building may render the synthetic set, which the others then read.
        if ctx.is_main:
            dataset = comps.build_dataset(cfg, True)
        barrier()
        if not ctx.is_main:
            dataset = comps.build_dataset(cfg, True)
        batch_size = images_per_process(cfg)
        sampler = ResumableSampler(dataset, ctx.world_size, ctx.rank, bool(cfg.TRAIN.SHUFFLE), cfg.SEED)
        iters_per_epoch = sampler.num_samples // batch_size
        if cfg.TRAIN.MAX_ITERS_PER_EPOCH > 0:
            iters_per_epoch = min(iters_per_epoch, int(cfg.TRAIN.MAX_ITERS_PER_EPOCH))
        if iters_per_epoch < 1:
            raise ValueError(f"the training set has {len(dataset)} samples, fewer than one batch of "
                             f"{batch_size} per process x {ctx.world_size} processes")

        optimizer = build_optimizer(cfg, model)
        scheduler = build_scheduler(cfg, optimizer, iters_per_epoch)
        amp_dtype, scaler = _amp_settings(cfg, device)

        state = _TrainState(begin_epoch=int(cfg.TRAIN.BEGIN_EPOCH))
        resume_from = _resume_path(cfg, final_dir)
        if resume_from:
            state = _resume(resume_from, model, optimizer, scheduler, scaler, ctx, iters_per_epoch, logger)
        elif state.begin_epoch:
            _set_schedule_position(scheduler, state.begin_epoch * iters_per_epoch)
        _check_same_start(state, resume_from)
        end_epoch = int(cfg.TRAIN.END_EPOCH)
        if end_epoch <= 0:
            raise ValueError(f"TRAIN.END_EPOCH must be positive, got {end_epoch}")

        tb = TensorBoard(tb_dir, enabled=ctx.is_main, logger=logger)
        loop = _Loop(cfg, ctx, net, model, compute_loss, optimizer, scheduler, scaler, amp_dtype,
                     logger, tb, final_dir, iters_per_epoch, state, stop_after_iters)
        try:
            for epoch in range(state.begin_epoch, end_epoch):
                sampler.set_epoch(epoch)
                if hasattr(dataset, "set_epoch"):
                    dataset.set_epoch(epoch)
                start_iter = state.start_iter if epoch == state.begin_epoch else 0
                sampler.set_skip(start_iter * batch_size)
                generator = torch.Generator().manual_seed(int(cfg.SEED) * 100003 + epoch)
                loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                    num_workers=int(cfg.WORKERS), drop_last=True,
                                    pin_memory=bool(cfg.PIN_MEMORY) and device.type == "cuda",
                                    worker_init_fn=_seed_worker, generator=generator)
                loop.run_epoch(epoch, loader, start_iter)
                loop.save_checkpoint(epoch + 1, 0)
                if ctx.is_main:
                    # No validation during training (as upstream): the latest is the best.
                    ckpt.atomic_save(ckpt.strip_prefix(model.state_dict()), os.path.join(final_dir, BEST))
        except _Stop:
            return final_dir
        finally:
            tb.close()

        if ctx.is_main:
            path = os.path.join(final_dir, FINAL)
            logger.info(f"saving final model state to {path}")
            ckpt.atomic_save(ckpt.strip_prefix(model.state_dict()), path)
            curve = plot_training_curve(state.history, os.path.join(final_dir, CURVE),
                                        title=os.path.basename(final_dir))
            if curve:
                logger.info(f"training curve: {curve}")
        barrier()
        return final_dir
    finally:
        close_logger(logger)


def _seed_everything(seed):
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


@dataclass
class _TrainState:
    begin_epoch: int = 0
    start_iter: int = 0
    global_iter: int = 0
    history: list = None

    def __post_init__(self):
        if self.history is None:
            self.history = []


def _resume_path(cfg, final_dir):
    latest = os.path.join(final_dir, CHECKPOINT)
    if cfg.AUTO_RESUME and os.path.isfile(latest):
        return latest
    if cfg.TRAIN.RESUME:
        path = cfg.TRAIN.CHECKPOINT or latest
        if not os.path.isfile(path):
            raise FileNotFoundError(f"TRAIN.RESUME is set but the checkpoint does not exist: {path}")
        return path
    return None


def _check_same_start(state, resume_from):
    """Every rank must start at the same point. Only rank 0 writes checkpoints, so a node that
    cannot see them (OUTPUT_DIR not shared by all nodes) would otherwise restart from scratch
    beside resumed ranks: silently different replicas, then mismatched collectives."""
    starts = all_gather_objects((state.begin_epoch, state.start_iter, state.global_iter, resume_from))
    if len({s[:3] for s in starts}) > 1:
        where = "; ".join(f"rank {r}: epoch {e} iteration {i} from {p or 'no checkpoint'}"
                          for r, (e, i, _, p) in enumerate(starts))
        raise RuntimeError(f"the ranks would start from different points ({where}); OUTPUT_DIR must be "
                           "a folder every node sees (checkpoints are written by rank 0 only)")


def _set_schedule_position(scheduler, iteration):
    """Place the LR schedule at `iteration` (for checkpoints without scheduler state)."""
    scheduler.last_epoch = iteration
    lrs = [base * scheduler.factor(iteration) for base in scheduler.base_lrs]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs


def _resume(path, model, optimizer, scheduler, scaler, ctx, iters_per_epoch, logger):
    state = ckpt.load_file(path)
    for key in ("epoch", "state_dict", "optimizer"):
        if key not in state:
            raise KeyError(f"checkpoint {path} has no '{key}' entry")
    model.load_state_dict(ckpt.strip_prefix(state["state_dict"]))
    optimizer.load_state_dict(state["optimizer"])
    epoch, iteration = int(state["epoch"]), int(state.get("iteration", 0))
    if "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
    else:
        _set_schedule_position(scheduler, epoch * iters_per_epoch + iteration)
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rng = state.get("rng")
    if rng:
        ckpt.set_rng_state(rng[ctx.rank] if ctx.rank < len(rng) else rng[0], ctx.device)
        if ctx.rank >= len(rng):
            logger.warning(f"checkpoint holds RNG states for {len(rng)} ranks; rank {ctx.rank} "
                           "reuses rank 0's")
    if ctx.is_main:
        logger.info(f"=> resumed from {path} (epoch {epoch}, iteration {iteration})")
    return _TrainState(begin_epoch=epoch, start_iter=iteration,
                       global_iter=int(state.get("global_iteration", epoch * iters_per_epoch + iteration)),
                       history=list(state.get("history", [])))


class _Loop:
    def __init__(self, cfg, ctx, net, model, compute_loss, optimizer, scheduler, scaler, amp_dtype,
                 logger, tb, final_dir, iters_per_epoch, state, stop_after_iters):
        self.cfg, self.ctx, self.net, self.model = cfg, ctx, net, model
        self.compute_loss, self.optimizer, self.scheduler, self.scaler = compute_loss, optimizer, scheduler, scaler
        self.amp_dtype, self.logger, self.tb, self.final_dir = amp_dtype, logger, tb, final_dir
        self.iters_per_epoch, self.state, self.stop_after_iters = iters_per_epoch, state, stop_after_iters
        self.print_freq = max(int(cfg.PRINT_FREQ), 1)
        self.ckpt_every = int(cfg.TRAIN.CHECKPOINT_EVERY_ITERS)
        self.clip = float(cfg.TRAIN.CLIP_GRAD_NORM)

    def run_epoch(self, epoch, loader, start_iter):
        from tqdm import tqdm

        ctx, device = self.ctx, self.ctx.device
        self.net.train()
        n = self.iters_per_epoch
        bar = tqdm(total=n, initial=start_iter, desc=f"Epoch {epoch}", disable=not ctx.is_main,
                   dynamic_ncols=True, mininterval=1.0, leave=True)
        sums, count = {}, 0
        data_time = 0.0
        window_start = time.perf_counter()
        images_in_window = 0
        t = time.perf_counter()
        batches = iter(loader)
        try:
            for i in range(start_iter, n):
                batch = _to_device(next(batches), device)
                data_time += time.perf_counter() - t
                images = batch[0]
                with torch.autocast(device.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    outputs = self.net(images)
                loss, parts = self.compute_loss(outputs, batch)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if self.clip > 0:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.lr = self.optimizer.param_groups[0]["lr"]  # the LR this step used
                self.scheduler.step()
                self.state.global_iter += 1

                parts = {"loss": loss.detach(), **parts}
                for k, v in parts.items():
                    sums[k] = sums[k] + v if k in sums else v.clone()
                count += 1
                images_in_window += images.shape[0] * ctx.world_size
                bar.update(1)
                if (i + 1) % self.print_freq == 0 or i + 1 == n:
                    elapsed = time.perf_counter() - window_start
                    self._log(epoch, i + 1, sums, count, images_in_window / max(elapsed, 1e-9),
                              data_time / count, elapsed / count, bar)
                    sums, count, data_time, images_in_window = {}, 0, 0.0, 0
                    window_start = time.perf_counter()
                if self.ckpt_every > 0 and (i + 1) % self.ckpt_every == 0 and i + 1 < n:
                    self.save_checkpoint(epoch, i + 1)
                if self.stop_after_iters is not None and self.state.global_iter >= self.stop_after_iters:
                    raise _Stop()
                t = time.perf_counter()
        finally:
            bar.close()

    def _log(self, epoch, done, sums, count, speed, data_time, batch_time, bar):
        names = list(sums)
        means = all_reduce_mean(torch.stack([sums[k] for k in names]) / count).tolist()
        values = dict(zip(names, means))
        if not np.isfinite(values["loss"]):
            raise FloatingPointError(f"the training loss is {values['loss']} at epoch {epoch}, "
                                     f"iteration {done}: lower TRAIN.LR, or use FP16.DTYPE "
                                     "bfloat16 / disable FP16")
        lr = self.lr
        step = self.state.global_iter
        self.state.history.append({"iteration": step, "epoch": epoch, **values, "lr": lr,
                                   "images_per_s": speed})
        if not self.ctx.is_main:
            return
        bar.set_postfix({"loss": f"{values['loss']:.4g}", "img/s": f"{speed:.1f}"}, refresh=False)
        parts = "\t".join(f"{k}: {v:.3e}" for k, v in values.items() if k != "loss")
        self.logger.info(f"Epoch: [{epoch}][{done}/{self.iters_per_epoch}]\t"
                         f"Time: {batch_time:.3f}s\tSpeed: {speed:.1f} samples/s\t"
                         f"Data: {data_time:.3f}s\tLoss: {values['loss']:.3e}\t{parts}\tLR: {lr:.2e}")
        self.tb.scalars({"train_loss": values["loss"], **{f"train/{k}": v for k, v in values.items()},
                         "train/lr": lr, "train/images_per_s": speed}, step)

    def save_checkpoint(self, epoch, iteration):
        """checkpoint.pth.tar for resuming at (epoch, iteration); collective (gathers RNG)."""
        rng = all_gather_objects(ckpt.get_rng_state(self.ctx.device))
        if self.ctx.is_main:
            self._write_checkpoint(epoch, iteration, rng)
        # No rank trains on before the file is complete: whatever fails from here on (torchrun
        # then stops every worker) resumes from this checkpoint, not the one before.
        barrier()

    def _write_checkpoint(self, epoch, iteration, rng):
        model_state = self.model.state_dict()
        state = {
            "epoch": epoch,
            "iteration": iteration,
            "global_iteration": self.state.global_iter,
            "model": self.cfg.MODEL.NAME,
            "state_dict": ckpt.add_prefix(model_state),
            "best_state_dict": ckpt.strip_prefix(model_state),
            "perf": float(epoch),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "history": self.state.history,
            "config": self.cfg.dump(),
        }
        path = os.path.join(self.final_dir, CHECKPOINT)
        ckpt.atomic_save(state, path)
        self.logger.info(f"=> saved checkpoint {path} (epoch {epoch}, iteration {iteration})")
