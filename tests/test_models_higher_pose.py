"""higher_pose: real spatial attention (receptive field, batch independence), the folded
cross-attentions against plain multi-head attention, the skeleton mask, and HigherHRNet
compatibility of a fresh model."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from higherpose.config import load_config
from higherpose.models import build_model, load_checkpoint
from higherpose.models.higher_pose import (PixelsReadTokens, SkeletonAttention, StructureAwareNeck,
                                           TokensReadPixels, skeleton_adjacency)
from test_models import CROWD_W32, HIGHER_POSE, small_hrnet_opts

WINDOW = 7


def _naive_mha(queries, keys, values, mod, heads):
    """Plain multi-head attention with explicit per-element projections of `mod`'s weights."""
    def proj(lin, x):
        y = x @ lin.weight.T + lin.bias
        return y.reshape(*y.shape[:-1], heads, -1).transpose(-2, -3)  # [B, heads, L, d]
    q, k, v = proj(mod.q_proj, queries), proj(mod.k_proj, keys), proj(mod.v_proj, values)
    attn = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
    out = (attn @ v).transpose(-2, -3).flatten(-2)
    return out @ mod.out_proj.weight.T + mod.out_proj.bias


def _randomise(module):
    torch.manual_seed(1)
    for p in module.parameters():
        p.data.normal_(0, 0.3)


def test_tokens_read_pixels_equals_plain_attention():
    mod = TokensReadPixels(24, 3).double()
    _randomise(mod)
    tokens, pixels = torch.randn(2, 5, 24, dtype=torch.float64), torch.randn(2, 40, 24, dtype=torch.float64)
    torch.testing.assert_close(mod(tokens, pixels), _naive_mha(tokens, pixels, pixels, mod, 3))


def test_pixels_read_tokens_equals_plain_attention():
    mod = PixelsReadTokens(24, 3).double()
    _randomise(mod)
    pixels, tokens = torch.randn(2, 40, 24, dtype=torch.float64), torch.randn(2, 5, 24, dtype=torch.float64)
    torch.testing.assert_close(mod(pixels, tokens), _naive_mha(pixels, tokens, tokens, mod, 3))


def _naive_slot_attention(slots, pixels, mod, heads):
    """Slot Attention's normalisation written out: softmax over the slots at each pixel, then a
    weighted mean over the pixels (Locatello et al. 2020, eq. 1-2), per head, explicit projections."""
    def proj(lin, x):
        y = x @ lin.weight.T + lin.bias
        return y.reshape(*y.shape[:-1], heads, -1).transpose(-2, -3)  # [B, heads, L, d]
    q, k, v = proj(mod.q_proj, slots), proj(mod.k_proj, pixels), proj(mod.v_proj, pixels)
    share = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-2) + 1e-8  # over slots
    out = (share / share.sum(-1, keepdim=True) @ v).transpose(-2, -3).flatten(-2)
    return out @ mod.out_proj.weight.T + mod.out_proj.bias


def test_competing_slots_equal_slot_attention():
    mod = TokensReadPixels(24, 3, compete=True).double()
    _randomise(mod)
    slots, pixels = torch.randn(2, 5, 24, dtype=torch.float64), torch.randn(2, 40, 24, dtype=torch.float64)
    torch.testing.assert_close(mod(slots, pixels), _naive_slot_attention(slots, pixels, mod, 3))


def test_competing_slots_share_out_each_pixel():
    """Pixels of two kinds, a = (4, 0) and b = (0, 2); slot a equals a, slot c = (2, 2) lies nearer a.
    Plain attention lets slot c read the a pixels it matches best; with competition slot a owns
    them, so slot c reads the b pixels (a hand-worked case: identity projections, one head)."""
    def read(compete):
        mod = TokensReadPixels(2, 1, compete=compete).double()
        with torch.no_grad():
            for lin in (mod.q_proj, mod.k_proj, mod.v_proj, mod.out_proj):
                lin.weight.copy_(torch.eye(2))
                lin.bias.zero_()
        return mod(slots, pixels)[0]

    a, b, c = torch.tensor([4.0, 0.0]), torch.tensor([0.0, 2.0]), torch.tensor([2.0, 2.0])
    pixels = torch.stack([a] * 3 + [b] * 3).double()[None]
    slots = torch.stack([a, c]).double()[None]
    plain, competing = read(False), read(True)
    assert (plain[1] - a).norm() < 0.3 and (competing[1] - b).norm() < 0.05
    assert (competing[0] - a).norm() < 0.4


def test_crowdpose_skeleton_graph():
    adj = skeleton_adjacency(14)
    neck = 13
    assert adj[neck].nonzero().flatten().tolist() == [0, 1, 12, 13]  # shoulders, head, itself
    assert adj.equal(adj.T) and adj.diagonal().all()
    assert int(adj.sum()) == 14 + 2 * 15  # self loops + 15 limbs
    with pytest.raises(ValueError, match="SKELETON"):
        skeleton_adjacency(9)


def test_skeleton_attention_only_along_edges():
    adj = skeleton_adjacency(14)
    mod = SkeletonAttention(16, 2, adj).double()
    _randomise(mod)
    tokens = torch.randn(1, 14, 16, dtype=torch.float64)
    base = mod(tokens)
    for j in (4, 12):  # left wrist, head
        moved = tokens.clone()
        moved[0, j] += 1.0
        changed = (mod(moved) - base).abs().amax(-1)[0] > 1e-12
        assert changed.tolist() == adj[:, j].tolist()


# ---------------------------------------------------------------- spatial receptive field
def _eval_neck(joint_tokens, depth, dim=16):
    torch.manual_seed(0)
    neck = StructureAwareNeck(8, 14, dim=dim, depth=depth, num_heads=2, window_size=WINDOW, drop_path_rate=0.0,
                              joint_tokens=joint_tokens, zero_init_output=False).double().eval()
    for m in neck.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.uniform_(-0.2, 0.2)
    return neck


def _windows_of(mask, offset):
    """Union of the windows (grid with `offset`) that contain a True pixel of `mask` [H, W]."""
    h, w = mask.shape
    top, left = offset
    rows = (torch.arange(h) + top) // WINDOW
    cols = (torch.arange(w) + left) // WINDOW
    cell = rows[:, None] * 1000 + cols[None, :]
    return torch.isin(cell, cell[mask])


def _dilate(mask):  # the depthwise 3x3 of the FFN
    return F.max_pool2d(mask[None, None].double(), 3, 1, 1)[0, 0].bool()


def _changed(module_fn, x, pixel, image=0):
    y0 = module_fn(x)
    x2 = x.clone()
    x2[(image, slice(None)) + pixel] += 1.0
    y1 = module_fn(x2)
    return (y1 - y0).abs().amax(1) > 1e-10  # [B, H, W]


@pytest.mark.parametrize("depth", [1, 2])
def test_neck_attention_reaches_exactly_its_windows(depth):
    """A change at one pixel reaches every pixel of its window (further than any convolution would)
    and nothing outside the predicted region; with two blocks the shifted grid carries it across the
    first grid's window borders. The other image of the batch never changes."""
    neck = _eval_neck(joint_tokens=False, depth=depth)
    h, w, pixel = 23, 30, (9, 13)
    x = torch.randn(2, 8, h, w, dtype=torch.float64)
    with torch.no_grad():
        changed = _changed(lambda t: neck(t)[0], x, pixel)
    expected = torch.zeros(h, w, dtype=torch.bool)
    expected[pixel] = True
    regions = []
    for offset in neck.offsets(h, w)[:depth]:
        expected = _dilate(_windows_of(expected, offset))
        regions.append(expected)
    assert torch.equal(changed[0], expected)
    assert not changed[1].any()
    assert regions[0].sum() > 9  # further than the 3x3 convolution alone
    if depth == 2:  # the shifted grid carries the change past the first grid's windows
        assert regions[1].sum() > regions[0].sum()


def test_joint_tokens_carry_information_across_the_image_not_the_batch():
    neck = _eval_neck(joint_tokens=True, depth=1)
    x = torch.randn(2, 8, 23, 30, dtype=torch.float64)
    with torch.no_grad():
        changed = _changed(lambda t: neck(t)[0], x, (2, 3), image=1)
    assert changed[1].all()  # every pixel of the same image reads the updated joint tokens
    assert not changed[0].any()


def test_person_slots_carry_information_across_the_image_not_the_batch():
    torch.manual_seed(0)
    neck = StructureAwareNeck(8, 14, dim=16, depth=1, num_heads=2, window_size=WINDOW, drop_path_rate=0.0,
                              joint_tokens=False, window_attention=False, instance_tokens=3,
                              zero_init_output=False).double().eval()
    assert neck.instance_tokens.shape == (3, 16)
    x = torch.randn(2, 8, 23, 30, dtype=torch.float64)
    with torch.no_grad():
        changed = _changed(lambda t: neck(t)[0], x, (2, 3), image=1)
    assert changed[1].all()  # every pixel reads the slots, which read the changed pixel
    assert not changed[0].any()


@pytest.mark.parametrize("count", [-1, 2.5, True])
def test_person_slot_count_is_checked(count):
    with pytest.raises(ValueError, match="INSTANCE_TOKENS"):
        StructureAwareNeck(8, 14, dim=16, depth=1, num_heads=2, instance_tokens=count)


class SeedDefectAttention(nn.Module):
    """The seed repository's encoder layer as described in the reference sheet: a batch-first
    attention fed sequence-first tokens (so it attends across the images of the batch at each
    pixel), keeping only token 0's output broadcast to every position."""

    def __init__(self, channels):
        super().__init__()
        self.attn = nn.MultiheadAttention(channels, 1, batch_first=True)

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = x.flatten(2).permute(2, 0, 1)  # DETR layout (N, B, C), treated as (batch, seq, C)
        out = self.attn(tokens, tokens, tokens)[0][0]  # [B, C]: "[0]" = token 0 only
        return x + out[:, :, None, None]


def test_seed_defect_is_caught_by_the_same_checks():
    torch.manual_seed(0)
    seed = SeedDefectAttention(8).double().eval()
    x = torch.randn(2, 8, 23, 30, dtype=torch.float64)
    with torch.no_grad():
        far = _changed(seed, x, (9, 13))
        origin = _changed(seed, x, (0, 0))
    assert far[0].sum() == 1  # a pixel other than token 0 only changes itself: no spatial attention
    assert origin[1].any()  # token 0 of image 0 changes image 1: attention across the batch


def _small_higher_pose():
    """(higher_pose at width 8 with a 2-block DIM-16 neck, the HRNet overrides it used)."""
    opts = small_hrnet_opts() + ["MODEL.EXTRA.DECONV.NUM_CHANNELS", "[8]"]
    neck = ["MODEL.EXTRA.TRANSFORMER.DIM", "16", "MODEL.EXTRA.TRANSFORMER.DEPTH", "2"]
    torch.manual_seed(0)
    return build_model(load_config(HIGHER_POSE, opts + neck)).eval(), opts


def test_full_model_images_of_a_batch_stay_independent():
    model, _ = _small_higher_pose()
    nn.init.normal_(model.neck.out_proj.weight, std=0.2)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a = model(x)
        x[0, :, 30, 30] += 1.0
        b = model(x)
    for ya, yb in zip(a, b):
        assert torch.equal(ya[1], yb[1])
        assert not torch.equal(ya[0], yb[0])


def test_fresh_higher_pose_equals_higherhrnet_with_the_same_weights():
    model, opts = _small_higher_pose()
    hrnet = build_model(load_config(CROWD_W32, opts)).eval()
    result = load_checkpoint(model, hrnet.state_dict(), strict=False)
    assert result.unexpected_keys == [] and all(k.startswith("neck.") for k in result.missing_keys)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), hrnet(x)):
            torch.testing.assert_close(a, b)


def test_gradients_reach_the_joint_tokens_and_window_attention():
    model, _ = _small_higher_pose()
    model.train()
    nn.init.normal_(model.neck.out_proj.weight, std=0.2)
    out = model(torch.randn(2, 3, 64, 64))
    sum(o.square().mean() for o in out).backward()
    assert model.neck.joint_tokens.grad.abs().sum() > 0
    table = model.neck.blocks[1].attn.attn.relative_position_bias_table
    assert table.grad is not None and table.grad.abs().sum() > 0  # RPB is on


def test_transformer_config_fields():
    with pytest.raises(ValueError, match="unknown MODEL.EXTRA.TRANSFORMER fields.*DIMS"):
        cfg = load_config(HIGHER_POSE, freeze=False)
        cfg.MODEL.EXTRA.TRANSFORMER.DIMS = 64  # a typo in a YAML file
        build_model(cfg)
    cfg = load_config(CROWD_W32, ["MODEL.NAME", "higher_pose"])  # seed-style YAML: no TRANSFORMER node
    assert build_model(cfg).neck.blocks[0].attn.attn.with_rpe
