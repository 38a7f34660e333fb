"""COCO and CrowdPose keypoint metrics with faster-coco-eval.

faster-coco-eval reproduces the official crowdposetools numbers (see the reference sheet
`crowdpose_and_peers.md` §1.5) while installing from PyPI on numpy 2. CrowdPose rules:
14 sigmas, OKS area 0.53·w·h of the GT box (``use_area=False``), ignored GT = iscrowd or
``num_keypoints == 0``, at most 20 detections per image, and AP easy / medium / hard from each
image's ``crowdIndex`` (< 0.2 / < 0.8 / ≥ 0.8), read from the GT *file* — so the GT must be
given as a path.
"""
import contextlib
import io
import json
import os
from collections import OrderedDict

import numpy as np

from ..errors import MissingInputError

# OKS sigmas in CrowdPose joint order (L/R shoulder, elbow, wrist, hip, knee, ankle, head, neck).
CROWDPOSE_SIGMAS = np.array([.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79]) / 10.0
# OKS sigmas in COCO joint order (the pycocotools defaults).
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87,
                        .89, .89]) / 10.0

# Names printed in the tables, in upstream's order and spelling ("Ap .5" is upstream's).
CROWDPOSE_STAT_NAMES = ["AP", "Ap .5", "AP .75", "AR", "AR .5", "AR .75", "AP (easy)", "AP (medium)",
                        "AP (hard)"]
COCO_STAT_NAMES = ["AP", "Ap .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)"]

# Dataset names (DATASET.DATASET_TEST / DATASET.DATASET) that are scored with the CrowdPose rules.
_CROWD_NAMES = ("crowd_pose", "crowdpose", "synthetic", "synthetic_crowd")


def metric_style(dataset_name):
    """'crowdpose' or 'coco' for a dataset name (synthetic crowds are CrowdPose-format; OCHuman is
    scored like COCO)."""
    name = str(dataset_name).lower()
    if name.startswith("coco") or name.startswith("ochuman"):  # OCHuman: COCO joints, COCO metric
        return "coco"
    if any(name.startswith(n) for n in _CROWD_NAMES) or "crowd" in name:
        return "crowdpose"
    raise ValueError(f"no keypoint metric is defined for dataset {dataset_name!r} (expected coco* or crowd_pose*)")


# Ground-truth fields each metric reads (see higherpose.data.validate.check_ground_truth):
# CrowdPose scales OKS by the box and splits AP by crowdIndex; COCO scales by the area.
_GT_FIELDS = {
    "crowdpose": ("annotations", "categories", "category_id", "num_keypoints", "bbox", "crowdIndex"),
    "coco": ("annotations", "categories", "category_id", "num_keypoints", "bbox", "area"),
}


def _load_results(results):
    """(records, the results file's name or None for a list given in memory)."""
    from ..data.validate import AnnotationError  # imported late: see evaluate_keypoints

    if not isinstance(results, (str, os.PathLike)):
        return list(results), None
    path = os.fspath(results)
    if not os.path.isfile(path):
        raise MissingInputError(f"results file not found: {path}")
    try:
        with open(path) as f:
            return json.load(f), path
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path}: not a valid JSON results file ({e})") from None


def evaluate_keypoints(gt_file, results, style="crowdpose", sigmas=None, verbose=False):
    """Score keypoint results against a GT annotation file.

    The GT file and the results are checked first (higherpose.data.validate): a GT or result
    the metric cannot score correctly is an AnnotationError naming the file, the entry and the
    field, never a number.

    Args:
        gt_file: path of the COCO-format GT JSON (CrowdPose files carry ``crowdIndex`` per image).
        results: a list of result records (``image_id``, ``category_id``, ``keypoints``, ``score``)
            or the path of a results JSON.
        style: ``"crowdpose"`` (iouType ``keypoints_crowd``, use_area False) or ``"coco"``.
        sigmas: OKS sigmas; default CrowdPose's 14 or COCO's 17 by style. Their number is the
            joint count the GT and the results must have.
        verbose: print faster-coco-eval's own summary lines.

    Returns:
        OrderedDict name → value, names as in the upstream tables
        (``CROWDPOSE_STAT_NAMES`` / ``COCO_STAT_NAMES``).
    """
    from faster_coco_eval import COCO, COCOeval_faster

    # Imported here, not at the top: higherpose.data's package init loads torch and OpenCV,
    # which `import higherpose.evaluation` does not need.
    from ..data.annotations import load_json_file
    from ..data.validate import check_ground_truth, check_results

    if not isinstance(gt_file, (str, os.PathLike)) or not os.path.isfile(gt_file):
        raise ValueError(f"gt_file must be the path of a GT annotation file (the CrowdPose split reads "
                         f"crowdIndex from it), got {gt_file!r}")
    if style not in ("crowdpose", "coco"):
        raise ValueError(f"style must be 'crowdpose' or 'coco', got {style!r}")
    if sigmas is None:
        sigmas = CROWDPOSE_SIGMAS if style == "crowdpose" else COCO_SIGMAS
    sigmas = np.asarray(sigmas, dtype=np.float64)
    names = CROWDPOSE_STAT_NAMES if style == "crowdpose" else COCO_STAT_NAMES
    gt_path = os.fspath(gt_file)
    gt_data = load_json_file(gt_path)
    check_ground_truth(gt_data, gt_path, num_joints=len(sigmas), require=_GT_FIELDS[style])
    records, source = _load_results(results)
    check_results(records, source, num_joints=len(sigmas), gt=gt_data, gt_path=gt_path)
    if not records:  # nothing detected: every statistic is 0 (faster-coco-eval rejects an empty list)
        return OrderedDict((n, 0.0) for n in names)

    quiet = (lambda *a, **k: None) if not verbose else print
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if not verbose else contextlib.nullcontext():
        gt = COCO(str(gt_file))
        dt = gt.loadRes(records)
        if style == "crowdpose":
            ev = COCOeval_faster(gt, dt, "keypoints_crowd", kpt_oks_sigmas=sigmas, use_area=False,
                                 print_function=quiet)
        else:
            ev = COCOeval_faster(gt, dt, "keypoints", kpt_oks_sigmas=sigmas, print_function=quiet)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(s) for s in ev.all_stats[:len(names)]]
    return OrderedDict(zip(names, stats))
