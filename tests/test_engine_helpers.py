"""Tiny stand-ins and config helpers shared by the engine tests (no tests here).

The stand-ins are module-level so spawned processes can unpickle them.
"""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from higherpose.config import get_default_config

J = 4


def tiny_cfg(tmp_path, **overrides):
    """A bottom-up config for 64x64 inputs, outputs [16, 32], writing under tmp_path."""
    cfg = get_default_config()
    cfg.OUTPUT_DIR = str(tmp_path / "output")
    cfg.LOG_DIR = str(tmp_path / "log")
    cfg.WORKERS = 0
    cfg.PRINT_FREQ = 1
    cfg.AUTO_RESUME = True
    cfg.DATASET.DATASET = "tiny_kpt"
    cfg.DATASET.NUM_JOINTS = J
    cfg.MODEL.NUM_JOINTS = J
    cfg.DATASET.INPUT_SIZE = 64
    cfg.DATASET.OUTPUT_SIZE = [16, 32]
    cfg.MODEL.NAME = "tiny_standin"
    cfg.MODEL.EXTRA.DROPOUT = 0.0
    cfg.MODEL.EXTRA.NUM_SAMPLES = 16
    cfg.LOSS.NUM_STAGES = 2
    cfg.LOSS.WITH_AE_LOSS = (True, False)
    cfg.LOSS.WITH_HEATMAPS_LOSS = (True, True)
    cfg.LOSS.HEATMAPS_LOSS_FACTOR = (1.0, 1.0)
    cfg.LOSS.PUSH_LOSS_FACTOR = (0.001, 0.001)
    cfg.LOSS.PULL_LOSS_FACTOR = (0.001, 0.001)
    cfg.TRAIN.IMAGES_PER_GPU = 4
    cfg.TRAIN.END_EPOCH = 2
    cfg.TRAIN.LR = 0.01
    cfg.TRAIN.LR_STEP = [1]
    cfg.TRAIN.OPTIMIZER = "adam"
    for key, value in overrides.items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return cfg


class TinyBottomUp(nn.Module):
    """Outputs [B, 2J, R/4, R/4] and [B, J, R/2, R/2] like HigherHRNet; no BatchNorm."""

    def __init__(self, joints=J, dropout=0.0):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU())
        self.drop = nn.Dropout2d(dropout)
        self.head0 = nn.Conv2d(8, 2 * joints, 1)
        self.up = nn.Conv2d(8 + 2 * joints, joints, 3, 1, 1)

    def forward(self, x):
        f = self.drop(self.stem(x))
        y0 = self.head0(f)
        y1 = self.up(F.interpolate(torch.cat([f, y0], 1), scale_factor=2.0, mode="nearest"))
        return [y0, y1]


def build_tiny_model(cfg, is_train):
    return TinyBottomUp(cfg.MODEL.NUM_JOINTS, float(cfg.MODEL.EXTRA.DROPOUT))


class TinyDataset(torch.utils.data.Dataset):
    """Bottom-up samples whose content depends only on (epoch, index), like the real sets."""

    def __init__(self, n, joints, input_size, output_sizes, people=2):
        self.n, self.j, self.s, self.outs, self.people = n, joints, input_size, output_sizes, people
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __getitem__(self, idx):
        rng = np.random.default_rng([self.epoch, idx])
        image = torch.from_numpy(rng.standard_normal((3, self.s, self.s)).astype(np.float32))
        pts = rng.uniform(0.1, 0.9, (self.people, self.j, 2))
        heatmaps, masks, joints = [], [], []
        for r in self.outs:
            yy, xx = np.mgrid[0:r, 0:r]
            hm = np.zeros((self.j, r, r), np.float32)
            jt = np.zeros((self.people, self.j, 2), np.int64)
            for p in range(self.people):
                for k in range(self.j):
                    x, y = int(pts[p, k, 0] * r), int(pts[p, k, 1] * r)
                    hm[k] = np.maximum(hm[k], np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0))
                    jt[p, k] = (k * r * r + y * r + x, 1)
            heatmaps.append(hm)
            masks.append(np.ones((r, r), np.float32))
            joints.append(jt)
        return image, heatmaps, masks, joints


def build_tiny_dataset(cfg, is_train):
    return TinyDataset(int(cfg.MODEL.EXTRA.NUM_SAMPLES), cfg.DATASET.NUM_JOINTS, cfg.DATASET.INPUT_SIZE,
                       list(cfg.DATASET.OUTPUT_SIZE))


class TinyLoss(nn.Module):
    """Masked heatmap MSE per stage and an AE pull/push on stage 0, per image."""

    def __init__(self, cfg):
        super().__init__()
        self.j = cfg.MODEL.NUM_JOINTS

    def forward(self, outputs, heatmaps, masks, joints):
        hm_losses, push_losses, pull_losses = [], [], []
        for s, out in enumerate(outputs):
            pred = out[:, :self.j]
            hm_losses.append(((pred - heatmaps[s]) ** 2 * masks[s][:, None]).mean(dim=(1, 2, 3)))
            if s == 0:
                tags = out[:, self.j:].reshape(out.shape[0], -1)
                idx, vis = joints[s][..., 0], joints[s][..., 1].float()
                vals = torch.gather(tags, 1, idx.reshape(idx.shape[0], -1)).reshape(idx.shape)
                mean = (vals * vis).sum(-1) / vis.sum(-1).clamp(min=1)
                pull = (((vals - mean[..., None]) ** 2) * vis).sum(-1) / vis.sum(-1).clamp(min=1)
                diff = mean[:, :, None] - mean[:, None, :]
                push = torch.exp(-diff ** 2).mean(dim=(1, 2))
                pull_losses.append(pull.mean(-1) * 1e-3)
                push_losses.append(push * 1e-3)
            else:
                push_losses.append(None)
                pull_losses.append(None)
        return hm_losses, push_losses, pull_losses


def build_tiny_loss(cfg):
    return TinyLoss(cfg)


def standin_components():
    from higherpose.engine import Components
    return Components(build_tiny_model, build_tiny_dataset, build_tiny_loss)


def final_weights(final_dir):
    import os
    return torch.load(os.path.join(final_dir, "final_state.pth.tar"), weights_only=True)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and a shared CPU is not oversubscribed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
