"""Evaluator parity on real CrowdPose val annotations (the committed subset, tests/data/README.md).

Predictions are made by perturbing the GT (jitter, dropped joints, false positives, tied scores,
all-zero keypoint scores, more than 20 detections on some images). Every CrowdPose statistic of
`higherpose.evaluation.evaluate_keypoints` (faster-coco-eval) must equal an independent
computation with pycocotools set up with the CrowdPose rules, to 3 decimals.
"""
import contextlib
import copy
import io
import json

import numpy as np
import pytest

from higherpose.evaluation import CROWDPOSE_STAT_NAMES, evaluate_keypoints, format_table, person_records

CROWD_SIGMAS = np.array([.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79]) / 10.0


@pytest.fixture(scope="module")
def subset_gt(crowdpose_val_path):
    """The committed subset of crowdpose_val.json: its path (the evaluator reads the file) and data."""
    with open(crowdpose_val_path) as f:
        return crowdpose_val_path, json.load(f)


def perturbed_predictions(gt, seed=0):
    rng = np.random.default_rng(seed)
    by_image = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    preds = []
    for k, im in enumerate(gt["images"]):
        w, h = im["width"], im["height"]
        for a in by_image.get(im["id"], []):
            if rng.random() < 0.1:  # missed person
                continue
            kp = np.array(a["keypoints"], dtype=np.float64).reshape(-1, 3)
            bw, bh = max(a["bbox"][2], 1.0), max(a["bbox"][3], 1.0)
            kp[:, :2] += rng.normal(0, 0.02 * np.sqrt(bw * bh), size=(len(kp), 2))
            kp[:, 2] = rng.uniform(0.05, 1.0, len(kp))
            dropped = rng.random(len(kp)) < 0.15
            kp[dropped] = [0, 0, 0]
            if rng.random() < 0.05:  # all keypoint scores zero
                kp[:, 2] = 0
            score = float(np.round(rng.uniform(0.1, 1.0), 1))  # rounded: many tied scores
            preds.append({"image_id": im["id"], "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": score})
            if rng.random() < 0.1:  # duplicate with more jitter
                dup = kp.copy()
                dup[:, :2] += rng.normal(0, 5, size=(len(kp), 2))
                preds.append({"image_id": im["id"], "category_id": 1, "keypoints": dup.reshape(-1).tolist(),
                              "score": score})
        n_fp = int(rng.integers(0, 4)) + (25 if k % 10 == 0 else 0)  # >20 detections on some images
        for _ in range(n_fp):
            kp = np.stack([rng.uniform(0, w, 14), rng.uniform(0, h, 14), rng.uniform(0.01, 0.5, 14)], 1)
            preds.append({"image_id": im["id"], "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                          "score": float(np.round(rng.uniform(0, 0.6), 1))})
    return preds


def pycocotools_crowdpose(gt, preds):
    """CrowdPose metrics from plain pycocotools: area = 0.53·w·h, CrowdPose sigmas, maxDets 20,
    ignore iscrowd / num_keypoints == 0 (pycocotools' keypoint rule), easy/medium/hard by
    re-running on the image subsets (plain mean of precision, rounded to 4 decimals)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = copy.deepcopy(gt)
    for a in gt["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3] * 0.53
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        dt = coco.loadRes(copy.deepcopy(preds))
        ev = COCOeval(coco, dt, "keypoints")
        ev.params.kpt_oks_sigmas = CROWD_SIGMAS
        ev.params.maxDets = [20]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        stats = list(ev.stats[[0, 1, 2, 5, 6, 7]])
        for lo, hi in ((-1.0, 0.2), (0.2, 0.8), (0.8, 10.0)):
            ev.params.imgIds = [im["id"] for im in gt["images"] if lo <= im["crowdIndex"] < hi]
            ev.evaluate()
            ev.accumulate()
            stats.append(round(float(np.mean(ev.eval["precision"][:, :, :, 0, :])), 4))
    return dict(zip(CROWDPOSE_STAT_NAMES, stats))


@pytest.mark.parametrize("seed", [0, 1])
def test_crowdpose_metrics_match_pycocotools(subset_gt, seed):
    path, gt = subset_gt
    preds = perturbed_predictions(gt, seed)
    ours = evaluate_keypoints(path, preds, style="crowdpose")
    ref = pycocotools_crowdpose(gt, preds)
    assert list(ours.keys()) == CROWDPOSE_STAT_NAMES
    for name in CROWDPOSE_STAT_NAMES:
        assert round(ours[name], 3) == round(ref[name], 3), (name, ours[name], ref[name])
    # sanity: the perturbation is neither perfect nor hopeless, and all three splits are populated
    assert 0.2 < ours["AP"] < 0.95
    assert all(ours[n] > 0 for n in ("AP (easy)", "AP (medium)", "AP (hard)"))


def test_written_scores_floor_keeps_metrics(subset_gt, tmp_path):
    """Records from person_records (scores floored > 0) score exactly like the raw predictions."""
    path, gt = subset_gt
    preds = perturbed_predictions(gt, 3)
    records = []
    for p in preds:
        kp = np.array(p["keypoints"]).reshape(1, -1, 3)
        records += person_records(p["image_id"], kp, [p["score"]])
    assert all(min(r["keypoints"][2::3]) > 0 for r in records)
    out = tmp_path / "res.json"
    out.write_text(json.dumps(records))
    ours = evaluate_keypoints(path, str(out), style="crowdpose")
    ref = pycocotools_crowdpose(gt, preds)
    for name in CROWDPOSE_STAT_NAMES:
        assert round(ours[name], 3) == round(ref[name], 3), name


def test_perfect_predictions_score_one(subset_gt):
    path, gt = subset_gt
    preds = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
             for a in gt["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
    for p in preds:  # keypoint scores must be > 0 to be written; positions are exact
        kp = np.array(p["keypoints"], dtype=float).reshape(-1, 3)
        kp[:, 2] = 1.0
        p["keypoints"] = kp.reshape(-1).tolist()
    ours = evaluate_keypoints(path, preds)
    assert ours["AP"] == pytest.approx(1.0, abs=1e-6)
    assert ours["AR"] == pytest.approx(1.0, abs=1e-6)


def test_gt_must_be_a_file(subset_gt):
    with pytest.raises(ValueError, match="path"):
        evaluate_keypoints({"images": []}, [])


def test_table_format():
    vals = dict(zip(CROWDPOSE_STAT_NAMES, [0.1234, 0.5, 0.25, 0.3, 0.6, 0.7, 0.8, 0.9, 0.05]))
    text = format_table(vals, "pose_higher_hrnet")
    lines = text.split("\n")
    assert lines[0] == ("| Arch | AP | Ap .5 | AP .75 | AR | AR .5 | AR .75 | AP (easy) | AP (medium) | "
                        "AP (hard) |")
    assert lines[1] == "|---" * 10 + "|"
    assert lines[2] == "| pose_hig... | 0.123 | 0.500 | 0.250 | 0.300 | 0.600 | 0.700 | 0.800 | 0.900 | 0.050 |"
    assert format_table({"AP": 1.0}, "short_name").split("\n")[2] == "| short_name | 1.000 |"


def test_coco_style_matches_pycocotools(subset_gt, tmp_path):
    """COCO keypoints (17 joints, GT area, pycocotools defaults) on a COCO-format file made from the subset."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from higherpose.evaluation import COCO_STAT_NAMES

    _, gt = subset_gt
    coco_gt = copy.deepcopy(gt)
    # CrowdPose joints 0..11 are COCO joints 5..16; nose/eyes/ears stay unlabelled
    for a in coco_gt["annotations"]:
        kp = np.zeros((17, 3))
        kp[5:] = np.array(a["keypoints"], dtype=float).reshape(14, 3)[:12]
        a["keypoints"] = kp.reshape(-1).tolist()
        a["num_keypoints"] = int((kp[:, 2] > 0).sum())
        a["area"] = a["bbox"][2] * a["bbox"][3] * 0.6
    for im in coco_gt["images"]:
        im.pop("crowdIndex")
    path = tmp_path / "coco_gt.json"
    path.write_text(json.dumps(coco_gt))
    preds = perturbed_predictions(gt, 5)
    for p in preds:
        kp = np.zeros((17, 3))
        kp[5:] = np.array(p["keypoints"]).reshape(14, 3)[:12]
        p["keypoints"] = kp.reshape(-1).tolist()
    ours = evaluate_keypoints(str(path), preds, style="coco")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(preds)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert list(ours) == COCO_STAT_NAMES
    for name, ref in zip(COCO_STAT_NAMES, ev.stats):
        assert round(ours[name], 3) == round(float(ref), 3), (name, ours[name], ref)
    assert 0.1 < ours["AP"] < 0.95


def test_metric_style_by_dataset_name():
    from higherpose.evaluation import metric_style
    assert metric_style("crowd_pose") == metric_style("crowdpose") == metric_style("synthetic_crowd") == "crowdpose"
    assert metric_style("coco") == metric_style("coco_kpt") == metric_style("ochuman") == "coco"
    with pytest.raises(ValueError, match="no keypoint metric"):
        metric_style("mpii")
