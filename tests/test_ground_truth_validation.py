"""No silent wrong answer: broken ground truth, results and images are refused with an error
that names the file, the entry and the field; real files (the CrowdPose subset with its quirks,
COCO's layout with segmentations) still load and score.

The ground truth here is a tiny hand-written CrowdPose-format file; each case breaks one thing.
"""
import json
import os
import re

import cv2
import numpy as np
import pytest

from higherpose.data import AnnotationError, BottomUpDataset, KeypointDataset, dataset_info
from higherpose.errors import UserInputError
from higherpose.evaluation import evaluate_keypoints

CROWDPOSE_NAMES = dataset_info("crowdpose").joint_names
COCO_NAMES = dataset_info("coco").joint_names


def person(ann_id, image_id, x0, y0, joints=14):
    """A standing figure: joint j at (x0 + 7*(j % 3), y0 + 9*j), all labelled."""
    kps = []
    for j in range(joints):
        kps += [x0 + 7 * (j % 3), y0 + 9 * j, 2]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "keypoints": kps,
            "num_keypoints": joints, "bbox": [x0, y0, 14, 9 * (joints - 1)]}


def tiny_gt():
    images = [{"id": 1, "file_name": "1.jpg", "width": 200, "height": 200, "crowdIndex": 0.1},
              {"id": 2, "file_name": "2.jpg", "width": 200, "height": 200, "crowdIndex": 0.5},
              {"id": 3, "file_name": "3.jpg", "width": 200, "height": 200, "crowdIndex": 0.9}]
    anns = [person(11, 1, 20, 20), person(12, 1, 120, 30), person(21, 2, 50, 60), person(31, 3, 80, 10)]
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(CROWDPOSE_NAMES)}]}


def perfect(gt):
    """The GT poses as predictions (keypoint scores 1, person score 1)."""
    return [{"image_id": a["image_id"], "category_id": 1, "score": 1.0,
             "keypoints": [1.0 if k % 3 == 2 else float(v) for k, v in enumerate(a["keypoints"])]}
            for a in gt["annotations"]]


def write(tmp_path, data, name="gt.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))  # json writes NaN / Infinity, as a broken exporter might
    return str(path)


def load(path):
    return KeypointDataset("crowdpose", os.path.dirname(path), "val", ann_file=path)


def test_tiny_ground_truth_loads_and_scores_one(tmp_path):
    gt = tiny_gt()
    path = write(tmp_path, gt)
    assert len(load(path)) == 3
    ours = evaluate_keypoints(path, perfect(gt))
    assert ours["AP"] == pytest.approx(1.0) and ours["AR"] == pytest.approx(1.0)


def test_annotation_error_is_a_user_input_error():
    # the command-line tools print a UserInputError as one `error:` line instead of a traceback
    assert issubclass(AnnotationError, UserInputError) and issubclass(AnnotationError, ValueError)


# ----------------------------------------------------------------------------- broken ground truth

def _set(path, value):
    """A mutation that sets data[path[0]][path[1]]... = value."""
    def mutate(d):
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value
    return mutate


def _pop(*path):
    def mutate(d):
        for key in path[:-1]:
            d = d[key]
        d.pop(path[-1])
    return mutate


def _dup_image(d):
    d["images"][2]["id"] = 1


def _dup_annotation(d):
    d["annotations"][2]["id"] = 11


# (case, mutation, fragments the message must hold; "gt.json" is always required)
BOTH = [
    ("no images", _pop("images"), ["missing 'images'"]),
    ("duplicate image id", _dup_image, ["images[2] (id 1)", "duplicate image id 1", "images[0]"]),
    ("duplicate annotation id", _dup_annotation,
     ["annotations[2] (id 11, image id 2)", "duplicate annotation id 11", "annotations[0]"]),
    ("unknown image", _set(["annotations", 1, "image_id"], 99),
     ["annotations[1] (id 12, image id 99)", "image_id 99 is not an image"]),
    ("no keypoints", _pop("annotations", 3, "keypoints"), ["annotations[3] (id 31, image id 3)", "missing 'keypoints'"]),
    ("no annotation id", _pop("annotations", 1, "id"), ["annotations[1] (id None, image id 1)", "missing 'id'"]),
    ("no image_id", _pop("annotations", 2, "image_id"), ["annotations[2] (id 21, image id None)", "missing 'image_id'"]),
    ("short keypoints", _set(["annotations", 1, "keypoints"], [1, 2, 2] * 13),
     ["annotations[1] (id 12, image id 1)", "'keypoints' has 39 values, expected 42 (14 joints x 3)"]),
    ("NaN keypoint", _set(["annotations", 2, "keypoints", 4], float("nan")),
     ["annotations[2] (id 21, image id 2)", "'keypoints'[4] (joint 1 y) is nan"]),
    ("inf keypoint", _set(["annotations", 0, "keypoints", 39], float("inf")),
     ["annotations[0] (id 11, image id 1)", "'keypoints'[39] (joint 13 x) is inf"]),
    ("visibility 3", _set(["annotations", 3, "keypoints", 8], 3),
     ["annotations[3] (id 31, image id 3)", "'keypoints'[8] (joint 2 visibility) is 3", "0, 1 or 2"]),
    ("NaN bbox", _set(["annotations", 1, "bbox", 0], float("nan")),
     ["annotations[1] (id 12, image id 1)", "'bbox' must be 4 finite numbers"]),
    ("negative bbox", _set(["annotations", 2, "bbox", 3], -4),
     ["annotations[2] (id 21, image id 2)", "'bbox' has negative width/height"]),
    ("inf area", _set(["annotations", 0, "area"], float("inf")),
     ["annotations[0] (id 11, image id 1)", "'area' must be a finite number >= 0, got inf"]),
    ("unknown category", _set(["annotations", 3, "category_id"], 7),
     ["annotations[3] (id 31, image id 3)", "'category_id' 7 is not a category"]),
    ("annotations not a list", _set(["annotations"], {"1": []}), ["'annotations' must be a list"]),
    ("duplicate category id", lambda d: d["categories"].append({"id": 1, "name": "person2"}),
     ["categories[1]", "duplicate category id 1"]),
]
EVALUATOR_ONLY = [  # the loader does without these; the metric reads them
    ("no annotations", _pop("annotations"), ["missing 'annotations'"]),
    ("no categories", _pop("categories"), ["missing 'categories'"]),
    ("no bbox", _pop("annotations", 1, "bbox"), ["annotations[1] (id 12, image id 1)", "missing 'bbox'"]),
    ("no num_keypoints", _pop("annotations", 0, "num_keypoints"),
     ["annotations[0] (id 11, image id 1)", "missing 'num_keypoints'"]),
    ("no category_id", _pop("annotations", 2, "category_id"), ["annotations[2] (id 21, image id 2)", "missing 'category_id'"]),
    ("no crowdIndex", _pop("images", 1, "crowdIndex"), ["images[1] (id 2)", "missing 'crowdIndex'"]),
]


def _broken(tmp_path, mutate):
    gt = tiny_gt()
    preds = perfect(gt)
    mutate(gt)
    return write(tmp_path, gt), preds


def _assert_names(err, fragments):
    text = str(err.value)
    assert "gt.json" in text, text
    for fragment in fragments:
        assert fragment in text, (fragment, text)


@pytest.mark.parametrize("case, mutate, fragments", BOTH + EVALUATOR_ONLY, ids=[c[0] for c in BOTH + EVALUATOR_ONLY])
def test_evaluator_refuses_broken_ground_truth(tmp_path, case, mutate, fragments):
    path, preds = _broken(tmp_path, mutate)
    with pytest.raises(AnnotationError) as err:
        evaluate_keypoints(path, preds)
    _assert_names(err, fragments)


@pytest.mark.parametrize("case, mutate, fragments", BOTH, ids=[c[0] for c in BOTH])
def test_loader_refuses_broken_ground_truth(tmp_path, case, mutate, fragments):
    path, _ = _broken(tmp_path, mutate)
    with pytest.raises(AnnotationError) as err:
        load(path)
    _assert_names(err, fragments)


def test_duplicate_annotation_ids_no_longer_score_near_zero(tmp_path):
    """The campaign's finding: every person sharing one id made perfect predictions score ~0."""
    gt = tiny_gt()
    preds = perfect(gt)
    for a in gt["annotations"]:
        a["id"] = 5
    with pytest.raises(AnnotationError, match=r"annotations\[1\] \(id 5, image id 1\): duplicate annotation id 5"):
        evaluate_keypoints(write(tmp_path, gt), preds)


def test_coco_style_needs_area(tmp_path):
    gt = tiny_gt()
    for a in gt["annotations"]:
        a["area"] = 100.0
    del gt["annotations"][2]["area"]
    with pytest.raises(AnnotationError, match=r"gt\.json: annotations\[2\] \(id 21, image id 2\): missing 'area'"):
        evaluate_keypoints(write(tmp_path, gt), perfect(tiny_gt()), style="coco", sigmas=[0.1] * 14)


def test_ground_truth_joint_count_follows_the_sigmas(tmp_path):
    """17-joint GT scored with the 14 CrowdPose sigmas: refused at the first annotation."""
    gt = tiny_gt()
    gt["annotations"] = [person(11, 1, 20, 20, joints=17)]
    with pytest.raises(AnnotationError, match=r"annotations\[0\].*'keypoints' has 51 values, expected 42"):
        evaluate_keypoints(write(tmp_path, gt), perfect(tiny_gt()))


# ----------------------------------------------------------------------------- training split without persons

def test_training_split_without_annotations_is_refused(tmp_path):
    gt = tiny_gt()
    del gt["annotations"]
    path = write(tmp_path, gt)
    base = load(path)  # a test split (image_info_test-dev.json) legitimately has no annotations
    assert len(base) == 3
    with pytest.raises(AnnotationError, match=r"gt\.json: no 'annotations'.*training"):
        BottomUpDataset(base, 64, [16], 5)


def test_training_split_with_no_person_is_refused(tmp_path):
    gt = tiny_gt()
    gt["annotations"] = []
    with pytest.raises(AnnotationError, match=r"gt\.json: no annotated person.*training"):
        BottomUpDataset(load(write(tmp_path, gt)), 64, [16], 5)


# ----------------------------------------------------------------------------- results against the GT

def _result_case(index, mutate):
    def apply(preds):
        mutate(preds[index])
    return apply


RESULTS = [
    ("unknown image id", _result_case(2, lambda r: r.update(image_id=12345)),
     ["results[2] (image id 12345)", "image_id 12345 is not an image of", "gt.json"]),
    ("NaN score", _result_case(1, lambda r: r.update(score=float("nan"))),
     ["results[1] (image id 1)", "'score' is nan"]),
    ("missing score", _result_case(0, lambda r: r.pop("score")), ["results[0] (image id 1)", "missing 'score'"]),
    ("inf keypoint", _result_case(3, lambda r: r["keypoints"].__setitem__(3, float("inf"))),
     ["results[3] (image id 3)", "'keypoints'[3] (joint 1 x) is inf"]),
    ("NaN keypoint score", _result_case(0, lambda r: r["keypoints"].__setitem__(5, float("nan"))),
     ["results[0] (image id 1)", "'keypoints'[5] (joint 1 score) is nan"]),
    ("short keypoints", _result_case(1, lambda r: r.update(keypoints=r["keypoints"][:30])),
     ["results[1] (image id 1)", "'keypoints' has 30 values, expected 42 (14 joints x 3)"]),
    ("unknown category", _result_case(2, lambda r: r.update(category_id=2)),
     ["results[2] (image id 2)", "'category_id' 2 is not a category of"]),
]


@pytest.mark.parametrize("case, mutate, fragments", RESULTS, ids=[c[0] for c in RESULTS])
def test_results_checked_against_ground_truth(tmp_path, case, mutate, fragments):
    gt = tiny_gt()
    path = write(tmp_path, gt)
    preds = perfect(gt)
    mutate(preds)
    with pytest.raises(AnnotationError) as err:
        evaluate_keypoints(path, preds)
    for fragment in fragments:
        assert fragment in str(err.value), (fragment, str(err.value))
    # the same from a results file: the message names that file
    res = tmp_path / "res.json"
    res.write_text(json.dumps(preds))
    with pytest.raises(AnnotationError) as err:
        evaluate_keypoints(path, str(res))
    assert "res.json: " + fragments[0] in str(err.value), str(err.value)


# ----------------------------------------------------------------------------- real layouts are accepted

def test_subset_with_its_quirks_is_accepted_by_loader_and_evaluator(crowdpose_val_path):
    """The committed CrowdPose subset: num_keypoints disagreeing with the flags, persons with
    num_keypoints 0 but labelled points, iscrowd persons, COCO's 17-joint skeleton."""
    with open(crowdpose_val_path) as f:
        gt = json.load(f)
    anns = gt["annotations"]
    assert any(a["num_keypoints"] != sum(v > 0 for v in a["keypoints"][2::3]) for a in anns)
    assert any(a["num_keypoints"] == 0 and max(a["keypoints"][2::3]) > 0 for a in anns)
    assert any(a["iscrowd"] for a in anns)
    assert max(max(e) for e in gt["categories"][0]["skeleton"]) == 17
    assert len(load(crowdpose_val_path)) == len(gt["images"])
    ours = evaluate_keypoints(crowdpose_val_path, perfect({"annotations": [a for a in anns if not a["iscrowd"] and a["num_keypoints"] > 0]}))
    assert ours["AP"] == pytest.approx(1.0)


def test_coco_layout_with_segmentations_is_accepted(tmp_path):
    """COCO person_keypoints layout: polygon and RLE segmentations, area, iscrowd, 17 joints."""
    people = [person(1, 1, 10, 10, joints=17), person(2, 1, 100, 10, joints=17)]
    for a in people:
        a["area"] = 2000.0
        a["segmentation"] = [[10, 10, 30, 10, 30, 160, 10, 160]]
    crowd = {"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 1, "keypoints": [0] * 51, "num_keypoints": 0,
             "area": 400.0, "bbox": [150, 150, 20, 20], "segmentation": {"counts": [0, 20, 180], "size": [200, 200]}}
    gt = {"info": {"description": "tiny"}, "licenses": [],
          "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 200}],
          "annotations": people + [crowd],
          "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_NAMES),
                          "skeleton": [[16, 14], [14, 12]]}]}
    path = write(tmp_path, gt)
    ds = KeypointDataset("coco", str(tmp_path), "val", ann_file=path)
    assert len(ds.annotations(1)) == 3
    ours = evaluate_keypoints(path, perfect({"annotations": people}), style="coco")
    assert ours["AP"] == pytest.approx(1.0)


def test_validation_does_not_change_the_annotations(crowdpose_val_path):
    """What the loader hands out is what the file says (defaults only fill absent fields)."""
    with open(crowdpose_val_path) as f:
        raw = json.load(f)
    ds = load(crowdpose_val_path)
    ours = {a["id"]: a for i in ds.image_ids for a in ds.annotations(i)}
    assert ours == {a["id"]: a for a in raw["annotations"]}


# ----------------------------------------------------------------------------- images

def _image_set(tmp_path, ext, data):
    gt = tiny_gt()
    gt["images"][0]["file_name"] = "1" + ext
    path = write(tmp_path, gt)
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "images" / ("1" + ext)).write_bytes(data)
    return KeypointDataset("crowdpose", str(tmp_path), "val", ann_file=path)


def _encoded(ext, shape=(96, 128, 3)):
    rng = np.random.default_rng(0)
    image = (rng.random(shape) * 255).astype(np.uint8)
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return image, buf.tobytes()


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_complete_images_decode_as_before(tmp_path, ext):
    image, data = _encoded(ext)
    ds = _image_set(tmp_path, ext, data)
    ours = ds.read_image(1)
    assert np.array_equal(ours, cv2.imread(str(tmp_path / "images" / ("1" + ext)), cv2.IMREAD_COLOR))
    if ext == ".png":
        assert np.array_equal(ours, image)


@pytest.mark.parametrize("ext, keep", [(".jpg", 0.5), (".jpg", 0.97), (".png", 0.5), (".png", 0.99)])
def test_truncated_image_is_an_error_naming_the_file(tmp_path, ext, keep):
    _, data = _encoded(ext)
    ds = _image_set(tmp_path, ext, data[:int(len(data) * keep)])
    with pytest.raises(OSError, match="image id 1.*" + re.escape(os.path.join("images", "1" + ext))):
        ds.read_image(1)


def test_truncated_jpeg_with_a_thumbnail_is_still_refused(tmp_path):
    """An EXIF-like segment holding a whole small JPEG (with its own FF D9) before the main scan:
    the check must look for the end marker after the last scan, not anywhere in the file."""
    _, thumb = _encoded(".jpg", (8, 8, 3))
    _, main = _encoded(".jpg")
    payload = b"Exif\x00\x00" + thumb
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    full = main[:2] + app1 + main[2:]
    ds = _image_set(tmp_path, ".jpg", full)
    assert ds.read_image(1).shape == (96, 128, 3)
    (tmp_path / "images" / "1.jpg").write_bytes(full[:len(full) * 3 // 4])
    with pytest.raises(OSError, match="1.jpg"):
        ds.read_image(1)


def test_jpeg_with_bytes_after_the_end_marker_is_accepted(tmp_path):
    """Some cameras append data after the image's end marker; the pixels are complete."""
    _, data = _encoded(".jpg")
    ds = _image_set(tmp_path, ".jpg", data + b"\x00" * 16 + b"trailer")
    assert ds.read_image(1).shape == (96, 128, 3)


def test_bad_image_error_is_a_user_input_error(tmp_path):
    _, data = _encoded(".jpg")
    ds = _image_set(tmp_path, ".jpg", data[:len(data) // 2])
    with pytest.raises(UserInputError):
        ds.read_image(1)


def test_runner_refuses_a_nan_pose_naming_the_results_file(tmp_path):
    """A diverged model's NaN reaches the results: the run stops with the file, index and image
    id, before a half-written results file (JSON has no NaN)."""
    from higherpose.data.synthetic import generate
    from higherpose.evaluation import evaluate_bottom_up
    from higherpose.inference.bottom_up import Timer

    root = tmp_path / "syn"
    generate(str(root), num_train=0, num_test=2, image_size=64, seed=1, min_people=1, max_people=1)
    ds = KeypointDataset("crowd_pose", str(root), "test")

    class NanInference:
        timer = Timer()

        def predict(self, images, batch_size=1):
            poses = np.full((1, 14, 3), 10.0)
            poses[0, 3, 1] = np.nan
            return [(poses, np.ones(1)) for _ in images]

    with pytest.raises(AnnotationError) as err:
        evaluate_bottom_up(NanInference(), ds, str(tmp_path / "out"), "x", progress=False)
    text = str(err.value)
    assert "keypoints_test_results.json (not written): results[0] (image id " in text, text
    assert not (tmp_path / "out" / "keypoints_test_results.json").exists()
    assert "'keypoints'[10] (joint 3 y) is nan" in text, text


def test_import_layering():
    """Evaluation imports data's checks, never the reverse; `import higherpose.evaluation` stays
    free of torch and OpenCV (the checks are imported when scoring)."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys, higherpose.evaluation; print(sorted({'torch', 'cv2'} & set(sys.modules)))\n"
            "for m in [m for m in sys.modules if m.startswith('higherpose')]: del sys.modules[m]\n"
            "import higherpose.data; print(sorted(m for m in sys.modules if m.startswith('higherpose.evaluation')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "[]"], done.stdout
