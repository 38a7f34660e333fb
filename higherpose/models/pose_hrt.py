"""Top-down HRFormer (`MODEL.NAME: pose_hrt`): `backbone` = HRT, `keypoint_head.final_layer` =
1x1 conv -> [B, J, H/4, W/4]. Module names follow mmpose's TopDown detector, so the upstream
HRFormer pose checkpoints (keys `backbone.*`, `keypoint_head.*`) load with strict=True.
"""
from torch import nn

from .hrnet import _get
from .hrt import HRT


class TopDownSimpleHead(nn.Module):
    """No deconvolution layers; a single 1x1 conv with bias on the first backbone output."""

    def __init__(self, in_channels, num_joints, kernel=1):
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, num_joints, kernel, 1, (kernel - 1) // 2)

    def forward(self, features):
        return self.final_layer(features[0])

    def init_weights(self):
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)


class PoseHRT(nn.Module):

    def __init__(self, cfg):
        super().__init__()
        extra = cfg.MODEL.EXTRA
        self.backbone = HRT(extra)
        self.keypoint_head = TopDownSimpleHead(self.backbone.final_channels[0], cfg.MODEL.NUM_JOINTS,
                                               _get(extra, "FINAL_CONV_KERNEL", 1))
        self.pretrained_layers = list(_get(extra, "PRETRAINED_LAYERS", ["*"]))

    def forward(self, x):
        return self.keypoint_head(self.backbone(x))

    def init_weights(self, pretrained="", pretrained_layers=None):
        """Upstream init, then ImageNet HRT weights (bare keys, or under 'model') into the backbone."""
        self.backbone.init_weights()
        self.keypoint_head.init_weights()
        if pretrained:
            from .checkpoint import load_pretrained
            load_pretrained(self.backbone, pretrained, pretrained_layers or self.pretrained_layers)


def get_pose_net(cfg, is_train=False):
    model = PoseHRT(cfg)
    if is_train and cfg.MODEL.INIT_WEIGHTS:
        model.init_weights(cfg.MODEL.PRETRAINED)
    return model
