"""Local-window multi-head attention (HRFormer / Swin style) as one fused op with backward.

`torch.ops.higherpose.window_attention` is the differentiable op (C++ autograd in
csrc/window_attention/window_attention_autograd.cpp); `window_attention_forward` returns the output
and the per-query log-sum-exp, `window_attention_backward` the six gradients. Their fake kernels,
which let torch.compile trace all three, are C++ Meta kernels (window_attention_meta.cpp) that
share the kernels' argument checks. This module holds the documented wrapper.
"""
import contextlib

import torch

from ._args import as_float, as_int, as_int_list
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
    CUDA (float32/float16/bfloat16 with float32 accumulation, head_dim <= 128). CUDA has three
    kernel families: ``rows`` (the default for every call: the only one measured on a GPU),
    ``tiles`` (windows of up to 64 positions) and ``mma`` (tensor cores; windows of up to 64
    positions, head_dim <= 64; float32 as three TF32 products); :func:`window_attention_kernel`
    forces one for benchmarks and tests. Integer arguments must be integers (a float is refused,
    not truncated). Inputs may have any strides; no padded or window-partitioned copy is made.
    The backward recomputes the attention weights from the per-query log-sum-exp saved by the
    forward. Under autocast, float32 inputs
    (e.g. the k_pad / v_pad / rel_bias parameters) are cast to the autocast dtype.
    """
    op = "window_attention"
    num_heads = as_int(num_heads, op, "num_heads")
    window = as_int_list(window, op, "window", length=2)
    offset = as_int_list(offset, op, "offset", length=2)
    if scale is None:
        # d ** -0.5 when num_heads divides the channels; otherwise the op's own check reports it.
        d = q.shape[-1] // num_heads if num_heads > 0 else 0
        scale = d ** -0.5 if d > 0 else 1.0
    if not isinstance(pad_mode, str):
        raise TypeError(f"{op}: pad_mode must be \"zeros\" or \"mask\", got {pad_mode!r}")
    return torch.ops.higherpose.window_attention(q, k, v, window, num_heads, as_float(scale, op, "scale"), offset,
                                                 pad_mode, k_pad, v_pad, rel_bias)


@contextlib.contextmanager
def window_attention_kernel(family):
    """Force the CUDA kernel family of :func:`window_attention` inside a ``with`` block, for
    benchmarks and tests: ``"rows"``, ``"tiles"``, ``"mma"`` or ``"auto"`` (the default rule,
    csrc/window_attention/kernel_family.h). A forced family that cannot take a call's shape runs
    the next one (mma -> tiles -> rows) with a warning. Outside any block the environment variable
    ``HIGHERPOSE_WINDOW_ATTENTION_KERNEL`` (read once) gives the forced family, if any."""
    previous = torch.ops.higherpose.set_window_attention_kernel(family)
    try:
        yield
    finally:
        torch.ops.higherpose.set_window_attention_kernel(previous)
