"""CrowdPose / COCO / OCHuman datasets: test-time access, bottom-up and top-down training samples.

Layouts on disk:
  CrowdPose  <ROOT>/json/crowdpose_{train,val,trainval,test}.json, <ROOT>/images/<file_name>
  COCO       <ROOT>/annotations/person_keypoints_{split}.json, <ROOT>/images/{split}/<file_name>
             (test-dev: <ROOT>/annotations/image_info_{split}.json)
  OCHuman    <ROOT>/annotations/ochuman_coco_format_{split}_range_0.00_1.00.json or
             <ROOT>/annotations/person_keypoints_{split}.json, <ROOT>/images/<file_name>
"""
import json
import os
import warnings

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DATA_GUIDE, MissingInputError
from .annotations import KeypointAnnotations
from .info import canonical_name, dataset_info
from .targets import HeatmapGenerator, JointsGenerator, topdown_gaussian_target
from .transforms import (BottomUpAugment, box_to_center_scale, flip_joints, get_affine_transform,
                         half_body_center_scale, to_normalized_tensor)
from .validate import AnnotationError, ImageFileError, image_truncation

# Joints on the upper body, for top-down half-body augmentation.
UPPER_BODY = {"crowdpose": [0, 1, 2, 3, 4, 5, 12, 13], "coco": list(range(11)),
              "ochuman": list(range(11))}


def dataset_paths(name, root, split):
    """(annotation file, image folder) of a split, following each dataset's layout."""
    canon = canonical_name(name)
    if canon == "crowdpose":
        return os.path.join(root, "json", f"crowdpose_{split}.json"), os.path.join(root, "images")
    if canon == "coco":
        ann = os.path.join(root, "annotations", f"person_keypoints_{split}.json")
        if "test" in split and not os.path.isfile(ann):
            ann = os.path.join(root, "annotations", f"image_info_{split}.json")
        return ann, os.path.join(root, "images", split)
    ann = os.path.join(root, "annotations", f"ochuman_coco_format_{split}_range_0.00_1.00.json")
    other = os.path.join(root, "annotations", f"person_keypoints_{split}.json")
    if not os.path.isfile(ann) and os.path.isfile(other):
        ann = other  # when neither exists, the official OCHuman name is the one to report missing
    return ann, os.path.join(root, "images")


class KeypointDataset(Dataset):
    """One split of a keypoint dataset, for evaluation and inference.

    `dataset[i]` is (RGB uint8 image, list of annotation dicts) of image_ids[i].
    """

    def __init__(self, name, root, split, with_center=False, ann_file=None, image_dir=None):
        self.name = canonical_name(name)
        self.root, self.split = root, split
        default_ann, default_dir = dataset_paths(self.name, root, split)
        self.ann_file = ann_file or default_ann
        self.image_dir = image_dir or default_dir
        self.info = dataset_info(self.name)
        self.with_center = with_center
        self.num_joints = self.info.num_joints + (1 if with_center else 0)
        self.db = KeypointAnnotations(self.ann_file, self.info.num_joints, require_annotations=False)
        self.image_ids = list(self.db.image_ids)
        self.category_id = self.db.category.get("id", 1)

    def __len__(self):
        return len(self.image_ids)

    def image_info(self, image_id):
        return self.db.images[image_id]

    def annotations(self, image_id):
        return self.db.annotations(image_id)

    def image_path(self, image_id):
        return os.path.join(self.image_dir, self.db.images[image_id]["file_name"])

    def check_images(self):
        """Fail early, naming the folder, when the split's images are not where they belong.

        Without this a missing image folder shows up only mid-run, inside a data-loader worker.
        """
        if not os.path.isdir(self.image_dir):
            raise MissingInputError(f"image folder not found: {self.image_dir} (the images of "
                                    f"{self.ann_file}; see {DATA_GUIDE})")
        if self.image_ids:
            first = self.image_path(self.image_ids[0])
            if not os.path.isfile(first):
                raise MissingInputError(f"image file not found: {first} (the first image listed in "
                                        f"{self.ann_file}; see {DATA_GUIDE})")

    def read_image(self, image_id):
        """BGR uint8 image (EXIF orientation ignored, as upstream).

        A truncated or undecodable file is an ImageFileError naming it: OpenCV alone would hand
        back a truncated JPEG half grey without a word (see validate.image_truncation).
        """
        path = self.image_path(image_id)
        if not os.path.isfile(path):
            raise MissingInputError(f"image file of image id {image_id} not found: {path} "
                                    f"(listed in {self.ann_file})")
        with open(path, "rb") as f:
            data = f.read()
        problem = image_truncation(data)
        if problem:
            raise ImageFileError(f"image file of image id {image_id} is incomplete ({problem}): {path} "
                                 f"(listed in {self.ann_file})")
        image = None
        if data:  # cv2.imdecode raises on an empty buffer
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if image is None:
            raise ImageFileError(f"cannot decode image file of image id {image_id}: {path} (listed in {self.ann_file})")
        return image

    def read_image_rgb(self, image_id):
        return cv2.cvtColor(self.read_image(image_id), cv2.COLOR_BGR2RGB)

    def __getitem__(self, index):
        image_id = self.image_ids[index]
        return self.read_image_rgb(image_id), self.annotations(image_id)

    # -- helpers shared by the training datasets
    def person_annotations(self, image_id):
        """Persons used for training (upstream rule): iscrowd == 0 or num_keypoints > 0."""
        return [a for a in self.annotations(image_id) if a["iscrowd"] == 0 or a["num_keypoints"] > 0]


def _require_training_persons(base, annotated_image_ids):
    """A training split without persons would train on nothing (a data set of length 0)."""
    if not base.db.has_annotations:
        raise AnnotationError(f"{base.ann_file}: no 'annotations' list; a training split needs annotated persons")
    if not annotated_image_ids:
        raise AnnotationError(f"{base.ann_file}: no annotated person in any of its {len(base.image_ids)} images; "
                              f"a training split needs some")


class _SeededDataset(Dataset):
    """Per-sample random generator from (seed, epoch, index): identical augmentations for any
    number of DataLoader workers or distributed ranks."""

    seed = 0
    epoch = 0

    # test-time access, delegated to the underlying split
    def read_image(self, image_id):
        return self.base.read_image(image_id)

    def annotations(self, image_id):
        return self.base.annotations(image_id)

    def image_info(self, image_id):
        return self.base.image_info(image_id)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def rng_for(self, index):
        return np.random.default_rng([int(self.seed) & 0xFFFFFFFF, int(self.epoch), int(index)])


class BottomUpDataset(_SeededDataset):
    """HigherHRNet training samples.

    Returns (image [3, S, S] float normalised RGB, heatmaps: list of [J, R, R] float tensors,
    masks: list of [R, R] float tensors, joints: list of [MAX_NUM_PEOPLE, J, 2] int64 tensors),
    one list entry per DATASET.OUTPUT_SIZE.
    """

    def __init__(self, base, input_size, output_sizes, max_num_people, sigma=-1, flip=0.5,
                 max_rotation=30, min_scale=0.75, max_scale=1.5, scale_type="short",
                 max_translate=40, tag_per_joint=True, seed=0, augment=True):
        self.base = base
        self.info = base.info
        self.name = base.name
        self.ann_file = base.ann_file
        # as upstream for training: images without any annotation are left out
        self.image_ids = [i for i in base.image_ids if base.annotations(i)]
        _require_training_persons(base, self.image_ids)
        self.num_joints = base.num_joints
        self.with_center = base.with_center
        self.output_sizes = [int(s) for s in output_sizes]
        self.input_size = int(input_size)
        self.seed = seed
        flip_index = list(self.info.flip_index) + ([self.info.num_joints] if self.with_center else [])
        self.augment = BottomUpAugment(input_size, self.output_sizes, max_rotation, min_scale,
                                       max_scale, scale_type, max_translate, flip if augment else 0.0,
                                       flip_index) if augment else None
        self.heatmap_generators = [HeatmapGenerator(r, self.num_joints, sigma) for r in self.output_sizes]
        self.joints_generators = [JointsGenerator(max_num_people, self.num_joints, r, tag_per_joint)
                                  for r in self.output_sizes]

    def __len__(self):
        return len(self.image_ids)

    def get_mask(self, anns, info):
        """True where the loss counts: False on crowd regions and on persons with 0 keypoints
        (where the annotation has a segmentation; CrowdPose has none, so all True)."""
        h, w = int(info["height"]), int(info["width"])
        m = np.zeros((h, w), np.float32)
        for a in anns:
            seg = a.get("segmentation")
            if not seg or not (a["iscrowd"] or a["num_keypoints"] == 0):
                continue
            from pycocotools import mask as mask_utils  # only datasets with segmentations need it
            try:
                rles = mask_utils.frPyObjects(seg, h, w)
            except Exception as e:  # noqa: BLE001 - pycocotools raises bare Exceptions
                raise AnnotationError(f"{self.ann_file}: annotation id {a.get('id')}: bad "
                                      f"segmentation ({e})") from None
            with warnings.catch_warnings():  # pycocotools' numpy-2 copy-keyword deprecation notice
                warnings.simplefilter("ignore", DeprecationWarning)
                for rle in rles if isinstance(rles, list) else [rles]:
                    m += mask_utils.decode(rle).astype(np.float32)
        return (m < 0.5).astype(np.float32)

    def get_joints(self, anns):
        nj = self.info.num_joints
        joints = np.zeros((len(anns), self.num_joints, 3), np.float64)
        for i, a in enumerate(anns):
            joints[i, :nj] = np.asarray(a["keypoints"], np.float64).reshape(nj, 3)
            if self.with_center:
                vis = joints[i, :nj, 2] > 0
                if vis.any():
                    joints[i, -1, :2] = joints[i, :nj, :2].sum(axis=0) / vis.sum()
                    joints[i, -1, 2] = 1
        return joints

    def __getitem__(self, index):
        image_id = self.image_ids[index]
        image = self.base.read_image_rgb(image_id)
        anns = self.base.person_annotations(image_id)
        info = self.base.image_info(image_id)
        if image.shape[:2] != (int(info["height"]), int(info["width"])):
            warnings.warn(f"{self.base.image_path(image_id)}: image is {image.shape[1]}x{image.shape[0]} "
                          f"but {self.ann_file} says {info['width']}x{info['height']}")
        # as upstream: the mask uses every annotation (crowd regions), the joints only kept persons
        mask = self.get_mask(self.base.annotations(image_id), info)
        if mask.shape != image.shape[:2]:
            mask = cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
        joints = self.get_joints(anns)
        masks = [mask.copy() for _ in self.output_sizes]
        joints_list = [joints.copy() for _ in self.output_sizes]
        if self.augment is not None:
            image, masks, joints_list = self.augment(image, masks, joints_list, self.rng_for(index))
        heatmaps, tag_joints = [], []
        for k in range(len(self.output_sizes)):
            heatmaps.append(torch.from_numpy(self.heatmap_generators[k](joints_list[k])))
            tag_joints.append(torch.from_numpy(self.joints_generators[k](joints_list[k])))
            masks[k] = torch.from_numpy(np.ascontiguousarray(masks[k], dtype=np.float32))
        return to_normalized_tensor(image), heatmaps, masks, tag_joints


class TopDownDataset(_SeededDataset):
    """Person-box crops for top-down models (HRNet / HRFormer).

    Train: (image [3, h, w], target [J, hh, hw], target_weight [J, 1], meta dict).
    Test:  (image [3, h, w], meta dict) for every person box (GT boxes, or the detections in
    `bbox_file` with score > image_thre).
    """

    def __init__(self, base, is_train, image_size, heatmap_size, sigma=2, flip=True,
                 scale_factor=0.35, rot_factor=45, prob_half_body=0.0, num_joints_half_body=8,
                 color_rgb=True, padding=1.25, bbox_file="", use_gt_bbox=True, image_thre=0.0,
                 seed=0):
        self.base = base
        self.info = base.info
        self.name = base.name
        self.ann_file = base.ann_file
        self.image_ids = base.image_ids
        self.is_train = is_train
        self.image_size = [int(v) for v in image_size]  # (w, h)
        self.heatmap_size = [int(v) for v in heatmap_size]
        self.aspect_ratio = self.image_size[0] / self.image_size[1]
        self.sigma = sigma
        self.flip = bool(flip)
        self.scale_factor, self.rot_factor = scale_factor, rot_factor
        self.prob_half_body, self.num_joints_half_body = prob_half_body, num_joints_half_body
        self.color_rgb = color_rgb
        self.padding = padding
        self.seed = seed
        self.num_joints = self.info.num_joints
        self.upper_body = UPPER_BODY[self.name]
        if is_train:
            _require_training_persons(base, [i for i in base.image_ids if base.annotations(i)])
        if is_train or use_gt_bbox or not bbox_file:
            self.boxes = self._gt_boxes()
        else:
            self.boxes = self._detection_boxes(bbox_file, image_thre)

    def _gt_boxes(self):
        entries = []
        for image_id in self.image_ids:
            info = self.base.image_info(image_id)
            w_img, h_img = info["width"], info["height"]
            for a in self.base.annotations(image_id):
                if a.get("category_id", 1) != self.base.category_id:
                    continue
                kps = np.asarray(a["keypoints"], np.float32).reshape(-1, 3)
                if kps[:, 2].max() == 0:  # as upstream: persons without keypoints give no box
                    continue
                if "bbox" not in a:  # the crop comes from the box: a labelled person must have one
                    raise AnnotationError(f"{self.ann_file}: annotation id {a['id']} (image id {image_id}): "
                                          f"missing 'bbox' (top-down crops are cut from the person box)")
                x, y, w, h = a["bbox"]
                x1, y1 = max(0.0, x), max(0.0, y)
                x2, y2 = min(w_img - 1.0, x1 + max(0.0, w - 1)), min(h_img - 1.0, y1 + max(0.0, h - 1))
                if x2 < x1 or y2 < y1 or w * h <= 0:
                    continue
                entries.append({"image_id": image_id, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": 1.0,
                                "joints": kps[:, :2].copy(), "joints_vis": (kps[:, 2] > 0).astype(np.float32),
                                "ann_id": a.get("id")})
        return entries

    def _detection_boxes(self, bbox_file, image_thre):
        if not os.path.isfile(bbox_file):
            raise MissingInputError(f"person detection file (TEST.COCO_BBOX_FILE) not found: {bbox_file} "
                                    f"(see {DATA_GUIDE}, or set TEST.USE_GT_BBOX True)")
        try:
            with open(bbox_file) as f:
                dets = json.load(f)
        except json.JSONDecodeError as e:
            raise AnnotationError(f"{bbox_file}: not valid JSON ({e})") from None
        if not isinstance(dets, list):
            raise AnnotationError(f"{bbox_file}: expected a list of detection records")
        entries = []
        known = set(self.image_ids)
        for i, d in enumerate(dets):
            if not isinstance(d, dict) or "bbox" not in d or "image_id" not in d:
                raise AnnotationError(f"{bbox_file}: entry {i} lacks 'image_id' or 'bbox'")
            if d.get("category_id", 1) != 1 or d.get("score", 1.0) <= image_thre:
                continue
            if d["image_id"] not in known:
                raise AnnotationError(f"{bbox_file}: entry {i}: image_id {d['image_id']} is not in {self.ann_file}")
            entries.append({"image_id": d["image_id"], "bbox": list(d["bbox"]), "score": float(d.get("score", 1.0)),
                            "joints": np.zeros((self.num_joints, 2), np.float32),
                            "joints_vis": np.zeros(self.num_joints, np.float32), "ann_id": None})
        return entries

    def __len__(self):
        return len(self.boxes)

    def __getitem__(self, index):
        entry = self.boxes[index]
        image = self.base.read_image(entry["image_id"])
        if self.color_rgb:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        joints = entry["joints"].copy()
        vis = entry["joints_vis"].copy()
        center, scale = box_to_center_scale(entry["bbox"], self.aspect_ratio, self.padding)
        rot, flipped = 0.0, False
        if self.is_train:
            rng = self.rng_for(index)
            if vis.sum() > self.num_joints_half_body and rng.random() < self.prob_half_body:
                half = half_body_center_scale(joints, vis, self.upper_body, self.aspect_ratio, rng)
                if half is not None:
                    center, scale = half
            sf, rf = self.scale_factor, self.rot_factor
            scale = scale * np.clip(rng.standard_normal() * sf + 1, 1 - sf, 1 + sf)
            rot = float(np.clip(rng.standard_normal() * rf, -2 * rf, 2 * rf)) if rng.random() <= 0.6 else 0.0
            if self.flip and rng.random() <= 0.5:
                image = image[:, ::-1]
                joints, vis = flip_joints(joints, vis, image.shape[1], self.info.flip_index)
                center = center.copy()
                center[0] = image.shape[1] - center[0] - 1
                flipped = True
        trans = get_affine_transform(center, scale, rot, self.image_size)
        crop = cv2.warpAffine(np.ascontiguousarray(image), trans, tuple(self.image_size), flags=cv2.INTER_LINEAR)
        meta = {"image_id": entry["image_id"], "center": center.astype(np.float32),
                "scale": np.asarray(scale, np.float32), "rotation": rot, "score": entry["score"],
                "bbox": np.asarray(entry["bbox"], np.float32), "flipped": flipped, "index": index}
        if not self.is_train:
            return to_normalized_tensor(crop), meta
        moved = joints.copy()
        on = vis > 0
        moved[on] = joints[on] @ trans[:, :2].T + trans[:, 2]
        target, weight = topdown_gaussian_target(moved, vis, self.image_size, self.heatmap_size, self.sigma)
        meta.update(joints=moved.astype(np.float32), joints_vis=vis.astype(np.float32))
        return to_normalized_tensor(crop), torch.from_numpy(target), torch.from_numpy(weight), meta
