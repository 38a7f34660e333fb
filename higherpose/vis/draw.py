"""Drawing poses and heatmaps on BGR images (OpenCV)."""
import colorsys

import cv2
import numpy as np


def person_colors(n):
    """n distinct BGR colours (golden-ratio hue steps)."""
    out = []
    for i in range(max(n, 0)):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.85, 1.0)
        out.append((int(b * 255), int(g * 255), int(r * 255)))
    return out


def draw_poses(image, keypoints, scores=None, skeleton=(), keypoint_threshold=0.1, show_scores=True,
               radius=None, thickness=None):
    """A copy of `image` (HxWx3 BGR uint8) with each person's joints and skeleton drawn.

    Args:
        keypoints: [P, J, >=3] (x, y, score); joints with score < keypoint_threshold are not drawn,
            nor limbs touching them.
        scores: [P] person scores, written next to each person when show_scores.
        skeleton: 0-based joint index pairs.
    """
    canvas = np.ascontiguousarray(image).copy()
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.size == 0:
        return canvas
    if keypoints.ndim != 3 or keypoints.shape[2] < 3:
        raise ValueError(f"keypoints must be [P, J, >=3] (x, y, score), got shape {keypoints.shape}")
    size = max(canvas.shape[:2])
    radius = radius or max(2, int(round(size / 250)))
    thickness = thickness or max(1, int(round(size / 400)))
    colors = person_colors(len(keypoints))
    for p, (pose, color) in enumerate(zip(keypoints, colors)):
        ok = pose[:, 2] >= keypoint_threshold
        pts = [(int(round(x)), int(round(y))) for x, y in pose[:, :2]]
        for a, b in skeleton:
            if a < len(pose) and b < len(pose) and ok[a] and ok[b]:
                cv2.line(canvas, pts[a], pts[b], color, thickness, cv2.LINE_AA)
        for j in np.nonzero(ok)[0]:
            cv2.circle(canvas, pts[j], radius, color, -1, cv2.LINE_AA)
        if show_scores and scores is not None and ok.any():
            x = int(pose[ok, 0].min())
            y = int(pose[ok, 1].min()) - 4
            cv2.putText(canvas, f"{float(scores[p]):.2f}", (max(x, 0), max(y, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * max(1, thickness), color, max(1, thickness), cv2.LINE_AA)
    return canvas


def overlay_heatmap(image, heatmap, alpha=0.5):
    """Blend a [H, W] map in [0, 1] (image size) over a BGR image with the JET colour map."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != image.shape[:2]:
        heatmap = cv2.resize(heatmap, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    colored = cv2.applyColorMap(np.uint8(np.clip(heatmap, 0, 1) * 255), cv2.COLORMAP_JET)
    return cv2.addWeighted(np.ascontiguousarray(image), 1.0 - alpha, colored, alpha, 0)
