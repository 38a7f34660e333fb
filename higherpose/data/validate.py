"""Checks of the files a data set and its evaluation read: COCO-format keypoint ground truth,
keypoint results, and image bytes.

One pass, shared by the loader (`annotations.py`, `datasets.py`) and the evaluator
(`higherpose.evaluation`), so both refuse the same broken files. Each problem is raised at once,
naming the file, the entry (index and ids) and the field; nothing is repaired or modified here.
Layering: evaluation imports this module (data), never the reverse; it needs only numpy.
"""
import math
from itertools import chain

import numpy as np

from ..errors import UserInputError


class AnnotationError(UserInputError, ValueError):
    """A malformed annotation, detection or results file or entry."""


class ImageFileError(UserInputError, OSError):
    """An image file that cannot be decoded completely (truncated, corrupt, not an image)."""


# Fields a caller may ask `check_ground_truth` to require (others are always required: the
# 'images' list, image 'id', annotation 'id', 'image_id' and 'keypoints').
TOP_LEVEL_FIELDS = ("annotations", "categories")
IMAGE_FIELDS = ("file_name", "width", "height", "crowdIndex")
ANNOTATION_FIELDS = ("category_id", "num_keypoints", "bbox", "area")


# Concrete types, not numbers.Real: an isinstance against an abstract class is several times
# slower, and these checks run for every value of a file.
_REAL = (int, float, np.integer, np.floating)
_INTEGRAL = (int, np.integer)


def _num(value):
    return isinstance(value, _REAL) and value is not True and value is not False and math.isfinite(value)


def _is_id(value):
    return isinstance(value, _INTEGRAL) and value is not True and value is not False


def _list(data, key, path, required):
    """data[key] as a list; None when absent and not required."""
    if key not in data:
        if required:
            raise AnnotationError(f"{path}: missing '{key}' list")
        return None
    if not isinstance(data[key], list):
        raise AnnotationError(f"{path}: '{key}' must be a list, got {type(data[key]).__name__}")
    return data[key]


def bad_keypoint_value(keypoint_lists, check_flags):
    """The first bad value of lists of flat [x, y, v] * J keypoints, whose lengths are already
    checked (multiples of 3): (list index, value index, message) or None when all are good.

    Bad: not a real number, NaN or infinite; with check_flags, a visibility flag outside {0, 1, 2}.
    One numpy pass over all values; a slow scan only to locate a value of the wrong type.
    """
    lengths = [len(k) for k in keypoint_lists]
    flat = list(chain.from_iterable(keypoint_lists))
    if not all(issubclass(t, _REAL) and t is not bool for t in set(map(type, flat))):
        for i, kps in enumerate(keypoint_lists):
            for k, v in enumerate(kps):
                if not _num(v):
                    return i, k, f"is {v!r}, a non-numeric or non-finite value"
    values = np.asarray(flat, dtype=np.float64)
    bad = ~np.isfinite(values)
    if check_flags:
        flags = values[2::3]
        bad[2::3] |= (flags != 0) & (flags != 1) & (flags != 2)
    if not bad.any():
        return None
    k = int(np.argmax(bad))
    starts = np.cumsum([0] + lengths)
    i = int(np.searchsorted(starts, k, side="right")) - 1
    v = flat[k]
    if math.isfinite(v):
        return i, k - int(starts[i]), f"is {v!r}: visibility flags must be 0, 1 or 2"
    return i, k - int(starts[i]), f"is {v!r}, a non-numeric or non-finite value"


def keypoint_field(k, third="visibility"):
    """How an error names value k of a flat keypoint list: 'keypoints'[5] (joint 1 visibility)."""
    return f"'keypoints'[{k}] (joint {k // 3} {('x', 'y', third)[k % 3]})"


def check_ground_truth(data, path, num_joints=None, require=()):
    """Raise AnnotationError at the first problem of a parsed COCO-format keypoint file.

    Args:
        data: the parsed JSON.
        path: the file's name, for the messages.
        num_joints: joints per person; None takes each annotation's count from its category's
            'keypoints' name list. When given it wins over the category (the caller's network or
            OKS sigmas decide what the keypoints must hold).
        require: names from TOP_LEVEL_FIELDS, IMAGE_FIELDS and ANNOTATION_FIELDS that must be
            present (present fields are always checked, required or not).

    Accepted as real files have them: num_keypoints disagreeing with the visibility flags,
    persons with num_keypoints 0 but labelled points, iscrowd persons, a category skeleton for
    another joint count, segmentations (polygons or RLE), extra fields.
    """
    require = set(require)
    unknown = require - set(TOP_LEVEL_FIELDS + IMAGE_FIELDS + ANNOTATION_FIELDS)
    if unknown:
        raise ValueError(f"unknown required fields {sorted(unknown)}")
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: the top level must be an object with 'images' and 'annotations', "
                              f"got {type(data).__name__}")
    images = _list(data, "images", path, True)
    anns = _list(data, "annotations", path, "annotations" in require)
    cats = _list(data, "categories", path, "categories" in require)

    category_joints = {}  # category id -> joint count (None when it lists no keypoint names)
    for i, cat in enumerate(cats or []):
        where = f"{path}: categories[{i}]"
        if not isinstance(cat, dict):
            raise AnnotationError(f"{where}: not an object")
        if not _is_id(cat.get("id")):
            raise AnnotationError(f"{where}: 'id' must be an integer, got {cat.get('id')!r}")
        if cat["id"] in category_joints:
            raise AnnotationError(f"{where}: duplicate category id {cat['id']}")
        names = cat.get("keypoints")
        category_joints[cat["id"]] = len(names) if isinstance(names, list) else None

    image_index = {}  # id -> index in 'images'
    needed = ("id",) + tuple(f for f in IMAGE_FIELDS if f in require)
    for i, img in enumerate(images):
        problem = _image_problem(img, needed, image_index)
        if problem:
            raise AnnotationError(f"{path}: images[{i}] (id {_get(img, 'id')!r}): {problem}")
        image_index[img["id"]] = i
    if anns is None:
        return
    ann_index = {}  # id -> index in 'annotations'
    needed = ("id", "image_id", "keypoints") + tuple(f for f in ANNOTATION_FIELDS if f in require)
    categories = category_joints if cats is not None else None
    for i, ann in enumerate(anns):
        problem = _annotation_problem(ann, needed, num_joints, image_index, ann_index, categories)
        if problem:
            raise AnnotationError(f"{_where_ann(path, i, ann)}: {problem}")
        ann_index[ann["id"]] = i
    found = bad_keypoint_value([ann["keypoints"] for ann in anns], check_flags=True)
    if found is not None:
        i, k, message = found
        raise AnnotationError(f"{_where_ann(path, i, anns[i])}: {keypoint_field(k)} {message}")


def _get(entry, key):
    return entry.get(key) if isinstance(entry, dict) else None


def _where_ann(path, i, ann):
    return f"{path}: annotations[{i}] (id {_get(ann, 'id')!r}, image id {_get(ann, 'image_id')!r})"


# The per-entry checks return what is wrong (None when nothing is): the caller names the entry,
# so its description is only built for a bad entry.

def _image_problem(img, needed, image_index):
    if not isinstance(img, dict):
        return "not an object"
    for key in needed:
        if key not in img:
            return f"missing '{key}'"
    if not _is_id(img["id"]):
        return "'id' must be an integer"
    if img["id"] in image_index:
        return f"duplicate image id {img['id']} (also images[{image_index[img['id']]}])"
    if "file_name" in img and not (isinstance(img["file_name"], str) and img["file_name"]):
        return f"bad file_name {img['file_name']!r}"
    for key in ("width", "height"):
        if key in img and not (_num(img[key]) and img[key] > 0):
            return f"impossible {key} {img[key]!r}"
    if "crowdIndex" in img and not (_num(img["crowdIndex"]) and img["crowdIndex"] >= 0):
        return f"impossible crowdIndex {img['crowdIndex']!r}"
    return None


def _annotation_problem(ann, needed, num_joints, image_index, ann_index, category_joints):
    """What is wrong with one annotation, its keypoint values aside (checked for all at once)."""
    if not isinstance(ann, dict):
        return "not an object"
    for key in needed:
        if key not in ann:
            return f"missing '{key}'"
    if not _is_id(ann["id"]):
        return "'id' must be an integer"
    if ann["id"] in ann_index:
        return f"duplicate annotation id {ann['id']} (also annotations[{ann_index[ann['id']]}])"
    if not _is_id(ann["image_id"]) or ann["image_id"] not in image_index:
        return f"image_id {ann['image_id']!r} is not an image of this file"
    category = ann.get("category_id")
    if "category_id" in ann and category_joints is not None and not (_is_id(category) and category in category_joints):
        return f"'category_id' {category!r} is not a category of this file (ids {sorted(category_joints)})"
    joints = num_joints if num_joints is not None else (category_joints or {}).get(category)
    if joints is None:
        return (f"cannot tell how many joints 'keypoints' must hold: category {category!r} lists no "
                f"'keypoints' names")
    kps = ann["keypoints"]
    if not isinstance(kps, list) or len(kps) != 3 * joints:
        n = f"{len(kps)} values" if isinstance(kps, list) else f"a {type(kps).__name__}"
        return f"'keypoints' has {n}, expected {3 * joints} ({joints} joints x 3)"
    if "num_keypoints" in ann and not (_num(ann["num_keypoints"]) and 0 <= ann["num_keypoints"] <= joints):
        return f"impossible num_keypoints {ann['num_keypoints']!r} (0..{joints})"
    if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):  # True / False compare equal to 1 / 0
        return f"'iscrowd' must be 0 or 1, got {ann['iscrowd']!r}"
    if "bbox" in ann:
        box = ann["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(_num(v) for v in box)):
            return f"'bbox' must be 4 finite numbers [x, y, w, h], got {box!r}"
        if box[2] < 0 or box[3] < 0:
            return f"'bbox' has negative width/height {box!r}"
    if "area" in ann and not (_num(ann["area"]) and ann["area"] >= 0):
        return f"'area' must be a finite number >= 0, got {ann['area']!r}"
    seg = ann.get("segmentation")
    if seg is not None and not (isinstance(seg, list) or (isinstance(seg, dict) and {"counts", "size"} <= set(seg))):
        return (f"'segmentation' must be a list of polygons or an RLE object with 'counts' and 'size', "
                f"got {type(seg).__name__}")
    return None


def check_results(records, source, num_joints=None, gt=None, gt_path=None):
    """Raise AnnotationError at the first result record that cannot be written or scored.

    Args:
        records: list of result dicts (image_id, category_id, keypoints, score).
        source: the results file's name, or None for a list given in memory.
        num_joints: joints per result (the number of OKS sigmas); None: any multiple of 3 values.
        gt: the parsed ground truth, already checked by `check_ground_truth`; when given, every
            record's image and category must be one of it.
        gt_path: the ground truth's file name, for the messages.
    """
    prefix = f"{source}: " if source else ""
    if not isinstance(records, list):
        raise AnnotationError(f"{prefix}results must be a list of records, got {type(records).__name__}")
    image_ids = category_ids = None
    if gt is not None:
        image_ids = {img["id"] for img in gt["images"]}
        category_ids = sorted(c["id"] for c in gt["categories"])
    for i, rec in enumerate(records):
        problem = _result_problem(rec, num_joints, image_ids, category_ids, gt_path)
        if problem:
            raise AnnotationError(f"{prefix}results[{i}] (image id {_get(rec, 'image_id')!r}): {problem}")
    found = bad_keypoint_value([rec["keypoints"] for rec in records], check_flags=False)
    if found is not None:
        i, k, message = found
        raise AnnotationError(f"{prefix}results[{i}] (image id {records[i]['image_id']!r}): "
                              f"{keypoint_field(k, 'score')} {message}")


def _result_problem(rec, num_joints, image_ids, category_ids, gt_path):
    """What is wrong with one result record, its keypoint values aside."""
    if not isinstance(rec, dict):
        return "not an object"
    for key in ("image_id", "category_id", "keypoints", "score"):
        if key not in rec:
            return f"missing '{key}'"
    if not _is_id(rec["image_id"]) or (image_ids is not None and rec["image_id"] not in image_ids):
        return f"image_id {rec['image_id']!r} is not an image of {gt_path}"
    if not _is_id(rec["category_id"]) or (category_ids is not None and rec["category_id"] not in category_ids):
        return f"'category_id' {rec['category_id']!r} is not a category of {gt_path} (ids {category_ids})"
    if not _num(rec["score"]):
        return f"'score' is {rec['score']!r}; scores must be finite numbers"
    kps = rec["keypoints"]
    sequence = isinstance(kps, (list, tuple, np.ndarray))
    if num_joints is None and sequence and len(kps) % 3 == 0:
        return None
    if not sequence or len(kps) != 3 * num_joints:
        n = f"{len(kps)} values" if sequence else f"a {type(kps).__name__}"
        expected = f"{3 * num_joints} ({num_joints} joints x 3)" if num_joints is not None else "a multiple of 3"
        return f"'keypoints' has {n}, expected {expected}"
    return None


def image_truncation(data):
    """Why the bytes of a JPEG or PNG file are incomplete, or None.

    OpenCV decodes a truncated JPEG without an error (the missing rows come out grey), so the
    file's structure is checked instead, on the bytes already in memory (two searches, no
    decode). A JPEG (it starts with FF D8) is complete when its end-of-image marker FF D9 comes
    after its last start-of-scan marker FF DA: neither can occur inside entropy-coded data, which
    escapes every FF byte, and "last" lets pass both an embedded EXIF thumbnail with its own
    markers and bytes appended after the end marker. A PNG (by its signature) is complete when
    it holds its IEND chunk. Anything else is left to the decoder.
    """
    if data[:2] == b"\xff\xd8":
        if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
            return "truncated JPEG: no end-of-image marker (FF D9) after the last scan"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if data.rfind(b"IEND") < 0:
            return "truncated PNG: no IEND chunk"
    return None
