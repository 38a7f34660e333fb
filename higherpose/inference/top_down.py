"""Top-down inference (HRNet / HRFormer): person crops → heatmaps → joints in the image.

Flip test runs the model on the mirrored crop, flips the maps back, swaps left/right channels and
shifts them one pixel to the right (SHIFT_HEATMAP, as upstream), then averages. Joints are the
argmax of each map moved a quarter pixel toward the higher neighbour, mapped back through the
crop's (center, scale). Persons are rescored as box score × mean of the joint scores above
IN_VIS_THRE, then OKS-NMS keeps the best of overlapping poses per image.
"""
import numpy as np
import torch

PIXEL_STD = 200.0


def flip_back(heatmaps, flip_index):
    """Mirror [B, J, H, W] maps horizontally and swap left/right joint channels."""
    return torch.flip(heatmaps, [3])[:, list(flip_index)]


@torch.inference_mode()
def top_down_heatmaps(model, crops, flip_index=None, flip_test=True, shift_heatmap=True):
    """Heatmaps [B, J, h, w] for normalised crops [B, 3, H, W] (flip-averaged when flip_test)."""
    out = model(crops)
    if isinstance(out, (list, tuple)):
        out = out[-1]
    if flip_test:
        if flip_index is None:
            raise ValueError("flip test needs the dataset's flip_index")
        flipped = model(torch.flip(crops, [3]))
        if isinstance(flipped, (list, tuple)):
            flipped = flipped[-1]
        flipped = flip_back(flipped, flip_index)
        if shift_heatmap:
            flipped = flipped.clone()
            flipped[:, :, :, 1:] = flipped[:, :, :, :-1].clone()
        out = (out + flipped) * 0.5
    return out


def max_preds(heatmaps):
    """Argmax of each [N, J, H, W] map (numpy) → (coords [N, J, 2] (x, y), maxvals [N, J, 1]).
    Maps whose maximum is not positive give (0, 0)."""
    n, j, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, j, -1)
    idx = np.argmax(flat, axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2)
    coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float64)
    coords *= (maxvals > 0.0)
    return coords, maxvals.astype(np.float64)


def decode_heatmaps(heatmaps, centers, scales):
    """Joints in the image from top-down heatmaps (numpy [N, J, H, W]).

    Quarter-pixel refinement: the argmax moves 0.25 px toward the larger horizontal / vertical
    neighbour when it is not on the map's outer two-pixel frame. Then the crop transform is
    inverted: x_img = x · scale_x·200 / W + center_x − scale_x·200 / 2 (same for y).

    Returns (preds [N, J, 2], maxvals [N, J, 1]).
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float64)
    coords, maxvals = max_preds(heatmaps)
    n, j, h, w = heatmaps.shape
    for b in range(n):
        for k in range(j):
            hm = heatmaps[b, k]
            px = int(np.floor(coords[b, k, 0] + 0.5))
            py = int(np.floor(coords[b, k, 1] + 0.5))
            if 1 < px < w - 1 and 1 < py < h - 1:
                diff = np.array([hm[py, px + 1] - hm[py, px - 1], hm[py + 1, px] - hm[py - 1, px]])
                coords[b, k] += np.sign(diff) * 0.25
    centers = np.asarray(centers, dtype=np.float64).reshape(n, 1, 2)
    scales = np.asarray(scales, dtype=np.float64).reshape(n, 1, 2) * PIXEL_STD
    preds = coords * scales / np.array([w, h], dtype=np.float64) + centers - scales * 0.5
    return preds, maxvals


def oks_iou(pose, others, area, other_areas, sigmas, vis_thr=None):
    """OKS between one pose [J, 3] and others [M, J, 3], with the mean of the two areas as scale.
    With vis_thr only joints whose scores exceed it in both poses count."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    var = (sigmas * 2) ** 2
    dx = others[:, :, 0] - pose[None, :, 0]
    dy = others[:, :, 1] - pose[None, :, 1]
    e = (dx ** 2 + dy ** 2) / var / ((area + other_areas)[:, None] / 2 + np.spacing(1)) / 2
    if vis_thr is None:
        return np.exp(-e).mean(axis=1)
    ok = (pose[None, :, 2] > vis_thr) & (others[:, :, 2] > vis_thr)
    counts = ok.sum(axis=1)
    return np.where(counts > 0, (np.exp(-e) * ok).sum(axis=1) / np.maximum(counts, 1), 0.0)


def oks_nms(keypoints, scores, areas, threshold, sigmas, vis_thr=None):
    """Greedy OKS-NMS: indices kept, best score first; a pose is dropped when its OKS with a kept
    one exceeds `threshold`."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        if rest.size == 0:
            break
        ious = oks_iou(keypoints[i], keypoints[rest], areas[i], areas[rest], sigmas, vis_thr)
        order = rest[ious <= threshold]
    return keep


def rescore(maxvals, box_scores, in_vis_thre=0.2):
    """Person score = box score × mean of the joint scores above in_vis_thre (0 when none is)."""
    maxvals = np.asarray(maxvals, dtype=np.float64).reshape(len(box_scores), -1)
    ok = maxvals > in_vis_thre
    mean = np.where(ok.any(1), (maxvals * ok).sum(1) / np.maximum(ok.sum(1), 1), 0.0)
    return mean * np.asarray(box_scores, dtype=np.float64)
