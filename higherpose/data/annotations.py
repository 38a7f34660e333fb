"""Reading COCO-format keypoint annotation files (COCO, CrowdPose, OCHuman) into an index.

The file is checked by `validate.check_ground_truth` (the same pass the evaluator runs): every
problem is an `AnnotationError` naming the file and the offending entry and field, so a broken
download or a hand-edited file fails loudly instead of training on garbage.
"""
import json
import os
from collections import defaultdict

from ..errors import DATA_GUIDE, MissingInputError
from .validate import AnnotationError, check_ground_truth

# What the loader reads of each image besides its id (the evaluator needs other fields).
LOADER_FIELDS = ("file_name", "width", "height")


def load_json_file(path):
    """The parsed JSON of an annotation (or results) file; MissingInputError / AnnotationError
    naming the file when it is absent or not JSON."""
    if not os.path.isfile(path):
        raise MissingInputError(f"annotation file not found: {path} (see {DATA_GUIDE})")
    try:
        with open(path, "r") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}: not valid JSON ({e})") from None
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not a text JSON file ({e})") from None


class KeypointAnnotations:
    """Images, person annotations and the category of one COCO-format keypoint file.

    Attributes: path, images (id -> image dict), image_ids (file order), category,
    anns_by_image (image id -> list of annotation dicts, file order), has_annotations (the file
    has an 'annotations' list; test-dev image-info files have none).
    """

    def __init__(self, path, num_joints, require_annotations=True):
        self.path = path
        self.num_joints = int(num_joints)
        data = load_json_file(path)
        required = LOADER_FIELDS + (("annotations",) if require_annotations else ())
        check_ground_truth(data, path, self.num_joints, require=required)
        self.has_annotations = "annotations" in data
        self.images = {img["id"]: img for img in data["images"]}
        self.image_ids = [img["id"] for img in data["images"]]
        cats = data.get("categories") or []
        person = [c for c in cats if c.get("name") == "person"]
        self.category = person[0] if person else (cats[0] if cats else {"id": 1, "name": "person"})
        self.anns_by_image = defaultdict(list)
        for ann in data.get("annotations", []):
            # defaults for fields the loader reads and some files leave out (checked when present)
            ann.setdefault("num_keypoints", sum(1 for v in ann["keypoints"][2::3] if v > 0))
            ann.setdefault("iscrowd", 0)
            self.anns_by_image[ann["image_id"]].append(ann)

    def annotations(self, image_id):
        if image_id not in self.images:
            raise KeyError(f"{self.path}: no image with id {image_id!r}")
        return self.anns_by_image.get(image_id, [])

    @property
    def num_persons(self):
        return sum(len(v) for v in self.anns_by_image.values())
