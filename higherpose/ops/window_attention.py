"""Local-window multi-head attention (HRFormer / Swin style) as one fused op with backward."""
import torch

from ._library import load_library
from .reference.window_attention import centre_offset, relative_position_index  # noqa: F401
from .reference.window_attention import window_attention as _reference_window_attention

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
        ``[B, H, W, heads * d]``.
    """
    if isinstance(window, int):
        window = (window, window)
    d = q.shape[-1] // num_heads
    scale = float(d ** -0.5 if scale is None else scale)
    # TODO(window-attention issue): call the compiled op once its kernels are registered.
    return _reference_window_attention(q, k, v, num_heads, tuple(window), scale, tuple(offset), pad_mode,
                                       k_pad, v_pad, rel_bias)
