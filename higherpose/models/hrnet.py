"""HRNet trunk (stem, layer1, transitions, multi-branch stages with sum fusion).

Shared by HigherHRNet (`pose_higher_hrnet`), the structure-aware `higher_pose` network and the
top-down `pose_hrnet`. Configured from upstream's `MODEL.EXTRA` (STAGE2..STAGE4 with NUM_MODULES,
NUM_BRANCHES, BLOCK, NUM_BLOCKS, NUM_CHANNELS, FUSE_METHOD). Module and attribute names are
upstream's, so the networks that inherit from `HRNetTrunk` keep upstream state_dict keys.
"""
from torch import nn

from .._cfg import cfg_get as _get  # the package's one config reader; the model modules import `_get` from here
from .blocks import BLOCKS, BN_MOMENTUM, Bottleneck, make_res_layer


class HighResolutionModule(nn.Module):
    """Parallel branches of residual blocks, then every branch is fused into every output (sum)."""

    def __init__(self, num_branches, block, num_blocks, num_inchannels, num_channels, fuse_method="SUM",
                 multi_scale_output=True):
        super().__init__()
        if not (num_branches == len(num_blocks) == len(num_channels) == len(num_inchannels)):
            raise ValueError(f"HRNet stage: NUM_BRANCHES {num_branches} does not match NUM_BLOCKS {num_blocks}, "
                             f"NUM_CHANNELS {num_channels} or input channels {num_inchannels}")
        if fuse_method != "SUM":
            raise ValueError(f"HRNet stage: unsupported FUSE_METHOD {fuse_method!r} (only 'SUM')")
        self.num_branches = num_branches
        self.multi_scale_output = multi_scale_output
        self.num_inchannels = list(num_inchannels)
        self.branches = nn.ModuleList()
        for i in range(num_branches):
            self.branches.append(make_res_layer(block, self.num_inchannels[i], num_channels[i], num_blocks[i]))
            self.num_inchannels[i] = num_channels[i] * block.expansion
        self.fuse_layers = self._make_fuse_layers() if num_branches > 1 else None
        self.relu = nn.ReLU(inplace=True)

    def _make_fuse_layers(self):
        c = self.num_inchannels
        fuse_layers = nn.ModuleList()
        for i in range(self.num_branches if self.multi_scale_output else 1):
            row = nn.ModuleList()
            for j in range(self.num_branches):
                if j > i:  # lower resolution -> 1x1 conv, BN, nearest upsampling
                    row.append(nn.Sequential(nn.Conv2d(c[j], c[i], 1, bias=False),
                                             nn.BatchNorm2d(c[i], momentum=BN_MOMENTUM),
                                             nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
                elif j == i:
                    row.append(None)
                else:  # higher resolution -> (i - j) stride-2 3x3 convs; ReLU on all but the last
                    steps = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        out = c[i] if last else c[j]
                        layers = [nn.Conv2d(c[j], out, 3, 2, 1, bias=False), nn.BatchNorm2d(out, momentum=BN_MOMENTUM)]
                        if not last:
                            layers.append(nn.ReLU(inplace=True))
                        steps.append(nn.Sequential(*layers))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(row)
        return fuse_layers

    def forward(self, x):
        x = [branch(xi) for branch, xi in zip(self.branches, x)]
        if self.num_branches == 1:
            return x
        fused = []
        for i, row in enumerate(self.fuse_layers):
            y = None
            for j in range(self.num_branches):
                contribution = x[j] if i == j else row[j](x[j])
                y = contribution if y is None else y + contribution
            fused.append(self.relu(y))
        return fused


def make_transition(pre_channels, cur_channels):
    """Adapt the previous stage's branches to the next stage's (and create the new branches)."""
    layers = nn.ModuleList()
    for i, out in enumerate(cur_channels):
        if i < len(pre_channels):
            if out != pre_channels[i]:
                layers.append(nn.Sequential(nn.Conv2d(pre_channels[i], out, 3, 1, 1, bias=False),
                                            nn.BatchNorm2d(out, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)))
            else:
                layers.append(None)
        else:  # new lower-resolution branch from the last existing one
            steps = []
            for k in range(i + 1 - len(pre_channels)):
                inc = pre_channels[-1]
                outc = out if k == i - len(pre_channels) else inc
                steps.append(nn.Sequential(nn.Conv2d(inc, outc, 3, 2, 1, bias=False),
                                           nn.BatchNorm2d(outc, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)))
            layers.append(nn.Sequential(*steps))
    return layers


def make_stage(stage_cfg, num_inchannels, multi_scale_output=True):
    """NUM_MODULES HighResolutionModules; the last one may fuse into branch 0 only."""
    num_modules = _get(stage_cfg, "NUM_MODULES")
    block = BLOCKS[_get(stage_cfg, "BLOCK")]
    modules = []
    for m in range(num_modules):
        module = HighResolutionModule(_get(stage_cfg, "NUM_BRANCHES"), block, _get(stage_cfg, "NUM_BLOCKS"),
                                      num_inchannels, _get(stage_cfg, "NUM_CHANNELS"),
                                      _get(stage_cfg, "FUSE_METHOD", "SUM"),
                                      multi_scale_output or m < num_modules - 1)
        num_inchannels = module.num_inchannels
        modules.append(module)
    return nn.Sequential(*modules), num_inchannels


def _apply_transition(transition, x_list, y_list):
    """Stage input: transitioned existing branches, new branches from the last previous output."""
    out = []
    for i, layer in enumerate(transition):
        if layer is None:
            out.append(y_list[i])
        else:
            out.append(layer(y_list[i] if i < len(y_list) else y_list[-1]))
    return out


class HRNetTrunk(nn.Module):
    """Stem + layer1 + stages 2-4 of HRNet. `forward_features(x)` returns the branch outputs of
    stage 4 (only branch 0 when the last module is single-scale, as in the pose networks).
    """

    def __init__(self, extra, multi_scale_output=False):
        super().__init__()
        stem = _get(extra, "STEM_INPLANES", 64)
        self.conv1 = nn.Conv2d(3, stem, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(stem, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        # (higherpose) LAYER1_PLANES / LAYER1_NUM_BLOCKS shrink layer1 for small models; the
        # defaults are upstream's 4 Bottlenecks of 64 planes.
        planes = _get(extra, "LAYER1_PLANES", 64)
        self.layer1 = make_res_layer(Bottleneck, 64, planes, _get(extra, "LAYER1_NUM_BLOCKS", 4))
        pre = [planes * Bottleneck.expansion]
        for n in (2, 3, 4):
            stage_cfg = _get(extra, f"STAGE{n}")
            if stage_cfg is None:
                raise ValueError(f"MODEL.EXTRA.STAGE{n} is missing (HRNet needs STAGE2..STAGE4)")
            block = BLOCKS[_get(stage_cfg, "BLOCK")]
            channels = [c * block.expansion for c in _get(stage_cfg, "NUM_CHANNELS")]
            setattr(self, f"transition{n - 1}", make_transition(pre, channels))
            stage, pre = make_stage(stage_cfg, channels, multi_scale_output=(n < 4 or multi_scale_output))
            setattr(self, f"stage{n}", stage)
        self.final_channels = pre

    def forward_features(self, x):
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"HRNet expects images [B, 3, H, W], got {tuple(x.shape)}")
        if x.shape[-2] % 32 or x.shape[-1] % 32:
            # four branches down to 1/32 with nearest 2^k upsampling in the fusion (as upstream)
            raise ValueError(f"HRNet input height and width must be multiples of 32, got {tuple(x.shape[-2:])}")
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        y = [self.layer1(x)]
        for n in (2, 3, 4):
            y = getattr(self, f"stage{n}")(_apply_transition(getattr(self, f"transition{n - 1}"), None, y))
        return y
