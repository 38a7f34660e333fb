"""HigherHRNet (`MODEL.NAME: pose_higher_hrnet`): HRNet trunk + deconvolution head.

Outputs for an input [B, 3, H, W]: [B, J (heatmaps) + J (tags), H/4, W/4] from `final_layers.0`,
then one deconvolution stage per `EXTRA.DECONV.NUM_DECONVS` whose `final_layers.k` gives heatmaps
(plus tags where `LOSS.WITH_AE_LOSS[k]`), e.g. [B, J, H/2, W/2]. state_dict keys and shapes equal
upstream's, so released checkpoints load with strict=True.
"""
import torch
from torch import nn

from .blocks import BLOCKS, BN_MOMENTUM, init_conv_bn
from .hrnet import HRNetTrunk, _get


class PoseHigherResolutionNet(HRNetTrunk):

    def __init__(self, cfg):
        extra = cfg.MODEL.EXTRA
        super().__init__(extra, multi_scale_output=False)
        self.num_joints = cfg.MODEL.NUM_JOINTS
        self.tag_per_joint = cfg.MODEL.TAG_PER_JOINT
        self.with_ae_loss = list(cfg.LOSS.WITH_AE_LOSS)
        deconv = _get(extra, "DECONV")
        self.num_deconvs = _get(deconv, "NUM_DECONVS", 0)
        self.deconv_cat_output = list(_get(deconv, "CAT_OUTPUT", [False] * self.num_deconvs))
        if len(self.with_ae_loss) < self.num_deconvs + 1:
            raise ValueError(f"LOSS.WITH_AE_LOSS {self.with_ae_loss} needs NUM_DECONVS + 1 = "
                             f"{self.num_deconvs + 1} entries")
        self.final_layers = self._make_final_layers(extra, self.final_channels[0])
        self.deconv_layers = self._make_deconv_layers(extra, self.final_channels[0])
        self.pretrained_layers = list(_get(extra, "PRETRAINED_LAYERS", ["*"]))

    def _out_channels(self, stage):
        tags = self.num_joints if self.tag_per_joint else 1
        return self.num_joints + (tags if self.with_ae_loss[stage] else 0)

    def _make_final_layers(self, extra, channels):
        kernel = _get(extra, "FINAL_CONV_KERNEL", 1)
        layers = [nn.Conv2d(channels, self._out_channels(0), kernel, 1, 1 if kernel == 3 else 0)]
        deconv_channels = _get(_get(extra, "DECONV"), "NUM_CHANNELS", [])
        for i in range(self.num_deconvs):
            layers.append(nn.Conv2d(deconv_channels[i], self._out_channels(i + 1), kernel, 1,
                                    1 if kernel == 3 else 0))
        return nn.ModuleList(layers)

    def _make_deconv_layers(self, extra, channels):
        deconv = _get(extra, "DECONV")
        layers = []
        for i in range(self.num_deconvs):
            inc = channels + (self._out_channels(i) if self.deconv_cat_output[i] else 0)
            outc = deconv.NUM_CHANNELS[i]
            kernel = deconv.KERNEL_SIZE[i]
            padding, output_padding = {4: (1, 0), 3: (1, 1), 2: (0, 0)}[kernel]
            blocks = [nn.Sequential(nn.ConvTranspose2d(inc, outc, kernel, 2, padding, output_padding, bias=False),
                                    nn.BatchNorm2d(outc, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))]
            blocks += [nn.Sequential(BLOCKS["BASIC"](outc, outc)) for _ in range(_get(deconv, "NUM_BASIC_BLOCKS", 4))]
            layers.append(nn.Sequential(*blocks))
            channels = outc
        return nn.ModuleList(layers)

    def forward_heads(self, x):
        y = self.final_layers[0](x)
        outputs = [y]
        for i in range(self.num_deconvs):
            if self.deconv_cat_output[i]:
                x = torch.cat((x, y), 1)
            x = self.deconv_layers[i](x)
            y = self.final_layers[i + 1](x)
            outputs.append(y)
        return outputs

    def forward(self, x):
        return self.forward_heads(self.forward_features(x)[0])

    def init_weights(self, pretrained="", pretrained_layers=None):
        """Upstream initialisation, then ImageNet HRNet weights for PRETRAINED_LAYERS (if given)."""
        init_conv_bn(self)
        if pretrained:
            from .checkpoint import load_pretrained
            load_pretrained(self, pretrained, pretrained_layers or self.pretrained_layers)


def get_pose_net(cfg, is_train=False):
    model = PoseHigherResolutionNet(cfg)
    if is_train and cfg.MODEL.INIT_WEIGHTS:
        model.init_weights(cfg.MODEL.PRETRAINED)
    return model
