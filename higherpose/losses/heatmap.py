"""Heatmap losses: masked MSE for bottom-up, target-weighted MSE for top-down."""
import torch
from torch import nn


class HeatmapLoss(nn.Module):
    """((pred − gt)² · mask) averaged over joints and pixels: one value per image, shape [B]."""

    def forward(self, pred, gt, mask):
        if pred.shape != gt.shape:
            raise ValueError(f"heatmap prediction {tuple(pred.shape)} and target {tuple(gt.shape)} differ")
        if mask.shape != (pred.shape[0],) + tuple(pred.shape[2:]):
            raise ValueError(f"mask {tuple(mask.shape)} must be [B, H, W] of {tuple(pred.shape)}")
        loss = (pred - gt) ** 2 * mask[:, None, :, :].to(pred.dtype)
        return loss.mean(dim=(1, 2, 3))


class JointsMSELoss(nn.Module):
    """Top-down loss of HRFormer's mmpose fork: mean squared error of target-weighted heatmaps,
    averaged over joints (no 0.5 factor). output/target [B, J, H, W], target_weight [B, J, 1]."""

    def __init__(self, use_target_weight=True):
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(self, output, target, target_weight=None):
        if output.shape != target.shape:
            raise ValueError(f"heatmap prediction {tuple(output.shape)} and target {tuple(target.shape)} differ")
        diff = output - target
        if self.use_target_weight:
            if target_weight is None:
                raise ValueError("JointsMSELoss(use_target_weight=True) needs target_weight [B, J, 1]")
            w = target_weight.reshape(output.shape[0], output.shape[1], 1, 1).to(output.dtype)
            diff = diff * w
        # every joint has B·H·W elements, so the mean over joints of per-joint means is the global mean
        return (diff ** 2).mean()
