"""Window multi-head attention module with upstream HRFormer parameter names.

`q_proj`, `k_proj`, `v_proj`, `out_proj`, `relative_position_bias_table` and the buffer
`relative_position_index` are named as in upstream HRFormer pose checkpoints, so those load with
strict=True. The attention itself is the fused `higherpose.ops.window_attention` op.
"""
import torch
import torch.nn.functional as F
from torch import nn

from higherpose.ops import window_attention
from higherpose.ops.reference.window_attention import window_attention as reference_window_attention
from higherpose.ops.window_attention import centre_offset, relative_position_index

# What computes the attention: the fused op, or the pure-PyTorch reference (upstream's formulation,
# the baseline of tools/bench/bench_models.py). See `use_attention`.
ATTENTION = {"op": window_attention, "reference": reference_window_attention}


class WindowMultiheadAttention(nn.Module):
    """Multi-head self-attention inside local windows of an image-layout token map.

    Args:
        embed_dim: channels C (heads * head_dim).
        num_heads: attention heads.
        window_size: int or (wh, ww).
        with_rpe: add the relative position bias (off = upstream HRFormer pose behaviour, where the
            table exists but is never added; on = HRFormer classification/segmentation and mmpose).
        pad_mode: "zeros" (HRFormer: padded positions are zero tokens whose keys/values are the
            projection biases) or "mask" (padded positions excluded).

    forward(x [B, H, W, C], offset=None) -> [B, H, W, C]; offset defaults to HRFormer's centre
    padding grid. `attention` ("op" or "reference") picks the implementation (`use_attention`).
    """
    attention = "op"

    def __init__(self, embed_dim, num_heads, window_size=7, with_rpe=False, pad_mode="zeros"):
        super().__init__()
        if num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        if pad_mode not in ("zeros", "mask"):
            raise ValueError(f'pad_mode must be "zeros" or "mask", got {pad_mode!r}')
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.window = (window_size, window_size) if isinstance(window_size, int) else tuple(window_size)
        if len(self.window) != 2 or min(self.window) <= 0:
            raise ValueError(f"window_size must be positive, got {window_size}")
        self.with_rpe, self.pad_mode = with_rpe, pad_mode
        self.scale = (embed_dim // num_heads) ** -0.5
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        wh, ww = self.window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(self.window))

    def forward(self, x, offset=None):
        _, h, w, _ = x.shape
        if offset is None:
            offset = centre_offset(h, w, self.window)
        q, k, v = self.project_qkv(x)
        out = ATTENTION[self.attention](
            q, k, v, self.num_heads, self.window, self.scale, offset, self.pad_mode,
            k_pad=self.k_proj.bias if self.pad_mode == "zeros" else None,
            v_pad=self.v_proj.bias if self.pad_mode == "zeros" else None,
            rel_bias=self.relative_position_bias_table if self.with_rpe else None)
        return self.out_proj(out)

    def project_qkv(self, x):
        """q, k, v as one matmul with the three projections stacked (upstream's parameter names are
        kept): views of one [B, H, W, 3C] tensor, which the op reads with their strides."""
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        return F.linear(x, weight, bias).split(self.embed_dim, dim=-1)


def use_attention(model, implementation):
    """Make every window attention of `model` use `implementation`: "op" (the fused
    higherpose.ops.window_attention, default) or "reference" (pure PyTorch, upstream's formulation:
    pad, partition, matmul / softmax, merge, crop). Returns the model."""
    if implementation not in ATTENTION:
        raise ValueError(f"attention implementation must be one of {sorted(ATTENTION)}, got {implementation!r}")
    for module in model.modules():
        if isinstance(module, WindowMultiheadAttention):
            module.attention = implementation
    return model
