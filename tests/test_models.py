"""Networks: upstream key/shape maps, parameter counts, forward shapes, initialisation, registry.

Key lists come from tests/data/*_keys.txt (facts about upstream checkpoints, see the README
there); full-width models are only built (cheap), forwards run at reduced width and small inputs
(full width is seconds per image on a 2-core CPU).
"""
import ast
import functools
import os

import pytest
import torch
import torch.nn.functional as F

from higherpose.config import load_config
from higherpose.models import MODELS, build_model, load_checkpoint
from higherpose.models.hrt import GeneralTransformerBlock

REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

CROWD_W32 = "configs/crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml"
CROWD_W48 = "configs/crowd_pose/higher_hrnet/w48_640_adam_lr1e-3.yaml"
COCO_W32 = "configs/coco/higher_hrnet/w32_512_adam_lr1e-3.yaml"
COCO_W48 = "configs/coco/higher_hrnet/w48_640_adam_lr1e-3.yaml"
HRT_T = "configs/coco/hrt/hrt_tiny_coco_256x192.yaml"
HRT_S = "configs/coco/hrt/hrt_small_coco_256x192.yaml"
HRT_B = "configs/coco/hrt/hrt_base_coco_256x192.yaml"
HRNET_W32 = "configs/coco/hrnet/w32_256x192_adam_lr1e-3.yaml"
HRNET_W48 = "configs/coco/hrnet/w48_256x192_adam_lr1e-3.yaml"
HIGHER_POSE = "configs/crowd_pose/higher_pose/w32_512_adam_lr1e-3.yaml"


def reference_shapes(name):
    """{key: (shape, dtype)} from a reference list ('key<TAB>shape[<TAB>dtype]', '#' comments)."""
    path = os.path.join(REFERENCE, name)
    if not os.path.isfile(path):
        pytest.fail(f"reference key list missing: {path}")
    out = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            dtype = fields[2] if len(fields) > 2 else ("int64" if fields[0].endswith("num_batches_tracked") else "float32")
            out[fields[0]] = (tuple(ast.literal_eval(fields[1])), dtype)
    return out


@functools.lru_cache(maxsize=None)
def full_model(cfg_file):
    return build_model(load_config(cfg_file))


def shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


KEY_LISTS = [(CROWD_W32, "higherhrnet_w32_keys.txt"), (CROWD_W48, "higherhrnet_w48_keys.txt"),
             (HRT_S, "hrformer_small_keys.txt"), (HRT_B, "hrformer_base_keys.txt")]


@pytest.mark.parametrize("cfg_file,key_file", KEY_LISTS)
def test_state_dict_keys_and_shapes_equal_upstream(cfg_file, key_file):
    ref = {k: s for k, (s, _) in reference_shapes(key_file).items()}
    own = shapes(full_model(cfg_file))
    assert sorted(own) == sorted(ref), (sorted(set(own) - set(ref))[:5], sorted(set(ref) - set(own))[:5])
    assert own == ref, [k for k in own if own[k] != ref[k]][:5]


@pytest.mark.parametrize("cfg_file,key_file", KEY_LISTS)
def test_state_dict_built_from_reference_list_loads_strict(cfg_file, key_file):
    gen = torch.Generator().manual_seed(0)
    sd = {}
    for k, (shape, dtype) in reference_shapes(key_file).items():
        if dtype == "int64":
            sd[k] = torch.randint(0, 40, shape, generator=gen) if shape else torch.tensor(7)
        else:
            sd[k] = torch.randn(shape, generator=gen)
    model = build_model(load_config(cfg_file))
    load_checkpoint(model, sd, strict=True)
    own = model.state_dict()
    for k in list(sd)[::97]:
        assert torch.equal(own[k], sd[k]), k


def _higherhrnet_trunk_to_top_down(total, width, joints=17):
    """Top-down HRNet count derived from the published HigherHRNet COCO count: remove the two
    final layers and the deconvolution stage, add a 1x1 final layer with bias."""
    final_layers = (2 * joints * width + 2 * joints) + (joints * width + joints)
    deconv = (width + 2 * joints) * width * 16 + 2 * width + 4 * (2 * width * width * 9 + 4 * width)
    return total - final_layers - deconv + (joints * width + joints)


@pytest.mark.parametrize("cfg_file,expected", [
    (CROWD_W32, 28_641_962), (CROWD_W48, 63_822_090), (COCO_W32, 28_645_331), (COCO_W48, 63_827_139),
    (HRT_S, 7_746_779), (HRT_B, 43_211_777), (HRT_T, 2_524_759),
    (HRNET_W32, _higherhrnet_trunk_to_top_down(28_645_331, 32)),
    (HRNET_W48, _higherhrnet_trunk_to_top_down(63_827_139, 48)),
])
def test_parameter_counts(cfg_file, expected):
    assert sum(p.numel() for p in full_model(cfg_file).parameters()) == expected


def test_top_down_hrnet_sizes_match_the_paper():
    assert round(sum(p.numel() for p in full_model(HRNET_W32).parameters()) / 1e6, 1) == 28.5
    assert round(sum(p.numel() for p in full_model(HRNET_W48).parameters()) / 1e6, 1) == 63.6


def test_higher_pose_size_and_trunk_keys():
    model = full_model(HIGHER_POSE)
    n = sum(p.numel() for p in model.parameters())
    assert 29e6 <= n <= 31e6, n
    trunk = {k: v for k, v in shapes(model).items() if not k.startswith("neck.")}
    assert trunk == {k: s for k, (s, _) in reference_shapes("higherhrnet_w32_keys.txt").items()}


# ---------------------------------------------------------------- forward shapes at reduced width
def small_hrnet_opts(width=8, blocks=1):
    opts = []
    for n, branches in ((2, 2), (3, 3), (4, 4)):
        opts += [f"MODEL.EXTRA.STAGE{n}.NUM_CHANNELS", str([width * 2 ** i for i in range(branches)]),
                 f"MODEL.EXTRA.STAGE{n}.NUM_BLOCKS", str([blocks] * branches)]
    opts += ["MODEL.EXTRA.STAGE3.NUM_MODULES", "1", "MODEL.EXTRA.STAGE4.NUM_MODULES", "2"]
    return opts


def small_model(cfg_file, opts=()):
    torch.manual_seed(0)
    return build_model(load_config(cfg_file, list(opts))).eval()


@pytest.mark.parametrize("cfg_file,joints", [(CROWD_W32, 14), (COCO_W32, 17), (HIGHER_POSE, 14)])
def test_bottom_up_forward_shapes(cfg_file, joints):
    opts = small_hrnet_opts() + ["MODEL.EXTRA.DECONV.NUM_CHANNELS", "[8]"]
    if "higher_pose" in cfg_file:
        opts += ["MODEL.EXTRA.TRANSFORMER.DIM", "16", "MODEL.EXTRA.TRANSFORMER.DEPTH", "2"]
    model = small_model(cfg_file, opts)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 128, 96))
    assert [tuple(o.shape) for o in out] == [(2, 2 * joints, 32, 24), (2, joints, 64, 48)]


def test_top_down_hrnet_forward_shape():
    model = small_model(HRNET_W32, small_hrnet_opts())
    with torch.no_grad():
        assert model(torch.randn(2, 3, 128, 96)).shape == (2, 17, 32, 24)


def small_hrt_opts(width=8):
    opts = ["MODEL.EXTRA.STAGE3.NUM_MODULES", "1", "MODEL.EXTRA.STAGE4.NUM_MODULES", "1"]
    for n, branches in ((2, 2), (3, 3), (4, 4)):
        opts += [f"MODEL.EXTRA.STAGE{n}.NUM_CHANNELS", str([width * 2 ** i for i in range(branches)]),
                 f"MODEL.EXTRA.STAGE{n}.NUM_BLOCKS", str([1] * branches)]
    return opts


@pytest.mark.parametrize("size", [(128, 96), (88, 72)])  # 88x72: 1/32 maps of 3x3, odd bilinear sizes
def test_hrt_forward_shape(size):
    model = small_model(HRT_T, small_hrt_opts())
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 17, size[0] // 4, size[1] // 4)


def test_hrt_rpb_switch():
    off = full_model(HRT_S)
    on = build_model(load_config(HRT_S, ["MODEL.EXTRA.WITH_RPE", "True"]))
    block_off = off.backbone.stage2[0].branches[0][0].attn.attn
    block_on = on.backbone.stage2[0].branches[0][0].attn.attn
    assert not block_off.with_rpe and block_on.with_rpe


def _reference_transformer_block(block, x):
    """Upstream HRFormer block, re-implemented with plain ops on the block's weights: LN (eps 1e-6),
    centre zero padding to multiples of 7 (after LN), windows, multi-head attention with separate
    q/k/v projections, crop, residual; MlpDWBN conv/BN/GELU x3, residual. (eval mode)"""
    b, c, h, w = x.shape
    mha = block.attn.attn
    heads, d, ws = mha.num_heads, c // mha.num_heads, 7
    t = x.permute(0, 2, 3, 1)
    y = F.layer_norm(t, (c,), block.norm1.weight, block.norm1.bias, 1e-6)
    ph, pw = (-h) % ws, (-w) % ws
    y = F.pad(y, (0, 0, pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
    hp, wp = y.shape[1:3]
    win = y.reshape(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)

    def proj(lin, z):
        return (z @ lin.weight.T + lin.bias).reshape(z.shape[0], -1, heads, d).transpose(1, 2)

    q, k, v = proj(mha.q_proj, win) * d ** -0.5, proj(mha.k_proj, win), proj(mha.v_proj, win)
    o = torch.softmax(q @ k.transpose(-1, -2), -1) @ v
    o = o.transpose(1, 2).reshape(-1, ws * ws, c) @ mha.out_proj.weight.T + mha.out_proj.bias
    o = o.reshape(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
    t = t + o[:, ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]
    m = block.mlp

    def bn(z, norm):
        return F.batch_norm(z, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)

    z = F.layer_norm(t, (c,), block.norm2.weight, block.norm2.bias, 1e-6).permute(0, 3, 1, 2)
    z = F.gelu(bn(F.conv2d(z, m.fc1.weight, m.fc1.bias), m.norm1))
    z = F.gelu(bn(F.conv2d(z, m.dw3x3.weight, m.dw3x3.bias, padding=1, groups=z.shape[1]), m.norm2))
    z = F.gelu(bn(F.conv2d(z, m.fc2.weight, m.fc2.bias), m.norm3))
    return (t.permute(0, 3, 1, 2) + z)


def test_transformer_block_matches_upstream_algorithm():
    torch.manual_seed(0)
    block = GeneralTransformerBlock(16, 16, num_heads=2, window_size=7, mlp_ratio=4, drop_path=0.2).double().eval()
    for m in block.modules():  # non-trivial BN statistics and biases
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
        for p in m.parameters(recurse=False):
            p.data.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(2, 16, 12, 17, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(block(x), _reference_transformer_block(block, x), rtol=1e-9, atol=1e-9)


def test_drop_path_schedule_as_upstream():
    model = full_model(HRT_B)  # drop_path_rate 0.2, 14 blocks deep: linspace(0, 0.2, 14)
    rates = torch.linspace(0, 0.2, 14).tolist()
    stage3_module2 = model.backbone.stage3[2]
    assert [blk.drop_path.p for blk in stage3_module2.branches[1]] == pytest.approx(rates[2 + 4:2 + 6])
    assert [blk.drop_path.p for blk in model.backbone.stage4[1].branches[3]] == pytest.approx(rates[12:14])


# ---------------------------------------------------------------- initialisation and registry
def test_training_initialisation_as_upstream():
    model = build_model(load_config(CROWD_W32, small_hrnet_opts() + ["MODEL.PRETRAINED", ""]), is_train=True)
    w = model.stage3[0].branches[1][0].conv1.weight
    assert abs(w.std().item() - 0.001) < 0.0002
    assert torch.equal(model.final_layers[0].bias, torch.zeros_like(model.final_layers[0].bias))
    assert torch.equal(model.stage2[0].branches[0][0].bn1.weight, torch.ones(8))


def test_pretrained_layers_loaded_by_prefix(tmp_path):
    opts = small_hrnet_opts()
    donor = build_model(load_config(CROWD_W32, opts))
    imagenet = {k: torch.full_like(v, 0.5) for k, v in donor.state_dict().items()
                if k.startswith(("conv1.", "stage2.")) and v.is_floating_point()}
    imagenet["classifier.weight"] = torch.randn(1000, 2048)  # ImageNet head: no counterpart
    path = tmp_path / "hrnet_imagenet.pth"
    torch.save(imagenet, path)
    cfg = load_config(CROWD_W32, opts + ["MODEL.PRETRAINED", str(path), "MODEL.EXTRA.PRETRAINED_LAYERS", "['stage2']"])
    model = build_model(cfg, is_train=True)
    assert torch.all(model.stage2[0].branches[0][0].conv1.weight == 0.5)
    assert not torch.all(model.conv1.weight == 0.5)  # conv1 is not in PRETRAINED_LAYERS


def test_missing_pretrained_file_is_a_clear_error():
    cfg = load_config(CROWD_W32, small_hrnet_opts() + ["MODEL.PRETRAINED", "/nonexistent/hrnet_w32.pth"])
    with pytest.raises(FileNotFoundError, match="MODEL.PRETRAINED"):
        build_model(cfg, is_train=True)
    build_model(cfg, is_train=False)  # evaluation never reads it


def test_registry():
    assert set(MODELS) == {"pose_higher_hrnet", "higher_pose", "pose_hrnet", "pose_hrt"}
    with pytest.raises(ValueError, match="unknown MODEL.NAME 'nope'.*pose_higher_hrnet"):
        build_model(load_config(CROWD_W32, ["MODEL.NAME", "nope"]))


def test_model_info_counts_parameters_and_window_attention():
    from higherpose.cli import model_info
    model_info._register_window_attention_formula()
    plain = model_info.measure(HRT_T, small_hrt_opts())
    assert plain["device"] == "meta" and plain["input"] == (256, 192)
    assert plain["params"] == sum(p.numel() for p in small_model(HRT_T, small_hrt_opts()).parameters())
    # the window-attention op is counted as 2 matmuls (QK^T, AV) x H*W queries x 49 keys x C
    # channels, summed over the transformer blocks (one per branch here)
    blocks = {2: 2, 3: 3, 4: 4}  # branches per stage, 1 module each, 1 block per branch
    expected = 0
    for stage, branches in blocks.items():
        for i in range(branches):
            expected += 2 * (64 >> i) * (48 >> i) * 49 * (8 << i)
    from torch.utils.flop_counter import FlopCounterMode
    with torch.device("meta"):
        model = build_model(load_config(HRT_T, small_hrt_opts()))
        x = torch.zeros(1, 3, 256, 192)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    per_op = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    attention = sum(v for k, v in per_op.items() if "window_attention" in k) / 2
    assert attention == expected


def _bn(x, norm):
    return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)


def _reference_fuse(module, xs, upsample_mode, depthwise):
    """Upstream fusion from the module's weights: for target i, sum over sources j of
    j > i: BN(conv1x1(x_j)) upsampled by 2^(j-i) (HRNet nearest; HRFormer bilinear, then resized);
    j < i: (i-j) stride-2 steps (HRNet conv3x3+BN; HRFormer dw3x3+BN+pw1x1+BN), ReLU between steps;
    then ReLU."""
    out = []
    for i, row in enumerate(module.fuse_layers):
        y = xs[i].clone()
        for j, x in enumerate(xs):
            if j > i:
                z = _bn(F.conv2d(x, row[j][0].weight), row[j][1])
                if upsample_mode == "nearest":
                    z = F.interpolate(z, scale_factor=2 ** (j - i), mode="nearest")
                else:
                    z = F.interpolate(z, scale_factor=2 ** (j - i), mode="bilinear", align_corners=False)
                    z = F.interpolate(z, size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
                y = y + z
            elif j < i:
                z = x
                for k, step in enumerate(row[j]):
                    if depthwise:
                        z = _bn(F.conv2d(z, step[0].weight, stride=2, padding=1, groups=z.shape[1]), step[1])
                        z = _bn(F.conv2d(z, step[2].weight), step[3])
                    else:
                        z = _bn(F.conv2d(z, step[0].weight, stride=2, padding=1), step[1])
                    if k < i - j - 1:
                        z = F.relu(z)
                y = y + z
        out.append(F.relu(y))
    return out


@pytest.mark.parametrize("kind", ["hrnet", "hrt"])
def test_fuse_layers_match_upstream_algorithm(kind):
    torch.manual_seed(0)
    if kind == "hrnet":
        from higherpose.models.blocks import BasicBlock
        from higherpose.models.hrnet import HighResolutionModule
        module = HighResolutionModule(3, BasicBlock, [1, 1, 1], [4, 8, 16], [4, 8, 16])
        sizes = [(16, 12), (8, 6), (4, 3)]
    else:
        from higherpose.models.hrt import HighResolutionTransformerModule
        module = HighResolutionTransformerModule(3, [1, 1, 1], [4, 8, 16], [4, 8, 16], [1, 2, 2], [7, 7, 7],
                                                 [2, 2, 2], [0.0])
        sizes = [(18, 14), (9, 7), (5, 4)]  # odd sizes: upsampled maps must be resized
    module = module.double().eval()
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    xs = [torch.randn(2, c, *s, dtype=torch.float64) for c, s in zip([4, 8, 16], sizes)]
    with torch.no_grad():
        branch_out = [b(x) for b, x in zip(module.branches, xs)]
        expected = _reference_fuse(module, branch_out, "nearest" if kind == "hrnet" else "bilinear", kind == "hrt")
        for got, want in zip(module(xs), expected):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_bad_input_sizes_are_clear_errors():
    model = small_model(CROWD_W32, small_hrnet_opts())
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.randn(1, 3, 100, 96))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.randn(1, 1, 128, 96))
