"""Reading and checking COCO-format keypoint annotation files (COCO, CrowdPose, OCHuman).

Every problem is reported as `AnnotationError` naming the file and the offending entry, so a
broken download or a hand-edited file fails loudly instead of training on garbage.
"""
import json
import math
import os
from collections import defaultdict

from ..errors import DATA_GUIDE, MissingInputError


class AnnotationError(ValueError):
    """A malformed annotation file or entry."""


def _num(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class KeypointAnnotations:
    """Images, person annotations and the category of one COCO-format keypoint file.

    Attributes: path, images (id -> image dict), image_ids (file order), category,
    anns_by_image (image id -> list of annotation dicts, file order).
    """

    def __init__(self, path, num_joints, require_annotations=True):
        self.path = path
        self.num_joints = int(num_joints)
        if not os.path.isfile(path):
            raise MissingInputError(f"annotation file not found: {path} (see {DATA_GUIDE})")
        try:
            with open(path, "r") as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise AnnotationError(f"{path}: not valid JSON ({e})") from None
        except UnicodeDecodeError as e:
            raise AnnotationError(f"{path}: not a text JSON file ({e})") from None
        if not isinstance(data, dict):
            raise AnnotationError(f"{path}: top level must be an object with 'images' and 'annotations'")
        if "images" not in data or not isinstance(data["images"], list):
            raise AnnotationError(f"{path}: missing or malformed 'images' list")
        if require_annotations and not isinstance(data.get("annotations"), list):
            raise AnnotationError(f"{path}: missing or malformed 'annotations' list")
        self.has_annotations = isinstance(data.get("annotations"), list)
        self.images = {}
        self.image_ids = []
        for i, img in enumerate(data["images"]):
            self._check_image(img, i)
            if img["id"] in self.images:
                raise AnnotationError(f"{path}: images[{i}]: duplicate image id {img['id']}")
            self.images[img["id"]] = img
            self.image_ids.append(img["id"])
        cats = data.get("categories") or []
        person = [c for c in cats if isinstance(c, dict) and c.get("name") == "person"]
        self.category = person[0] if person else (cats[0] if cats else {"id": 1, "name": "person"})
        self.anns_by_image = defaultdict(list)
        for i, ann in enumerate(data.get("annotations") or []):
            self._check_annotation(ann, i)
            self.anns_by_image[ann["image_id"]].append(ann)

    def _check_image(self, img, i):
        where = f"{self.path}: images[{i}]"
        if not isinstance(img, dict):
            raise AnnotationError(f"{where}: not an object")
        for key in ("id", "file_name", "width", "height"):
            if key not in img:
                raise AnnotationError(f"{where} (id {img.get('id')}): missing '{key}'")
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            raise AnnotationError(f"{where} (id {img['id']}): bad file_name {img['file_name']!r}")
        for key in ("width", "height"):
            if not _num(img[key]) or img[key] <= 0:
                raise AnnotationError(f"{where} (id {img['id']}): impossible {key} {img[key]!r}")
        if "crowdIndex" in img and not (_num(img["crowdIndex"]) and img["crowdIndex"] >= 0):
            raise AnnotationError(f"{where} (id {img['id']}): impossible crowdIndex {img['crowdIndex']!r}")

    def _check_annotation(self, ann, i):
        where = f"{self.path}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise AnnotationError(f"{where}: not an object")
        where += f" (id {ann.get('id')})"
        if ann.get("image_id") not in self.images:
            raise AnnotationError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        kps = ann.get("keypoints")
        if kps is None:
            kps = ann["keypoints"] = [0] * (3 * self.num_joints)
        if not isinstance(kps, list) or len(kps) != 3 * self.num_joints:
            n = len(kps) if isinstance(kps, list) else type(kps).__name__
            raise AnnotationError(f"{where}: 'keypoints' has {n} values, expected "
                                  f"{3 * self.num_joints} ({self.num_joints} joints x 3)")
        if not all(_num(v) for v in kps):
            raise AnnotationError(f"{where}: 'keypoints' holds a non-numeric or non-finite value")
        bad = [v for v in kps[2::3] if v not in (0, 1, 2)]
        if bad:
            raise AnnotationError(f"{where}: visibility flags must be 0, 1 or 2, found {bad[0]!r}")
        nk = ann.setdefault("num_keypoints", sum(1 for v in kps[2::3] if v > 0))
        if not _num(nk) or nk < 0 or nk > self.num_joints:
            raise AnnotationError(f"{where}: impossible num_keypoints {nk!r}")
        ann.setdefault("iscrowd", 0)
        if ann["iscrowd"] not in (0, 1, False, True):
            raise AnnotationError(f"{where}: iscrowd must be 0 or 1, got {ann['iscrowd']!r}")
        if "bbox" in ann:
            box = ann["bbox"]
            if not (isinstance(box, list) and len(box) == 4 and all(_num(v) for v in box)):
                raise AnnotationError(f"{where}: bbox must be 4 finite numbers, got {box!r}")
            if box[2] < 0 or box[3] < 0:
                raise AnnotationError(f"{where}: bbox has negative width/height {box!r}")

    def annotations(self, image_id):
        if image_id not in self.images:
            raise KeyError(f"{self.path}: no image with id {image_id!r}")
        return self.anns_by_image.get(image_id, [])

    @property
    def num_persons(self):
        return sum(len(v) for v in self.anns_by_image.values())
