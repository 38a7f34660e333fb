"""Heatmap peaks: local-maximum suppression + top-k + tag gather in one op."""

import torch

from ._args import as_int
from ._library import load_library

load_library()


def heatmap_peaks(heatmaps, tags, kernel=5, k=30):
    """Find the k strongest local maxima of every heatmap and read the tags there.

    Args:
        heatmaps: ``[N, J, H, W]`` floating tensor (float32/float64/float16/bfloat16), any strides.
        tags: ``[N, J, H, W, T]`` tensor of the same dtype and device (T tag maps, e.g. 2 with
            flip test).
        kernel: odd neighbourhood size of the suppression (upstream NMS_KERNEL, 5 for CrowdPose).
        k: number of peaks kept per (image, joint) (upstream MAX_NUM_PEOPLE).

    Returns:
        ``(values [N, J, k], x [N, J, k] int64, y [N, J, k] int64, peak_tags [N, J, k, T])``.

    A pixel is a peak iff it is not NaN and no pixel of its ``kernel × kernel`` neighbourhood
    inside the map is greater (ties with the maximum are peaks too, as with upstream's max-pool
    equality test; pixels outside the map never win). Peaks are ordered by value, ties by the
    lower flat index ``y * W + x``. When a map has fewer than k peaks the remaining slots are
    filled with value ``-inf``, ``x = y = -1`` and zero tags. NaN pixels are never peaks and never
    suppress their neighbours. Values are compared in the input's own precision (on CUDA, float16
    and bfloat16 are widened to float32 for the comparisons, which is exact and order-preserving,
    so CPU and CUDA give identical results).

    Devices and dtypes: CPU takes float64/float32/float16/bfloat16; CUDA takes float32/float16/
    bfloat16 (float64 raises). Inputs may have any strides. Errors (wrong rank, mismatched
    shapes, even or non-positive ``kernel``, ``k < 1``, non-floating dtype, tensors on different
    devices) raise ``RuntimeError`` naming the argument; a non-integer ``kernel``/``k`` raises
    ``TypeError``.
    """
    op = "heatmap_peaks"
    return torch.ops.higherpose.heatmap_peaks(heatmaps, tags, as_int(kernel, op, "kernel"), as_int(k, op, "k"))
