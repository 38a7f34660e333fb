"""Local-window multi-head attention (HRFormer / Swin style) as one fused op with backward.

`torch.ops.higherpose.window_attention` is the differentiable op (C++ autograd in
csrc/window_attention/window_attention_autograd.cpp); `window_attention_forward` returns the output
and the per-query log-sum-exp, `window_attention_backward` the six gradients. Their fake kernels,
which let torch.compile trace all three, are C++ Meta kernels (window_attention_meta.cpp) that
share the kernels' argument checks. This module holds the documented wrapper.
"""
import torch

from ._library import load_library
from .reference.window_attention import centre_offset, relative_position_index  # noqa: F401

load_library()


def window_attention(q, k, v, num_heads, window=(7, 7), scale=None, offset=(0, 0), pad_mode="zeros",
                     k_pad=None, v_pad=None, rel_bias=None):
    """Multi-head attention inside non-overlapping windows, on image-layout tensors.

    Args:
        q, k, v: ``[B, H, W, heads * d]`` projected queries, keys and values.
        num_heads: number of heads (must divide the channels).
        window: ``(wh, ww)`` window size (an int means square).
        scale: logit scale, default ``d ** -0.5``.
        offset: ``(top, left)`` of the window grid: windows start at row ``-top + i * wh`` and
            column ``-left + j * ww`` (``0 <= offset < window``). HRFormer's centre padding is
            :func:`centre_offset`; a Swin-style shifted grid is ``(wh // 2, ww // 2)``.
        pad_mode: ``"zeros"``: a window position outside the image is a real key/value equal to
            ``k_pad`` / ``v_pad`` (``[heads * d]``, default zeros; HRFormer passes the k/v
            projection biases); ``"mask"``: such positions are excluded from the softmax.
        rel_bias: optional ``[(2wh - 1) * (2ww - 1), heads]`` relative-position-bias table.

    Returns:
        ``[B, H, W, heads * d]`` (contiguous, q's dtype), differentiable with respect to q, k, v,
        k_pad, v_pad and rel_bias.

    Kernels: CPU (float32/float64/float16/bfloat16, float32 accumulation; float64 in float64) and
    CUDA (float32/float16/bfloat16 with float32 accumulation, head_dim <= 128). The environment
    variable ``HIGHERPOSE_WINDOW_ATTENTION_KERNEL`` picks the CUDA kernel family: ``rows``
    (default), ``tiles`` (windows of up to 64 positions) or ``mma`` (tensor cores; windows of up
    to 64 positions, head_dim <= 64; float32 as three TF32 products); a call a family cannot take
    runs on the next one (mma -> tiles -> rows). Inputs may have any
    strides; no padded or window-partitioned copy is made. The backward recomputes the attention
    weights from the per-query log-sum-exp saved by the forward. Under autocast, float32 inputs
    (e.g. the k_pad / v_pad / rel_bias parameters) are cast to the autocast dtype.
    """
    if isinstance(window, int):
        window = (window, window)
    if num_heads <= 0 or q.shape[-1] % num_heads:
        raise ValueError(f"window_attention: num_heads {num_heads} does not divide the channels {q.shape[-1]}")
    d = q.shape[-1] // num_heads
    if q.is_cuda and d > 128:
        # Refused here as well as in the kernel: on an H100 the kernel's own check for this case
        # crashed the process instead of raising (not yet understood; see BENCHMARKS.md).
        raise RuntimeError(f"window_attention: the CUDA kernels support head_dim up to 128, got {d}")
    scale = float(d ** -0.5 if scale is None else scale)
    return torch.ops.higherpose.window_attention(q, k, v, [int(w) for w in window], int(num_heads), scale,
                                                 [int(o) for o in offset], str(pad_mode), k_pad, v_pad,
                                                 rel_bias)
