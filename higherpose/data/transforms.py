"""Geometric augmentation for bottom-up and top-down training, and image normalisation.

All randomness comes from a `numpy.random.Generator` passed in by the dataset (one per sample,
derived from (seed, epoch, index)), so results do not depend on DataLoader workers or ranks.
"""
import math

import cv2
import numpy as np
import torch

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def to_normalized_tensor(image_rgb):
    """uint8 HxWx3 RGB -> float tensor [3, H, W], ImageNet mean/std normalised."""
    x = image_rgb.astype(np.float32) / 255.0
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


# ----------------------------------------------------------------------------- bottom-up

def bottomup_affine_matrix(center, scale, res, rot):
    """3x3 matrix mapping image pixels to a res x res output.

    `scale` is in units of 200 px (a square window of 200·scale px around `center` fills the
    output); the result is then rotated by `rot` degrees around the output centre
    (counter-clockwise in the image for positive rot, as upstream).
    """
    h = 200.0 * scale
    t = np.array([[res / h, 0, res * (-center[0] / h + 0.5)],
                  [0, res / h, res * (-center[1] / h + 0.5)],
                  [0, 0, 1]], np.float64)
    if rot != 0:
        a = -rot * math.pi / 180.0
        cs, sn = math.cos(a), math.sin(a)
        r = np.array([[cs, -sn, 0], [sn, cs, 0], [0, 0, 1]], np.float64)
        to_origin = np.array([[1, 0, -res / 2.0], [0, 1, -res / 2.0], [0, 0, 1]], np.float64)
        back = np.array([[1, 0, res / 2.0], [0, 1, res / 2.0], [0, 0, 1]], np.float64)
        t = back @ r @ to_origin @ t
    return t


def affine_points(points, mat):
    """Apply a 2x3 or 3x3 affine matrix to [..., 2] points."""
    pts = np.asarray(points, np.float64)
    shape = pts.shape
    flat = pts.reshape(-1, 2)
    out = flat @ mat[:2, :2].T + mat[:2, 2]
    return out.reshape(shape)


class BottomUpAugment:
    """Random affine (rotation, scale on the short/long side, translation) then horizontal flip.

    Works on one image, a list of masks (one per output size) and a list of joint arrays
    [P, J, 3] (one per output size), like upstream's RandomAffineTransform + RandomHorizontalFlip.
    """

    def __init__(self, input_size, output_sizes, max_rotation, min_scale, max_scale, scale_type,
                 max_translate, flip_prob, flip_index, scale_aware_sigma=False):
        if scale_type not in ("short", "long"):
            raise ValueError(f"DATASET.SCALE_TYPE must be 'short' or 'long', got {scale_type!r}")
        self.input_size = int(input_size)
        self.output_sizes = [int(s) for s in output_sizes]
        self.max_rotation = max_rotation
        self.min_scale, self.max_scale = min_scale, max_scale
        self.scale_type = scale_type
        self.max_translate = max_translate
        self.flip_prob = flip_prob
        self.flip_index = list(flip_index)
        self.scale_aware_sigma = scale_aware_sigma

    def __call__(self, image, masks, joints, rng):
        height, width = image.shape[:2]
        center = np.array([width / 2.0, height / 2.0])
        side = min(height, width) if self.scale_type == "short" else max(height, width)
        aug_scale = rng.random() * (self.max_scale - self.min_scale) + self.min_scale
        scale = side / 200.0 * aug_scale
        rot = (rng.random() * 2 - 1) * self.max_rotation
        if self.max_translate > 0:
            lim = self.max_translate * scale
            center[0] += rng.integers(int(-lim), int(lim)) if int(lim) > int(-lim) else 0
            center[1] += rng.integers(int(-lim), int(lim)) if int(lim) > int(-lim) else 0
        masks, joints = list(masks), [j.copy() for j in joints]
        for i, res in enumerate(self.output_sizes):
            mat = bottomup_affine_matrix(center, scale, res, rot)[:2]
            warped = cv2.warpAffine((masks[i] * 255).astype(np.uint8), mat, (res, res)) / 255.0
            masks[i] = (warped > 0.5).astype(np.float32)
            joints[i][..., 0:2] = affine_points(joints[i][..., 0:2], mat)
            if self.scale_aware_sigma and joints[i].shape[-1] > 3:
                joints[i][..., 3] /= aug_scale
        mat = bottomup_affine_matrix(center, scale, self.input_size, rot)[:2]
        image = cv2.warpAffine(image, mat, (self.input_size, self.input_size))

        if rng.random() < self.flip_prob:
            image = image[:, ::-1].copy()
            for i, res in enumerate(self.output_sizes):
                masks[i] = masks[i][:, ::-1].copy()
                joints[i] = joints[i][:, self.flip_index]
                joints[i][..., 0] = res - joints[i][..., 0] - 1
        return image, masks, joints


# ----------------------------------------------------------------------------- top-down

def box_to_center_scale(box, aspect_ratio, padding=1.25, pixel_std=200.0):
    """(x, y, w, h) -> center (2,), scale (2,) in units of pixel_std, enlarged to the crop's
    aspect ratio (width / height) and by `padding`."""
    x, y, w, h = [float(v) for v in box[:4]]
    center = np.array([x + w * 0.5, y + h * 0.5], np.float32)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w / pixel_std, h / pixel_std], np.float32) * padding
    return center, scale


def get_affine_transform(center, scale, rot, output_size, inv=False, pixel_std=200.0):
    """2x3 matrix taking the box (center, scale·pixel_std wide, rotated by rot degrees) to an
    output of output_size = (width, height); inv=True gives the inverse mapping."""
    src_w = float(np.asarray(scale).reshape(-1)[0]) * pixel_std
    dst_w, dst_h = float(output_size[0]), float(output_size[1])
    a = math.radians(rot)
    src_dir = np.array([src_w * 0.5 * math.sin(a), -src_w * 0.5 * math.cos(a)])
    # the third point completes a right angle, so the map is a similarity transform
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = np.asarray(center, np.float64) + src_dir
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + np.array([0, -dst_w * 0.5])
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    if inv:
        return cv2.getAffineTransform(dst, src)
    return cv2.getAffineTransform(src, dst)


def _third_point(a, b):
    d = a - b
    return b + np.array([-d[1], d[0]], np.float32)


def flip_joints(joints, joints_vis, width, flip_index):
    """Mirror [J, >=2] joints horizontally in an image of `width` px and swap left/right."""
    joints = joints.copy()
    joints[:, 0] = width - joints[:, 0] - 1
    return joints[flip_index], joints_vis[flip_index]


def half_body_center_scale(joints, joints_vis, upper_body_ids, aspect_ratio, rng, pixel_std=200.0):
    """Centre/scale of a random upper or lower half body (HRNet's half-body augmentation), or
    None when too few joints are visible on the chosen half."""
    vis = joints_vis.reshape(-1) > 0
    upper = [j for j in range(len(joints)) if vis[j] and j in upper_body_ids]
    lower = [j for j in range(len(joints)) if vis[j] and j not in upper_body_ids]
    if rng.random() < 0.5 and len(upper) > 2:
        chosen = upper
    else:
        chosen = lower if len(lower) > 2 else upper
    if len(chosen) < 2:
        return None
    pts = joints[chosen, :2].astype(np.float32)
    center = pts.mean(axis=0)
    left_top, right_bottom = pts.min(axis=0), pts.max(axis=0)
    w, h = right_bottom - left_top
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w / pixel_std, h / pixel_std], np.float32) * 1.5
    return center, scale
