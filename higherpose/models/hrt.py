"""HRFormer backbone (`HRT`) and its transformer block.

Structure as upstream HRFormer pose code (see docs of `HRT`): HRNet stem and a 2-Bottleneck
layer1, then stages of `HighResolutionTransformerModule`s whose branches are
`GeneralTransformerBlock`s (pre-norm LayerNorm eps 1e-6, local-window attention with HRFormer's
centre zero padding, MlpDWBN feed-forward with a final GELU, stochastic depth), fused by
depthwise-separable stride-2 convolutions (down) and 1x1 conv + bilinear upsampling (up).
Parameter names equal upstream's (`attn.attn.q_proj`, `mlp.dw3x3`, ...), so HRFormer checkpoints
load with strict=True. The attention is `higherpose.ops.window_attention` ("zeros" mode: padded
positions are zero tokens whose keys / values are the projection biases).
"""
import torch
import torch.nn.functional as F
from torch import nn

from .attention import WindowMultiheadAttention
from .blocks import BN_MOMENTUM, Bottleneck, DropPath, init_conv_bn, make_res_layer
from .hrnet import _get


class LocalWindowAttention(nn.Module):
    """Upstream's `InterlacedPoolAttention` wrapper (hence keys `attn.attn.*`), image layout.

    forward(x [B, H, W, C], offset=None) -> [B, H, W, C]; offset None = HRFormer centre padding.
    """

    def __init__(self, dim, num_heads, window_size=7, with_rpe=False, pad_mode="zeros"):
        super().__init__()
        self.attn = WindowMultiheadAttention(dim, num_heads, window_size, with_rpe=with_rpe, pad_mode=pad_mode)

    def forward(self, x, offset=None):
        return self.attn(x, offset)


class MlpDWBN(nn.Module):
    """1x1 conv -> BN -> GELU -> depthwise 3x3 -> BN -> GELU -> 1x1 conv -> BN -> GELU, on [B, H, W, C]."""

    def __init__(self, in_features, hidden_features, out_features=None):
        super().__init__()
        out_features = out_features or in_features
        self.fc1 = nn.Conv2d(in_features, hidden_features, 1)
        self.norm1 = nn.BatchNorm2d(hidden_features, momentum=BN_MOMENTUM)
        self.act1 = nn.GELU()
        self.dw3x3 = nn.Conv2d(hidden_features, hidden_features, 3, 1, 1, groups=hidden_features)
        self.norm2 = nn.BatchNorm2d(hidden_features, momentum=BN_MOMENTUM)
        self.act2 = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_features, out_features, 1)
        self.norm3 = nn.BatchNorm2d(out_features, momentum=BN_MOMENTUM)
        self.act3 = nn.GELU()

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)
        x = self.act1(self.norm1(self.fc1(x)))
        x = self.act2(self.norm2(self.dw3x3(x)))
        x = self.act3(self.norm3(self.fc2(x)))
        return x.permute(0, 2, 3, 1)


class GeneralTransformerBlock(nn.Module):
    """x + DropPath(Attn(LN(x))), then x + DropPath(MlpDWBN(LN(x))); NCHW in and out (same memory format)."""
    expansion = 1

    def __init__(self, inplanes, planes, num_heads=1, window_size=7, mlp_ratio=4.0, drop_path=0.0,
                 with_rpe=False, pad_mode="zeros"):
        super().__init__()
        if inplanes != planes:
            raise ValueError(f"transformer block needs inplanes == planes, got {inplanes} and {planes}")
        self.attn = LocalWindowAttention(planes, num_heads, window_size, with_rpe, pad_mode)
        self.norm1 = nn.LayerNorm(planes, eps=1e-6)
        self.norm2 = nn.LayerNorm(planes, eps=1e-6)
        self.mlp = MlpDWBN(planes, int(planes * mlp_ratio), planes)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, offset=None):
        # The block works on [B, H, W, C] and gives its output back in the input's memory format: a
        # channels-last network (model.to(memory_format=torch.channels_last)) pays no layout copy here.
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        x = x.permute(0, 2, 3, 1)
        x = x + self.drop_path(self.attn(self.norm1(x), offset))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.permute(0, 3, 1, 2).contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class HighResolutionTransformerModule(nn.Module):

    def __init__(self, num_branches, num_blocks, num_inchannels, num_channels, num_heads, window_sizes,
                 mlp_ratios, drop_paths, multi_scale_output=True, with_rpe=False):
        super().__init__()
        for name, value in (("NUM_BLOCKS", num_blocks), ("NUM_CHANNELS", num_channels), ("NUM_HEADS", num_heads),
                            ("NUM_WINDOW_SIZES", window_sizes), ("NUM_MLP_RATIOS", mlp_ratios)):
            if len(value) != num_branches:
                raise ValueError(f"HRT stage: {name} {list(value)} must have NUM_BRANCHES = {num_branches} entries")
        self.num_branches = num_branches
        self.multi_scale_output = multi_scale_output
        self.num_inchannels = list(num_inchannels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[GeneralTransformerBlock(num_inchannels[i], num_channels[i], num_heads[i], window_sizes[i],
                                                    mlp_ratios[i], drop_paths[j], with_rpe)
                            for j in range(num_blocks[i])])
            for i in range(num_branches))
        self.num_inchannels = list(num_channels)
        self.fuse_layers = self._make_fuse_layers() if num_branches > 1 else None
        self.relu = nn.ReLU(inplace=True)

    def _make_fuse_layers(self):
        c = self.num_inchannels
        fuse_layers = nn.ModuleList()
        for i in range(self.num_branches if self.multi_scale_output else 1):
            row = nn.ModuleList()
            for j in range(self.num_branches):
                if j > i:
                    row.append(nn.Sequential(nn.Conv2d(c[j], c[i], 1, bias=False),
                                             nn.BatchNorm2d(c[i], momentum=BN_MOMENTUM),
                                             nn.Upsample(scale_factor=2 ** (j - i), mode="bilinear",
                                                         align_corners=False)))
                elif j == i:
                    row.append(None)
                else:  # depthwise-separable stride-2 steps; ReLU after all but the last
                    steps = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        out = c[i] if last else c[j]
                        layers = [nn.Conv2d(c[j], c[j], 3, 2, 1, groups=c[j], bias=False),
                                  nn.BatchNorm2d(c[j], momentum=BN_MOMENTUM),
                                  nn.Conv2d(c[j], out, 1, bias=False),
                                  nn.BatchNorm2d(out, momentum=BN_MOMENTUM)]
                        if not last:
                            layers.append(nn.ReLU(inplace=False))
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
                if j == i:
                    contribution = x[j]
                else:
                    contribution = row[j](x[j])
                    if j > i and contribution.shape[-2:] != x[i].shape[-2:]:
                        contribution = F.interpolate(contribution, size=x[i].shape[-2:], mode="bilinear",
                                                     align_corners=False)
                y = contribution if y is None else y + contribution
            fused.append(self.relu(y))
        return fused


def _make_transition(pre, cur):
    layers = nn.ModuleList()
    for i, out in enumerate(cur):
        if i < len(pre):
            layers.append(None if out == pre[i] else nn.Sequential(
                nn.Conv2d(pre[i], out, 3, 1, 1, bias=False), nn.BatchNorm2d(out, momentum=BN_MOMENTUM),
                nn.ReLU(inplace=True)))
        else:
            steps = []
            for k in range(i + 1 - len(pre)):
                outc = out if k == i - len(pre) else pre[-1]
                steps.append(nn.Sequential(nn.Conv2d(pre[-1], outc, 3, 2, 1, bias=False),
                                           nn.BatchNorm2d(outc, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)))
            layers.append(nn.Sequential(*steps))
    return layers


class HRT(nn.Module):
    """HRFormer backbone from upstream-style `MODEL.EXTRA`:

    STAGE1 {NUM_BLOCKS [2], NUM_CHANNELS [64]} (Bottlenecks);
    STAGE2..4 {NUM_MODULES, NUM_BRANCHES, NUM_BLOCKS, NUM_CHANNELS, NUM_HEADS, NUM_MLP_RATIOS,
    NUM_WINDOW_SIZES}; DROP_PATH_RATE; WITH_RPE (higherpose; default False = upstream pose).
    forward(x) -> [branch-0 feature [B, C, H/4, W/4]] (the last module fuses into branch 0 only).
    """

    def __init__(self, extra):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        stage1 = _get(extra, "STAGE1")
        planes = _get(stage1, "NUM_CHANNELS", [64])[0]
        self.layer1 = make_res_layer(Bottleneck, 64, planes, _get(stage1, "NUM_BLOCKS", [2])[0])
        with_rpe = bool(_get(extra, "WITH_RPE", False))
        stages = []
        for n in (2, 3, 4):
            s = _get(extra, f"STAGE{n}")
            if s is None:
                raise ValueError(f"MODEL.EXTRA.STAGE{n} is missing (HRT needs STAGE2..STAGE4)")
            stages.append(s)
        depth = sum(s.NUM_BLOCKS[0] * s.NUM_MODULES for s in stages)
        dpr = torch.linspace(0, float(_get(extra, "DROP_PATH_RATE", 0.0)), depth, device="cpu").tolist()
        pre, start = [planes * Bottleneck.expansion], 0
        for n, s in zip((2, 3, 4), stages):
            setattr(self, f"transition{n - 1}", _make_transition(pre, list(s.NUM_CHANNELS)))
            modules, channels = [], list(s.NUM_CHANNELS)
            for m in range(s.NUM_MODULES):
                per = s.NUM_BLOCKS[0]
                module = HighResolutionTransformerModule(
                    s.NUM_BRANCHES, s.NUM_BLOCKS, channels, s.NUM_CHANNELS, s.NUM_HEADS, s.NUM_WINDOW_SIZES,
                    s.NUM_MLP_RATIOS, dpr[start + per * m: start + per * (m + 1)],
                    multi_scale_output=(n < 4 or m < s.NUM_MODULES - 1), with_rpe=with_rpe)
                channels = module.num_inchannels
                modules.append(module)
            start += s.NUM_BLOCKS[0] * s.NUM_MODULES
            setattr(self, f"stage{n}", nn.Sequential(*modules))
            pre = channels
        self.final_channels = pre

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        y = [self.layer1(x)]
        for n in (2, 3, 4):
            transition = getattr(self, f"transition{n - 1}")
            x_list = [y[i] if t is None else t(y[i] if i < len(y) else y[-1]) for i, t in enumerate(transition)]
            y = getattr(self, f"stage{n}")(x_list)
        return y

    def init_weights(self):
        """Upstream without pretrained weights: conv N(0, 0.001), BN / LayerNorm weight 1, bias 0."""
        init_conv_bn(self)
