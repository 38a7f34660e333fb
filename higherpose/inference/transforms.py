"""Test-time geometry shared by the bottom-up and top-down pipelines.

Conventions follow upstream: a box or image is described by its centre and a "scale" in units
of 200 px (pixel-std). With no rotation the affine that maps it to an output of width `out_w` is
a similarity: the factor `out_w / (scale_x · 200)` on both axes, centre → output centre.
"""
import math

import numpy as np

PIXEL_STD = 200.0


def _ceil64(v):
    return int(math.ceil(v / 64.0) * 64)


def multi_scale_size(width, height, input_size, scale, min_scale):
    """Upstream's get_multi_scale_size for an image of (width, height).

    The short side becomes ``ceil64(min_scale · input_size) · scale / min_scale``; the long side is
    the proportional length rounded up to a multiple of 64 at min_scale, times the same factor.

    Returns ``((w_resized, h_resized), center (2,), scale (2,) in 200-px units)``.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    center = np.array([int(width / 2.0 + 0.5), int(height / 2.0 + 0.5)], dtype=np.float64)
    min_input = _ceil64(min_scale * input_size)
    if width < height:
        w_resized = int(min_input * scale / min_scale)
        h_resized = int(_ceil64(min_input / width * height) * scale / min_scale)
        scale_w = width / PIXEL_STD
        scale_h = h_resized / w_resized * width / PIXEL_STD
    else:
        h_resized = int(min_input * scale / min_scale)
        w_resized = int(_ceil64(min_input / height * width) * scale / min_scale)
        scale_h = height / PIXEL_STD
        scale_w = w_resized / h_resized * height / PIXEL_STD
    return (w_resized, h_resized), center, np.array([scale_w, scale_h], dtype=np.float64)


def affine_matrix(center, scale, output_size, inverse=False):
    """2x3 affine (rotation 0) from the box (center, scale·200) to `output_size` (w, h), or back."""
    out_w, out_h = output_size
    src_w = float(scale[0]) * PIXEL_STD
    factor = out_w / src_w
    if not inverse:
        return np.array([[factor, 0.0, out_w / 2.0 - factor * center[0]],
                         [0.0, factor, out_h / 2.0 - factor * center[1]]], dtype=np.float64)
    inv = 1.0 / factor
    return np.array([[inv, 0.0, center[0] - inv * out_w / 2.0],
                     [0.0, inv, center[1] - inv * out_h / 2.0]], dtype=np.float64)


def to_image_coords(xy, center, scale, output_size):
    """Map (..., 2) coordinates in an output of `output_size` back to the original image."""
    m = affine_matrix(center, scale, output_size, inverse=True)
    xy = np.asarray(xy, dtype=np.float64)
    out = np.empty_like(xy)
    out[..., 0] = xy[..., 0] * m[0, 0] + m[0, 2]
    out[..., 1] = xy[..., 1] * m[1, 1] + m[1, 2]
    return out


def box_to_center_scale(box, aspect_ratio, padding=1.25):
    """Top-down person box [x, y, w, h] → (center, scale) with the model's aspect ratio (w / h).

    As HRNet/mmpose: the box is widened or heightened to the aspect ratio, then enlarged by
    `padding` (1.25).
    """
    x, y, w, h = [float(v) for v in box[:4]]
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float64)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float64) * padding
    return center, scale
