"""Loss set-up from the config, as upstream's MultiLossFactory."""
from torch import nn

from .ae import AELoss
from .heatmap import HeatmapLoss, JointsMSELoss


class MultiLossFactory(nn.Module):
    """Per output stage: masked heatmap loss and (where enabled) AE push/pull.

    forward(outputs, heatmaps, masks, joints) -> (heatmaps_losses, push_losses, pull_losses),
    lists with one entry per stage: a [B] tensor already multiplied by its factor, or None where
    the stage has no such loss. Stage outputs hold J heatmaps first, then the tag maps.
    """

    def __init__(self, cfg):
        super().__init__()
        loss = cfg.LOSS
        self.num_joints = cfg.DATASET.NUM_JOINTS
        self.num_stages = loss.NUM_STAGES
        for name in ("WITH_HEATMAPS_LOSS", "HEATMAPS_LOSS_FACTOR", "WITH_AE_LOSS", "PUSH_LOSS_FACTOR",
                     "PULL_LOSS_FACTOR"):
            if len(loss[name]) != self.num_stages:
                raise ValueError(f"LOSS.{name} has {len(loss[name])} entries, LOSS.NUM_STAGES is {self.num_stages}")
        self.with_heatmaps = list(loss.WITH_HEATMAPS_LOSS)
        self.heatmaps_factor = list(loss.HEATMAPS_LOSS_FACTOR)
        self.with_ae = list(loss.WITH_AE_LOSS)
        self.push_factor = list(loss.PUSH_LOSS_FACTOR)
        self.pull_factor = list(loss.PULL_LOSS_FACTOR)
        self.heatmap_loss = HeatmapLoss()
        self.ae_loss = AELoss(loss.AE_LOSS_TYPE)

    def forward(self, outputs, heatmaps, masks, joints):
        if not (len(outputs) == len(heatmaps) == len(masks) == len(joints) == self.num_stages):
            raise ValueError(f"expected {self.num_stages} stages of outputs/heatmaps/masks/joints, got "
                             f"{len(outputs)}/{len(heatmaps)}/{len(masks)}/{len(joints)}")
        heatmaps_losses, push_losses, pull_losses = [], [], []
        for i, out in enumerate(outputs):
            offset = 0
            if self.with_heatmaps[i]:
                pred = out[:, :self.num_joints]
                offset = self.num_joints
                heatmaps_losses.append(self.heatmap_loss(pred, heatmaps[i], masks[i]) * self.heatmaps_factor[i])
            else:
                heatmaps_losses.append(None)
            if self.with_ae[i]:
                tags = out[:, offset:].reshape(out.shape[0], -1)
                push, pull = self.ae_loss(tags, joints[i])
                push_losses.append(push * self.push_factor[i])
                pull_losses.append(pull * self.pull_factor[i])
            else:
                push_losses.append(None)
                pull_losses.append(None)
        return heatmaps_losses, push_losses, pull_losses


TOP_DOWN_MODELS = ("pose_hrt", "pose_hrnet")


def build_loss(cfg):
    """JointsMSELoss for top-down models, MultiLossFactory for bottom-up ones."""
    if cfg.MODEL.NAME in TOP_DOWN_MODELS:
        return JointsMSELoss(cfg.LOSS.USE_TARGET_WEIGHT)
    return MultiLossFactory(cfg)
