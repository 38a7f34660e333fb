"""Top-down HRNet (`MODEL.NAME: pose_hrnet`, "Deep High-Resolution Representation Learning for
Human Pose Estimation"): HRNet trunk + a 1x1 `final_layer` on branch 0 -> [B, J, H/4, W/4].
Keys as upstream deep-high-resolution-net checkpoints (conv1 ... stage4, final_layer).
"""
from torch import nn

from .blocks import init_conv_bn
from .hrnet import HRNetTrunk, _get


class PoseHighResolutionNet(HRNetTrunk):

    def __init__(self, cfg):
        extra = cfg.MODEL.EXTRA
        super().__init__(extra, multi_scale_output=False)
        kernel = _get(extra, "FINAL_CONV_KERNEL", 1)
        self.final_layer = nn.Conv2d(self.final_channels[0], cfg.MODEL.NUM_JOINTS, kernel, 1,
                                     1 if kernel == 3 else 0)
        self.pretrained_layers = list(_get(extra, "PRETRAINED_LAYERS", ["*"]))

    def forward(self, x):
        return self.final_layer(self.forward_features(x)[0])

    def init_weights(self, pretrained="", pretrained_layers=None):
        init_conv_bn(self)
        if pretrained:
            from .checkpoint import load_pretrained
            load_pretrained(self, pretrained, pretrained_layers or self.pretrained_layers)


def get_pose_net(cfg, is_train=False):
    model = PoseHighResolutionNet(cfg)
    if is_train and cfg.MODEL.INIT_WEIGHTS:
        model.init_weights(cfg.MODEL.PRETRAINED)
    return model
