"""Results JSON as upstream writes it: one record per person, flat [x, y, score] × J keypoints.

Keypoint scores are written strictly positive: a joint whose score is 0 (not found) is written
with ``KEYPOINT_SCORE_FLOOR``. Evaluators disagree on detections whose scores are all zero
(xtcocotools drops them, crowdposetools keeps them); OKS itself never reads the scores, so the
floor changes no metric and makes every evaluator agree.
"""
import os

import json_tricks
import numpy as np

KEYPOINT_SCORE_FLOOR = 1e-6


def person_records(image_id, poses, scores, category_id=1):
    """Result records for one image.

    Args:
        image_id: the GT image id.
        poses: ``[P, J, >=3]`` array (x, y, score, ...) in image coordinates.
        scores: ``[P]`` person scores.
    """
    poses = np.asarray(poses, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if poses.size == 0:
        return []
    if poses.ndim != 3 or poses.shape[2] < 3:
        raise ValueError(f"poses must be [P, J, >=3] (x, y, score), got shape {poses.shape}")
    if len(scores) != len(poses):
        raise ValueError(f"{len(poses)} poses but {len(scores)} scores")
    records = []
    for pose, score in zip(poses, scores):
        kpts = pose[:, :3].copy()
        kpts[:, 2] = np.maximum(kpts[:, 2], KEYPOINT_SCORE_FLOOR)
        x0, y0 = kpts[:, 0].min(), kpts[:, 1].min()
        x1, y1 = kpts[:, 0].max(), kpts[:, 1].max()
        records.append({
            "image_id": int(image_id),
            "category_id": int(category_id),
            "keypoints": [float(v) for v in kpts.reshape(-1)],
            "score": float(score),
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
        })
    return records


def write_results(path, records):
    """Write records with json_tricks (sort_keys, indent 4), as upstream; returns the path.

    A record that could not be scored (a NaN or infinite keypoint or score, as a diverged model
    gives) is an AnnotationError naming the record, its image id and the field, raised before
    the file is opened: JSON has no NaN, and the encoder would stop half-way through the file.
    """
    from ..data.validate import check_results  # imported late: see keypoint_eval.evaluate_keypoints

    check_results(records, f"{path} (not written)")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json_tricks.dump(records, f, sort_keys=True, indent=4)
    return path
