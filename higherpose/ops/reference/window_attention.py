"""Reference of the local-window attention op: pad -> partition -> attention -> merge -> crop."""
import math

import torch


def window_grid(size, window, offset):
    """Number of windows along one axis and the padding (before, after) they imply."""
    count = math.ceil((size + offset) / window)
    return count, offset, count * window - size - offset


def centre_offset(height, width, window):
    """HRFormer's centre padding as a grid offset: (pad // 2) before, the rest after."""
    wh, ww = window
    return ((-height) % wh) // 2, ((-width) % ww) // 2


def relative_position_index(window):
    """Swin-style index [wh*ww, wh*ww] into a [(2wh-1)(2ww-1), heads] bias table (query i, key j)."""
    wh, ww = window
    ys, xs = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # [2, wh*ww]
    rel = coords[:, :, None] - coords[:, None, :]
    return (rel[0] + wh - 1) * (2 * ww - 1) + (rel[1] + ww - 1)


def window_attention(q, k, v, num_heads, window=(7, 7), scale=None, offset=(0, 0), pad_mode="zeros",
                     k_pad=None, v_pad=None, rel_bias=None):
    """Same contract as :func:`higherpose.ops.window_attention`, in plain PyTorch (differentiable)."""
    b, h, w, c = q.shape
    wh, ww = window
    d = c // num_heads
    scale = d ** -0.5 if scale is None else scale
    nh, top, bottom = window_grid(h, wh, offset[0])
    nw, left, right = window_grid(w, ww, offset[1])
    hp, wp = nh * wh, nw * ww

    def pad(x, fill):
        out = x.new_zeros((b, hp, wp, c)) if fill is None else fill.to(x.dtype).expand(b, hp, wp, c).clone()
        out[:, top:top + h, left:left + w] = x
        return out

    def partition(x):  # [B, Hp, Wp, C] -> [B*nh*nw, heads, wh*ww, d]
        x = x.reshape(b, nh, wh, nw, ww, num_heads, d).permute(0, 1, 3, 5, 2, 4, 6)
        return x.reshape(b * nh * nw, num_heads, wh * ww, d)

    qw = partition(pad(q, None))
    kw = partition(pad(k, k_pad if pad_mode == "zeros" else None))
    vw = partition(pad(v, v_pad if pad_mode == "zeros" else None))
    logits = (qw * scale) @ kw.transpose(-1, -2)  # [windows, heads, L, L]
    if rel_bias is not None:
        index = relative_position_index(window).to(rel_bias.device)
        logits = logits + rel_bias[index.flatten()].reshape(wh * ww, wh * ww, num_heads).permute(2, 0, 1)
    if pad_mode == "mask":
        real = torch.zeros((hp, wp), dtype=torch.bool, device=q.device)
        real[top:top + h, left:left + w] = True
        real = real.reshape(nh, wh, nw, ww).permute(0, 2, 1, 3).reshape(nh * nw, 1, 1, wh * ww)
        logits = logits.reshape(b, nh * nw, num_heads, wh * ww, wh * ww)
        logits = logits.masked_fill(~real, float("-inf")).flatten(0, 1)
    # Softmax in float32 for half inputs (as the kernels accumulate), in the input dtype otherwise.
    softmax_dtype = torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else logits.dtype
    attn = torch.softmax(logits, dim=-1, dtype=softmax_dtype).to(vw.dtype)
    out = attn @ vw  # [windows, heads, L, d]
    out = out.reshape(b, nh, nw, num_heads, wh, ww, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, hp, wp, c)
    return out[:, top:top + h, left:left + w]
