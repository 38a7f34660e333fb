"""higher_pose: HigherHRNet with a structure-aware transformer neck (`MODEL.NAME: higher_pose`).

Design. The HigherHRNet-W32 trunk produces the 1/4-resolution branch-0 feature map (32 channels).
Before the HigherHRNet heads, a transformer neck refines it with two kinds of interaction:

1. Local spatial attention. The map is projected to DIM channels and passed through DEPTH
   pre-norm blocks of multi-head window attention (the fused `higherpose.ops.window_attention`,
   7x7 windows, relative position bias on, padded positions masked out). Even blocks tile the map
   with HRFormer's centre-padded grid, odd blocks with that grid shifted by half a window, so
   information crosses window borders from one block to the next (Swin-style, but without the
   cyclic roll: the op takes the grid offset directly). Each block ends with HRFormer's MlpDWBN
   feed-forward (1x1 conv, depthwise 3x3, 1x1 conv).
2. Keypoint structure. One learnable token per joint type (J = 14 for CrowdPose, 17 for COCO) is
   carried through the blocks, per image. In every block the joint tokens (a) read image evidence
   by multi-head attention over all pixels of their own image, (b) exchange information along the
   skeleton graph by multi-head attention restricted to skeleton neighbours and themselves (an
   adjacency mask), (c) pass a small MLP; then (d) every pixel attends to the J joint tokens of its
   image and adds what it reads. Both cross-attentions are exact multi-head attention computed in
   a "folded" form: the pixel-side projections are moved onto the J tokens (a linear map commutes
   with the attention-weighted sum), so their cost is O(pixels x J x DIM) with no per-pixel DIMxDIM
   product.
3. Person slots (INSTANCE_TOKENS K > 0, off by default). A crowd has many left wrists, and one
   token per joint type cannot tell them apart. K learnable slot tokens per image read the pixels
   with Slot Attention's normalisation (each pixel's weight is a softmax over the slots, so the
   slots compete for pixels and each can come to own one person), pass an MLP, and every pixel
   reads them back: features that say which person a pixel belongs to, which is what the
   associative-embedding tags must encode.
The neck returns to 32 channels through a zero-initialised projection added to its input, so a
freshly built higher_pose computes exactly HigherHRNet's function, and HigherHRNet checkpoints
(trunk + heads) load into it with strict=False. Everything is per image: no operation mixes the
images of a batch (the seed repository's defect), and a pixel reaches other pixels only through
its windows, the conv FFN and the tokens (joint types, person slots) of its own image.

Config (`MODEL.EXTRA.TRANSFORMER`, defaults in `TRANSFORMER_DEFAULTS`): DIM, DEPTH, NUM_HEADS,
WINDOW_SIZE, MLP_RATIO, TOKEN_MLP_RATIO, DROP_PATH_RATE, WITH_RPE, PAD_MODE, SHIFT_WINDOWS,
JOINT_TOKENS, SKELETON (0-based joint pairs; default: the CrowdPose / COCO skeleton by NUM_JOINTS),
ZERO_INIT_OUTPUT, WINDOW_ATTENTION, INSTANCE_TOKENS (K slots, 0: off). JOINT_TOKENS False (window
attention only), WINDOW_ATTENTION False (joint tokens only) and INSTANCE_TOKENS are the variants of
tools/study_crowd_accuracy.py; the conv feed-forward stays in every block either way, so an
ablation removes one kind of interaction and nothing else.
"""
import torch
import torch.nn.functional as F
from torch import nn

from higherpose.ops import centre_offset

from .blocks import DropPath
from .hrt import LocalWindowAttention, MlpDWBN
from .pose_higher_hrnet import PoseHigherResolutionNet

TRANSFORMER_DEFAULTS = {
    "DIM": 128, "DEPTH": 4, "NUM_HEADS": 4, "WINDOW_SIZE": 7, "MLP_RATIO": 2.0, "TOKEN_MLP_RATIO": 2.0,
    "DROP_PATH_RATE": 0.1, "WITH_RPE": True, "PAD_MODE": "mask", "SHIFT_WINDOWS": True, "JOINT_TOKENS": True,
    "SKELETON": [], "ZERO_INIT_OUTPUT": True, "WINDOW_ATTENTION": True, "INSTANCE_TOKENS": 0,
}

# 0-based skeleton edges. CrowdPose joint order: l/r shoulder, l/r elbow, l/r wrist, l/r hip,
# l/r knee, l/r ankle, head, neck. COCO: the standard 19 limbs of person_keypoints.
SKELETONS = {
    14: [(12, 13), (13, 0), (13, 1), (0, 1), (0, 6), (1, 7), (6, 7), (0, 2), (2, 4), (1, 3), (3, 5),
         (6, 8), (8, 10), (7, 9), (9, 11)],
    17: [(15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
         (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)],
}


def skeleton_adjacency(num_joints, edges=None):
    """Boolean [J, J]: True where joint i may attend to joint j (skeleton neighbours and itself).

    Without explicit edges, the CrowdPose (14) or COCO (17) skeleton is used; with one extra joint
    (a person centre, DATASET.WITH_CENTER) the centre is linked to every joint.
    """
    if not edges:
        if num_joints in SKELETONS:
            edges = SKELETONS[num_joints]
        elif num_joints - 1 in SKELETONS:
            edges = SKELETONS[num_joints - 1] + [(num_joints - 1, j) for j in range(num_joints - 1)]
        else:
            raise ValueError(f"no default skeleton for {num_joints} joints: set MODEL.EXTRA.TRANSFORMER.SKELETON "
                             f"to a list of 0-based joint pairs")
    adj = torch.eye(num_joints, dtype=torch.bool, device="cpu")
    for a, b in edges:
        if not (0 <= a < num_joints and 0 <= b < num_joints):
            raise ValueError(f"skeleton edge ({a}, {b}) is outside 0..{num_joints - 1}")
        adj[a, b] = adj[b, a] = True
    return adj


def _softmax(logits):
    """Softmax over the last axis, in float32 for half-precision logits."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        return torch.softmax(logits.float(), dim=-1).to(logits.dtype)
    return torch.softmax(logits, dim=-1)


class _AttentionProjections(nn.Module):
    """The q/k/v/out projections shared by the two folded cross-attentions below."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)


class TokensReadPixels(_AttentionProjections):
    """Multi-head attention of J query tokens over the N pixels of their own image.

    Exact attention with q = Wq t, k = Wk x, v = Wv x, computed folded: per head the query is
    mapped into pixel space (Wk_h^T q_h), and the attention-weighted mean of the raw pixels is
    projected by Wv_h afterwards. The key bias adds a constant per query, which softmax ignores.

    compete=True is Slot Attention's normalisation (Locatello et al., NeurIPS 2020): each pixel's
    weights are a softmax over the tokens (the tokens compete for pixels, so each can own one
    person), then each token takes the weighted mean of its pixels. The key bias then matters (it
    shifts the logits of one token for all pixels), so it is added explicitly.
    """

    def __init__(self, dim, num_heads, compete=False):
        super().__init__(dim, num_heads)
        self.compete = compete

    def forward(self, tokens, pixels):  # [B, J, D], [B, N, D] -> [B, J, D]
        b, j, d = tokens.shape
        h, hd = self.num_heads, self.head_dim
        q = self.q_proj(tokens).view(b, j, h, hd) * self.scale
        query_in_pixel_space = torch.einsum("bjhe,hec->bjhc", q, self.k_proj.weight.view(h, hd, d))
        logits = torch.einsum("bjhc,bnc->bjhn", query_in_pixel_space, pixels)
        if self.compete:
            key_bias = torch.einsum("bjhe,he->bjh", q, self.k_proj.bias.view(h, hd))
            share = _softmax((logits + key_bias[..., None]).transpose(1, 3)).transpose(1, 3)  # over tokens
            share = share + 1e-8  # a token that owns no pixel reads their plain mean, not 0/0
            attn = share / share.sum(dim=-1, keepdim=True)
        else:
            attn = _softmax(logits)
        pooled = torch.einsum("bjhn,bnc->bjhc", attn, pixels)
        v = torch.einsum("bjhc,hec->bjhe", pooled, self.v_proj.weight.view(h, hd, d)) + self.v_proj.bias.view(h, hd)
        return self.out_proj(v.reshape(b, j, d))


class PixelsReadTokens(_AttentionProjections):
    """Multi-head attention of every pixel over the J tokens of its image.

    Exact attention with q = Wq x, k = Wk t, v = Wv t and output projection Wo, computed folded: the
    keys are mapped into pixel space (Wq_h^T k_h) and the values through Wo_h, so the per-pixel work
    is O(heads x J x D).
    """

    def forward(self, pixels, tokens):  # [B, N, D], [B, J, D] -> [B, N, D]
        b, j, d = tokens.shape
        h, hd = self.num_heads, self.head_dim
        k = self.k_proj(tokens).view(b, j, h, hd) * self.scale
        v = self.v_proj(tokens).view(b, j, h, hd)
        key_in_pixel_space = torch.einsum("bjhe,hec->bjhc", k, self.q_proj.weight.view(h, hd, d))
        key_bias = torch.einsum("bjhe,he->bhj", k, self.q_proj.bias.view(h, hd))
        logits = torch.einsum("bnc,bjhc->bnhj", pixels, key_in_pixel_space) + key_bias[:, None]
        attn = _softmax(logits)
        value_out = torch.einsum("bjhe,ohe->bjho", v, self.out_proj.weight.view(d, h, hd))
        return torch.einsum("bnhj,bjho->bno", attn, value_out) + self.out_proj.bias


class SkeletonAttention(nn.Module):
    """Multi-head self-attention of the joint tokens along the skeleton graph (adjacency mask)."""

    def __init__(self, dim, num_heads, adjacency):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.register_buffer("adjacency", adjacency.clone(), persistent=False)

    def forward(self, tokens):  # [B, J, D]
        b, j, d = tokens.shape

        def heads(x):
            return x.view(b, j, self.num_heads, d // self.num_heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q_proj(tokens)), heads(self.k_proj(tokens)),
                                             heads(self.v_proj(tokens)), attn_mask=self.adjacency.to(tokens.device))
        return self.out_proj(out.transpose(1, 2).reshape(b, j, d))


class TokenMlp(nn.Sequential):
    def __init__(self, dim, hidden):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class InstanceSlots(nn.Module):
    """K person slots of one block: they read the pixels competitively (each pixel is shared out
    among the slots, Slot Attention style), pass an MLP, and every pixel reads them back."""

    def __init__(self, dim, num_heads, token_mlp_ratio):
        super().__init__()
        self.pixel_norm = nn.LayerNorm(dim, eps=1e-6)
        self.slot_norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.read = TokensReadPixels(dim, num_heads, compete=True)
        self.slot_norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = TokenMlp(dim, int(dim * token_mlp_ratio))
        self.slot_norm3 = nn.LayerNorm(dim, eps=1e-6)
        self.write = PixelsReadTokens(dim, num_heads)

    def forward(self, z, slots):  # [B, H, W, D], [B, K, D] -> pixel update [B, H, W, D], slots
        b, h, w, d = z.shape
        zn = self.pixel_norm(z).reshape(b, h * w, d)
        slots = slots + self.read(self.slot_norm1(slots), zn)
        slots = slots + self.mlp(self.slot_norm2(slots))
        return self.write(zn, self.slot_norm3(slots)).view(b, h, w, d), slots


class StructureBlock(nn.Module):
    """One neck block on pixels z [B, H, W, D], joint tokens t [B, J, D] and person slots s [B, K, D]
    (see module docstring)."""

    def __init__(self, dim, num_heads, window_size, mlp_ratio, token_mlp_ratio, drop_path, with_rpe, pad_mode,
                 adjacency=None, window_attention=True, instance_slots=False):
        super().__init__()
        self.with_window_attention = window_attention
        if window_attention:
            self.norm1 = nn.LayerNorm(dim, eps=1e-6)
            self.attn = LocalWindowAttention(dim, num_heads, window_size, with_rpe=with_rpe, pad_mode=pad_mode)
        self.with_tokens = adjacency is not None
        if self.with_tokens:
            self.norm2 = nn.LayerNorm(dim, eps=1e-6)
            self.token_norm1 = nn.LayerNorm(dim, eps=1e-6)
            self.read = TokensReadPixels(dim, num_heads)
            self.token_norm2 = nn.LayerNorm(dim, eps=1e-6)
            self.graph = SkeletonAttention(dim, num_heads, adjacency)
            self.token_norm3 = nn.LayerNorm(dim, eps=1e-6)
            self.token_mlp = TokenMlp(dim, int(dim * token_mlp_ratio))
            self.token_norm4 = nn.LayerNorm(dim, eps=1e-6)
            self.write = PixelsReadTokens(dim, num_heads)
        self.slots = InstanceSlots(dim, num_heads, token_mlp_ratio) if instance_slots else None
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MlpDWBN(dim, int(dim * mlp_ratio), dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, z, tokens, slots, offset):
        if self.with_window_attention:
            z = z + self.drop_path(self.attn(self.norm1(z), offset))
        if self.with_tokens:
            b, h, w, d = z.shape
            zn = self.norm2(z).reshape(b, h * w, d)
            tokens = tokens + self.read(self.token_norm1(tokens), zn)
            tokens = tokens + self.graph(self.token_norm2(tokens))
            tokens = tokens + self.token_mlp(self.token_norm3(tokens))
            z = z + self.drop_path(self.write(zn, self.token_norm4(tokens)).view(b, h, w, d))
        if self.slots is not None:
            update, slots = self.slots(z, slots)
            z = z + self.drop_path(update)
        z = z + self.drop_path(self.mlp(self.norm3(z)))
        return z, tokens, slots


class StructureAwareNeck(nn.Module):
    """Window-attention blocks with alternating grids plus skeleton-linked joint tokens.

    forward(x [B, C, H, W]) -> (x + refinement [B, C, H, W], joint tokens [B, J, DIM] or None).
    """

    def __init__(self, in_channels, num_joints, dim=128, depth=4, num_heads=4, window_size=7, mlp_ratio=2.0,
                 token_mlp_ratio=2.0, drop_path_rate=0.1, with_rpe=True, pad_mode="mask", shift_windows=True,
                 joint_tokens=True, skeleton=None, zero_init_output=True, window_attention=True, instance_tokens=0):
        super().__init__()
        if not (joint_tokens or window_attention or instance_tokens):
            raise ValueError("TRANSFORMER: JOINT_TOKENS, WINDOW_ATTENTION and INSTANCE_TOKENS are all off; the neck "
                             "would be a plain conv feed-forward (use pose_higher_hrnet for no neck)")
        if isinstance(instance_tokens, bool) or not isinstance(instance_tokens, int) or instance_tokens < 0:
            raise ValueError(f"TRANSFORMER.INSTANCE_TOKENS must be a count >= 0 (0: off), got {instance_tokens!r}")
        if dim % num_heads:
            raise ValueError(f"TRANSFORMER.DIM {dim} is not divisible by NUM_HEADS {num_heads}")
        self.window = (window_size, window_size)
        self.shift_windows = shift_windows
        self.zero_init_output = zero_init_output
        adjacency = skeleton_adjacency(num_joints, skeleton) if joint_tokens else None
        self.in_proj = nn.Linear(in_channels, dim)
        if joint_tokens:
            self.joint_tokens = nn.Parameter(torch.zeros(num_joints, dim))
        else:
            self.register_parameter("joint_tokens", None)
        if instance_tokens:
            self.instance_tokens = nn.Parameter(torch.zeros(instance_tokens, dim))
        else:
            self.register_parameter("instance_tokens", None)
        rates = torch.linspace(0, float(drop_path_rate), depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            StructureBlock(dim, num_heads, window_size, mlp_ratio, token_mlp_ratio, rates[i], with_rpe, pad_mode,
                           adjacency, window_attention, instance_tokens > 0) for i in range(depth))
        self.out_norm = nn.LayerNorm(dim, eps=1e-6)
        self.out_proj = nn.Linear(dim, in_channels)
        self.init_weights()

    def init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for block in self.blocks:
            if block.with_window_attention:
                nn.init.trunc_normal_(block.attn.attn.relative_position_bias_table, std=0.02)
        for tokens in (self.joint_tokens, self.instance_tokens):
            if tokens is not None:  # distinct after the blocks' LayerNorms, so the slots start apart
                nn.init.trunc_normal_(tokens, std=0.02)
        if self.zero_init_output:  # the neck starts as the identity: HigherHRNet's function
            nn.init.zeros_(self.out_proj.weight)

    def offsets(self, h, w):
        """Grid offset per block: centre padding, then (if SHIFT_WINDOWS) shifted by half a window."""
        top, left = centre_offset(h, w, self.window)
        shifted = ((top + self.window[0] // 2) % self.window[0], (left + self.window[1] // 2) % self.window[1])
        return [shifted if (self.shift_windows and i % 2) else (top, left) for i in range(len(self.blocks))]

    def forward(self, x):
        b, _, h, w = x.shape
        z = self.in_proj(x.permute(0, 2, 3, 1))
        tokens = None if self.joint_tokens is None else self.joint_tokens.expand(b, -1, -1)
        slots = None if self.instance_tokens is None else self.instance_tokens.expand(b, -1, -1)
        for block, offset in zip(self.blocks, self.offsets(h, w)):
            z, tokens, slots = block(z, tokens, slots, offset)
        return x + self.out_proj(self.out_norm(z)).permute(0, 3, 1, 2), tokens


class HigherPose(PoseHigherResolutionNet):
    """HigherHRNet trunk -> StructureAwareNeck at 1/4 resolution -> HigherHRNet heads."""

    def __init__(self, cfg):
        super().__init__(cfg)
        t = dict(TRANSFORMER_DEFAULTS)
        node = cfg.MODEL.EXTRA.get("TRANSFORMER", None) or {}
        unknown = set(node) - set(t)
        if unknown:
            raise ValueError(f"unknown MODEL.EXTRA.TRANSFORMER fields {sorted(unknown)}; known: {sorted(t)}")
        t.update(node)
        self.neck = StructureAwareNeck(
            self.final_channels[0], cfg.MODEL.NUM_JOINTS, dim=t["DIM"], depth=t["DEPTH"], num_heads=t["NUM_HEADS"],
            window_size=t["WINDOW_SIZE"], mlp_ratio=t["MLP_RATIO"], token_mlp_ratio=t["TOKEN_MLP_RATIO"],
            drop_path_rate=t["DROP_PATH_RATE"], with_rpe=t["WITH_RPE"], pad_mode=t["PAD_MODE"],
            shift_windows=t["SHIFT_WINDOWS"], joint_tokens=t["JOINT_TOKENS"],
            skeleton=[tuple(e) for e in t["SKELETON"]], zero_init_output=t["ZERO_INIT_OUTPUT"],
            window_attention=t["WINDOW_ATTENTION"], instance_tokens=t["INSTANCE_TOKENS"])

    def forward(self, x):
        features, _ = self.neck(self.forward_features(x)[0])
        return self.forward_heads(features)

    def init_weights(self, pretrained="", pretrained_layers=None):
        super().init_weights(pretrained, pretrained_layers)
        self.neck.init_weights()


def get_pose_net(cfg, is_train=False):
    model = HigherPose(cfg)
    if is_train and cfg.MODEL.INIT_WEIGHTS:
        model.init_weights(cfg.MODEL.PRETRAINED)
    return model
