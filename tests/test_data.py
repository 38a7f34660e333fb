"""Datasets, augmentation and targets.

Targets are compared with independent dense re-implementations of the upstream rules; samples
are checked against joint positions computed by hand from the annotations (identity-like
augmentation), and against the joint-coloured markers the synthetic renderer paints.
"""
import json
import math
import os
import re

import cv2
import numpy as np
import pytest
import torch

from higherpose.config import get_default_config
from higherpose.data import (AnnotationError, BottomUpDataset, HeatmapGenerator, JointsGenerator, KeypointDataset,
                             build_dataset, dataset_info, topdown_gaussian_target)
from higherpose.data.synthetic import MARKER_RGB, generate
from higherpose.data.transforms import IMAGENET_MEAN, IMAGENET_STD, flip_joints, get_affine_transform


# ----------------------------------------------------------------------------- dataset facts

def test_dataset_info_crowdpose_and_coco():
    cp = dataset_info("crowdpose")
    assert cp.num_joints == 14 and cp["num_joints"] == 14
    names = cp.joint_names
    edges = {frozenset((names[a], names[b])) for a, b in cp.skeleton}
    expected = [("head", "neck"), ("neck", "left_shoulder"), ("neck", "right_shoulder"),
                ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_hip"),
                ("right_shoulder", "right_hip"), ("left_hip", "right_hip"), ("left_shoulder", "left_elbow"),
                ("left_elbow", "left_wrist"), ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
                ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"),
                ("right_knee", "right_ankle")]
    assert edges == {frozenset(e) for e in expected}
    coco = dataset_info("coco_kpt")
    assert coco.num_joints == 17 and len(coco.skeleton) == 19
    assert all(0 <= a < 17 and 0 <= b < 17 for a, b in coco.skeleton)
    assert dataset_info("ochuman").joint_names == coco.joint_names
    for info in (cp, coco):
        for j, f in enumerate(info.flip_index):
            assert info.flip_index[f] == j
            a, b = info.joint_names[j], info.joint_names[f]
            assert a.replace("left", "X").replace("right", "X") == b.replace("left", "X").replace("right", "X")
            assert (a == b) == ("left" not in a and "right" not in a)
        assert len(info.sigmas) == info.num_joints
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset_info("mpii")


# ----------------------------------------------------------------------------- targets

def dense_heatmap_reference(joints, res, num_joints, sigma):
    """Every pixel, every joint: exp(−d²/2σ²) within ±(3σ+1) of the truncated joint, max."""
    yy, xx = np.mgrid[0:res, 0:res]
    out = np.zeros((num_joints, res, res))
    for person in joints:
        for j, (x, y, v) in enumerate(person[:, :3]):
            xi, yi = int(x), int(y)
            if v <= 0 or not (0 <= xi < res and 0 <= yi < res):
                continue
            g = np.exp(-((xx - xi) ** 2 + (yy - yi) ** 2) / (2 * sigma ** 2))
            g[(np.abs(xx - xi) > 3 * sigma + 1) | (np.abs(yy - yi) > 3 * sigma + 1)] = 0
            out[j] = np.maximum(out[j], g)
    return out


@pytest.mark.parametrize("sigma", [1, 2, 3])
def test_heatmap_generator_matches_dense_reference(sigma):
    rng = np.random.default_rng(sigma)
    res, nj = 32, 4
    joints = np.zeros((5, nj, 3))
    joints[..., :2] = rng.uniform(-6, res + 6, (5, nj, 2))
    joints[..., 2] = rng.integers(0, 3, (5, nj))
    joints[0, 0] = (-0.5, 3.2, 2)     # truncates to 0: drawn, as upstream
    joints[0, 1] = (res - 0.01, 0, 1)  # last column
    joints[1, 0] = (5.0, 5.0, 2)      # two people close together on the same joint
    joints[2, 0] = (7.0, 6.0, 2)
    hm = HeatmapGenerator(res, nj, sigma)(joints)
    np.testing.assert_allclose(hm, dense_heatmap_reference(joints, res, nj, sigma), atol=1e-6)
    assert hm.dtype == np.float32 and hm[0, 3, 0] == pytest.approx(1.0)


def test_heatmap_generator_default_sigma():
    assert HeatmapGenerator(128, 3).sigma == 2.0


def test_joints_generator_packs_visible_joints():
    joints = np.array([[[1.7, 2.2, 2], [40, 1, 2], [3, 3, 0]],
                       [[0, 0, 1], [5.9, 7.1, 1], [-1, 2, 2]]], np.float64)
    out = JointsGenerator(4, 3, 8)(joints)
    assert out.shape == (4, 3, 2) and out.dtype == np.int64
    assert out[0].tolist() == [[0 * 64 + 2 * 8 + 1, 1], [0, 0], [0, 0]]
    assert out[1].tolist() == [[0, 1], [1 * 64 + 7 * 8 + 5, 1], [0, 0]]
    assert not out[2:].any()
    no_tpj = JointsGenerator(4, 3, 8, tag_per_joint=False)(joints)
    assert no_tpj[1, 1].tolist() == [7 * 8 + 5, 1]
    with pytest.warns(UserWarning, match="MAX_NUM_PEOPLE"):
        assert JointsGenerator(1, 3, 8)(joints).shape == (1, 3, 2)


def test_topdown_target_peaks_and_weights():
    joints = np.array([[10.0, 20.0], [-40.0, 5.0], [100.0, 100.0]])
    target, weight = topdown_gaussian_target(joints, [1, 1, 0], (48, 64), (12, 16), sigma=2)
    assert target.shape == (3, 16, 12) and weight.tolist() == [[1.0], [0.0], [0.0]]
    y, x = np.unravel_index(target[0].argmax(), target[0].shape)
    assert (x, y) == (int(10 / 4 + 0.5), int(20 / 4 + 0.5)) and target[0, y, x] == 1.0
    assert not target[1:].any()


# ----------------------------------------------------------------------------- bottom-up samples

@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic_data"))
    generate(root, num_train=6, num_test=2, image_size=128, seed=11, image_format="png", max_people=4)
    return root


def _cfg(root, input_size=128, outputs=(32, 64)):
    cfg = get_default_config()
    cfg.DATASET.ROOT = root
    cfg.DATASET.DATASET = "crowd_pose_kpt"
    cfg.DATASET.DATASET_TEST = "crowd_pose"
    cfg.DATASET.TRAIN = "train"
    cfg.DATASET.TEST = "test"
    cfg.DATASET.NUM_JOINTS = 14
    cfg.MODEL.NUM_JOINTS = 14
    cfg.DATASET.INPUT_SIZE = input_size
    cfg.DATASET.OUTPUT_SIZE = list(outputs)
    cfg.DATASET.SIGMA = 2
    cfg.DATASET.MAX_SCALE = 1.5
    return cfg


def _no_random_geometry(cfg, flip):
    cfg.DATASET.MAX_ROTATION = 0
    cfg.DATASET.MIN_SCALE = 1.0
    cfg.DATASET.MAX_SCALE = 1.0
    cfg.DATASET.MAX_TRANSLATE = 0
    cfg.DATASET.FLIP = flip
    return cfg


def _denormalize(img):
    x = img.numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(np.round(x * 255), 0, 255).astype(np.int64)


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_bottom_up_targets_on_annotated_joints(synthetic_root, flip):
    """Square 128² images, input 128, no rotation/scale/translation: output coordinate is
    x·R/128 (mirrored to R−1−x·R/128 and re-indexed by the flip index when flipped)."""
    ds = build_dataset(_no_random_geometry(_cfg(synthetic_root), flip), is_train=True)
    assert isinstance(ds, BottomUpDataset)
    flip_index = dataset_info("crowdpose").flip_index
    checked = 0
    for index in range(len(ds)):
        image, heatmaps, masks, joints = ds[index]
        anns = ds.base.person_annotations(ds.image_ids[index])
        pixels = _denormalize(image)
        for k, res in enumerate((32, 64)):
            hm = heatmaps[k].numpy()
            assert masks[k].shape == (res, res) and bool((masks[k] == 1).all())
            for a in anns:
                kp = np.asarray(a["keypoints"], float).reshape(14, 3)
                for j, (x, y, v) in enumerate(kp):
                    if v == 0:
                        continue
                    ox, oy = x * res / 128, y * res / 128
                    jj = j
                    if flip:
                        ox, jj = res - ox - 1, flip_index[j]
                    if not (0 <= int(ox) < res and 0 <= int(oy) < res):
                        continue
                    assert hm[jj, int(oy), int(ox)] == pytest.approx(1.0), (index, j)
                    checked += 1
            # the AE index list names exactly the joints with a peak of 1
            for person in joints[k].numpy():
                for flat, vis in person:
                    if vis:
                        jj, rest = divmod(int(flat), res * res)
                        assert hm[jj, rest // res, rest % res] == pytest.approx(1.0)
        # image and targets agree: the input pixel under each visible joint has its marker colour
        for a in anns:
            kp = np.asarray(a["keypoints"], float).reshape(14, 3)
            for j, (x, y, v) in enumerate(kp):
                if v == 2:
                    px = 127 - int(x) if flip else int(x)
                    assert np.abs(pixels[int(y), px] - MARKER_RGB[j]).max() <= 2
    assert checked > 50


def test_bottom_up_flip_mirrors_image_and_masks(synthetic_root):
    plain = build_dataset(_no_random_geometry(_cfg(synthetic_root), 0.0), is_train=True)[1]
    flipped = build_dataset(_no_random_geometry(_cfg(synthetic_root), 1.0), is_train=True)[1]
    torch.testing.assert_close(flipped[0], plain[0].flip(-1))
    flip_index = dataset_info("crowdpose").flip_index
    for k in range(2):
        # heatmaps are mirrored per pixel except for the one-pixel upstream offset (x → R−1−x of
        # the continuous coordinate, then truncation): compare the joint sets instead
        assert torch.equal(flipped[2][k], plain[2][k].flip(-1))
        assert torch.allclose(flipped[1][k].sum(dim=(1, 2)), plain[1][k][flip_index].sum(dim=(1, 2)), atol=1.0)


def test_bottom_up_sample_types_and_determinism(synthetic_root):
    cfg = _cfg(synthetic_root)
    ds = build_dataset(cfg, is_train=True)
    image, heatmaps, masks, joints = ds[2]
    assert image.dtype == torch.float32 and image.shape == (3, 128, 128)
    assert [h.shape for h in heatmaps] == [(14, 32, 32), (14, 64, 64)]
    assert [m.dtype for m in masks] == [torch.float32] * 2
    assert [j.shape for j in joints] == [(30, 14, 2)] * 2 and joints[0].dtype == torch.int64
    again = build_dataset(cfg, is_train=True)[2]
    assert torch.equal(again[0], image) and all(torch.equal(a, b) for a, b in zip(again[1], heatmaps))
    ds.set_epoch(1)
    assert not torch.equal(ds[2][0], image)  # another epoch, other augmentation
    ds.set_epoch(0)
    ds.seed = 5
    assert not torch.equal(ds[2][0], image)


def test_dataloader_workers_do_not_change_samples(synthetic_root):
    ds = build_dataset(_cfg(synthetic_root), is_train=True)
    ds.set_epoch(3)
    loader0 = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0)
    loader2 = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    for a, b in zip(loader0, loader2):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1][1], b[1][1]) and torch.equal(a[3][0], b[3][0])


def test_test_dataset_access(synthetic_root):
    ds = build_dataset(_cfg(synthetic_root), is_train=False)
    assert ds.name == "crowdpose" and len(ds) == 2 and ds.info.num_joints == 14
    assert ds.ann_file.endswith(os.path.join("json", "crowdpose_test.json"))
    image = ds.read_image(ds.image_ids[0])
    assert image.dtype == np.uint8 and image.shape == (128, 128, 3)
    rgb, anns = ds[0]
    assert np.array_equal(rgb, image[..., ::-1]) and anns == ds.annotations(ds.image_ids[0])


# ----------------------------------------------------------------------------- COCO-style masks

def _write_coco(tmp_path, anns, images=None, name="person_keypoints_tiny.json", write_image=True):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "images" / "tiny").mkdir(parents=True, exist_ok=True)
    images = images or [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}]
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": dataset_info("coco").joint_names}]}
    (root / "annotations" / name).write_text(json.dumps(data))
    if write_image:
        cv2.imwrite(str(root / "images" / "tiny" / "a.png"), np.full((64, 64, 3), 128, np.uint8))
    return str(root)


def _coco_person(ann_id, points, iscrowd=0, segmentation=None):
    kps = [0] * 51
    for j, (x, y) in points.items():
        kps[3 * j:3 * j + 3] = [x, y, 2]
    ann = {"id": ann_id, "image_id": 1, "category_id": 1, "iscrowd": iscrowd, "keypoints": kps,
           "num_keypoints": len(points), "bbox": [0, 0, 10, 10]}
    if segmentation is not None:
        ann["segmentation"] = segmentation
    return ann


def test_coco_masks_crowd_and_unlabelled_persons(tmp_path):
    crowd = _coco_person(1, {}, iscrowd=1, segmentation=[[0, 0, 31, 0, 31, 31, 0, 31]])
    nokp = _coco_person(2, {}, segmentation=[[40, 40, 63, 40, 63, 63, 40, 63]])
    person = _coco_person(3, {0: (20, 50), 5: (10, 45)})
    root = _write_coco(tmp_path, [crowd, nokp, person])
    cfg = _cfg(root, input_size=64, outputs=(64,))
    cfg.DATASET.DATASET, cfg.DATASET.TRAIN = "coco_kpt", "tiny"
    cfg.DATASET.NUM_JOINTS = cfg.MODEL.NUM_JOINTS = 17
    cfg.LOSS.NUM_STAGES = 1
    ds = build_dataset(_no_random_geometry(cfg, 0.0), is_train=True)
    image, heatmaps, masks, joints = ds[0]
    m = masks[0].numpy()
    assert m[5, 5] == 0 and m[50, 50] == 0 and m[50, 20] == 1 and m[5, 50] == 1
    assert 0.3 < 1 - m.mean() < 0.5
    assert heatmaps[0][0, 50, 20] == 1.0 and heatmaps[0][5, 45, 10] == 1.0
    # two kept persons (the crowd annotation has no keypoints: dropped), one with joints
    assert int(joints[0][:, :, 1].sum()) == 2


# ----------------------------------------------------------------------------- top-down samples

def test_topdown_sample_places_targets_on_joints(synthetic_root):
    cfg = _cfg(synthetic_root)
    cfg.MODEL.NAME = "pose_hrnet"
    cfg.DATASET.DATASET = "crowdpose"
    cfg.DATASET.TRAIN_SET = "train"
    cfg.DATASET.SCALE_FACTOR = 0.0
    cfg.DATASET.ROT_FACTOR = 0
    cfg.DATASET.FLIP = 0
    cfg.MODEL.IMAGE_SIZE = [48, 64]
    cfg.MODEL.HEATMAP_SIZE = [12, 16]
    ds = build_dataset(cfg, is_train=True)
    checked = 0
    for index in range(min(len(ds), 8)):
        image, target, weight, meta = ds[index]
        assert image.shape == (3, 64, 48) and target.shape == (14, 16, 12) and weight.shape == (14, 1)
        entry = ds.boxes[index]
        k = 48 / (meta["scale"][0] * 200)  # similarity: box centre -> crop centre, uniform scale
        for j in range(14):
            if not entry["joints_vis"][j]:
                assert weight[j, 0] == 0
                continue
            cx, cy = (entry["joints"][j] - meta["center"]) * k + np.array([24, 32])
            hx, hy = int(cx / 4 + 0.5), int(cy / 4 + 0.5)
            if 0 <= hx < 12 and 0 <= hy < 16:
                assert weight[j, 0] == 1 and target[j, hy, hx] == pytest.approx(1.0)
                checked += 1
    assert checked > 20


def test_affine_transform_and_flip_helpers():
    m = get_affine_transform(np.array([50.0, 60.0]), np.array([0.5, 0.5]), 90, (100, 100))
    # 100 px box -> 100 px output, rotated 90°: centre fixed, (50, 10) maps onto the centre row
    np.testing.assert_allclose(m @ [50, 60, 1], [50, 50], atol=1e-4)
    inv = get_affine_transform(np.array([50.0, 60.0]), np.array([0.5, 0.5]), 90, (100, 100), inv=True)
    p = np.array([13.0, 77.0])
    np.testing.assert_allclose(inv @ np.append(m @ np.append(p, 1), 1), p, atol=1e-4)
    assert abs(np.linalg.det(m[:, :2]) - 1) < 1e-5
    joints = np.arange(28, dtype=float).reshape(14, 2)
    vis = np.arange(14, dtype=float)
    fj, fv = flip_joints(joints, vis, 100, dataset_info("crowdpose").flip_index)
    assert fj[0, 0] == 100 - joints[1, 0] - 1 and fv[0] == 1 and fv[12] == 12


# ----------------------------------------------------------------------------- the real CrowdPose val file

# Facts of the full crowdpose_val.json (CrowdPose API), checked when HIGHERPOSE_CROWDPOSE_VAL names it.
FULL_FILE_COUNTS = {"images": 2000, "persons": 8527, "iscrowd": 106, "disagree": 7543,
                    "zero_but_labelled": 954, "training_persons": 8421, "easy_medium_hard": [411, 1240, 349]}


def raw_crowdpose_counts(path):
    """The counts the loader test checks, straight from the JSON (plain json + numpy)."""
    with open(path) as f:
        data = json.load(f)
    anns = data["annotations"]
    flags = np.array([a["keypoints"][2::3] for a in anns]).reshape(-1, 14)
    labelled = (flags > 0).sum(1)
    num = np.array([a["num_keypoints"] for a in anns])
    crowd = np.array([a["iscrowd"] for a in anns], bool)
    ci = np.array([im["crowdIndex"] for im in data["images"]])
    return {"images": len(data["images"]), "persons": len(anns), "iscrowd": int(crowd.sum()),
            "disagree": int((num != labelled).sum()), "zero_but_labelled": int(((num == 0) & (labelled > 0)).sum()),
            "training_persons": int((~crowd | (num > 0)).sum()),
            "easy_medium_hard": [int((ci < 0.2).sum()), int(((ci >= 0.2) & (ci < 0.8)).sum()), int((ci >= 0.8).sum())]}


def check_crowdpose_loader(path):
    """Read the file with the loader and return the same counts as raw_crowdpose_counts, checking
    the file's other quirks on the way."""
    ds = KeypointDataset("crowdpose", "/nonexistent", "val", ann_file=path)
    anns = [a for i in ds.image_ids for a in ds.annotations(i)]
    assert not any("area" in a for a in anns)
    flags = [np.asarray(a["keypoints"]).reshape(14, 3)[:, 2] for a in anns]
    # the file's skeleton is COCO's 17-joint one; ours is valid for 14 joints
    file_skeleton = ds.db.category["skeleton"]
    assert max(max(e) for e in file_skeleton) > 14
    assert all(0 <= a < 14 and 0 <= b < 14 for a, b in ds.info.skeleton)
    first = ds.image_ids[0]
    with pytest.raises(FileNotFoundError, match=re.escape(ds.image_info(first)["file_name"])):
        ds.read_image(first)
    ci = np.array([ds.image_info(i)["crowdIndex"] for i in ds.image_ids])
    return {"images": len(ds), "persons": ds.db.num_persons, "iscrowd": sum(a["iscrowd"] for a in anns),
            "disagree": sum(1 for a, f in zip(anns, flags) if a["num_keypoints"] != int((f > 0).sum())),
            "zero_but_labelled": sum(1 for a, f in zip(anns, flags) if a["num_keypoints"] == 0 and (f > 0).any()),
            "training_persons": sum(len(ds.person_annotations(i)) for i in ds.image_ids),
            "easy_medium_hard": [int((ci < 0.2).sum()), int(((ci >= 0.2) & (ci < 0.8)).sum()), int((ci >= 0.8).sum())]}


def test_crowdpose_val_loader_and_quirks(crowdpose_val_path):
    """The committed subset: the loader agrees with the raw JSON, and every quirk is present."""
    ours = check_crowdpose_loader(crowdpose_val_path)
    raw = raw_crowdpose_counts(crowdpose_val_path)
    assert ours == raw
    assert raw["persons"] > raw["training_persons"] > 0  # iscrowd persons without points are dropped
    assert raw["iscrowd"] > 0 and raw["disagree"] > 0 and raw["zero_but_labelled"] > 0
    assert min(raw["easy_medium_hard"]) > 0


def test_crowdpose_val_full_file_counts(crowdpose_val_full):
    assert raw_crowdpose_counts(crowdpose_val_full) == FULL_FILE_COUNTS
    assert check_crowdpose_loader(crowdpose_val_full) == FULL_FILE_COUNTS


# ----------------------------------------------------------------------------- bad files

@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("images"), "'images'"),
    (lambda d: d["annotations"][0].update(keypoints=[1, 2, 2]), "3 values, expected 51"),
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(2, 3), "visibility"),
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(0, "x"), "non-numeric"),
    (lambda d: d["annotations"][0].update(image_id=99), "image_id 99"),
    (lambda d: d["annotations"][0].update(bbox=[0, 0, -5, 3]), "negative"),
    (lambda d: d["images"][0].update(width=0), "impossible width"),
    (lambda d: d["annotations"][0].update(num_keypoints=40), "num_keypoints"),
])
def test_bad_annotation_files_name_file_and_entry(tmp_path, mutate, message):
    root = _write_coco(tmp_path, [_coco_person(7, {0: (3, 4)})])
    path = os.path.join(root, "annotations", "person_keypoints_tiny.json")
    data = json.load(open(path))
    mutate(data)
    with open(path, "w") as f:
        json.dump(data, f)
    with pytest.raises(AnnotationError) as err:
        KeypointDataset("coco", root, "tiny")
    assert message in str(err.value) and "person_keypoints_tiny.json" in str(err.value)


def test_truncated_json_and_missing_files(tmp_path):
    root = _write_coco(tmp_path, [_coco_person(7, {0: (3, 4)})])
    path = os.path.join(root, "annotations", "person_keypoints_tiny.json")
    text = open(path).read()
    with open(path, "w") as f:
        f.write(text[:len(text) // 2])
    with pytest.raises(AnnotationError, match="not valid JSON"):
        KeypointDataset("coco", root, "tiny")
    with pytest.raises(FileNotFoundError, match="person_keypoints_other.json"):
        KeypointDataset("coco", root, "other")


def test_missing_and_unreadable_images(tmp_path):
    root = _write_coco(tmp_path, [_coco_person(7, {0: (3, 4)})], write_image=False)
    ds = KeypointDataset("coco", root, "tiny")
    with pytest.raises(FileNotFoundError, match=r"a\.png"):
        ds.read_image(1)
    with open(os.path.join(root, "images", "tiny", "a.png"), "wb") as f:
        f.write(b"not an image")
    with pytest.raises(OSError, match=r"cannot decode.*a\.png"):
        ds.read_image(1)


def test_topdown_test_boxes_from_gt_and_detection_file(synthetic_root, tmp_path):
    cfg = _cfg(synthetic_root)
    cfg.MODEL.NAME = "pose_hrt"
    cfg.DATASET.DATASET = "crowdpose"
    cfg.DATASET.TEST_SET = "test"
    cfg.MODEL.IMAGE_SIZE = [48, 64]
    cfg.MODEL.HEATMAP_SIZE = [12, 16]
    gt = build_dataset(cfg, is_train=False)
    n_gt = sum(len(gt.base.annotations(i)) for i in gt.image_ids)
    assert len(gt) == n_gt and gt.ann_file.endswith("crowdpose_test.json")
    image, meta = gt[0]
    assert image.shape == (3, 64, 48) and meta["image_id"] == gt.boxes[0]["image_id"]
    first = gt.image_ids[0]
    dets = [{"image_id": first, "category_id": 1, "bbox": [10, 10, 30, 60], "score": 0.9},
            {"image_id": first, "category_id": 1, "bbox": [50, 20, 20, 40], "score": 0.05},
            {"image_id": first, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.99}]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    cfg.TEST.USE_GT_BBOX = False
    cfg.TEST.COCO_BBOX_FILE = str(path)
    cfg.TEST.IMAGE_THRE = 0.1
    det = build_dataset(cfg, is_train=False)
    assert len(det) == 1 and det.boxes[0]["score"] == pytest.approx(0.9)
    np.testing.assert_allclose(det[0][1]["center"], [25, 40])
    path.write_text(json.dumps([{"image_id": 12345, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 1.0}]))
    with pytest.raises(AnnotationError, match="image_id 12345"):
        build_dataset(cfg, is_train=False)
    cfg.TEST.COCO_BBOX_FILE = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        build_dataset(cfg, is_train=False)


def test_half_body_center_scale():
    from higherpose.data.transforms import half_body_center_scale
    joints = np.zeros((14, 2))
    vis = np.zeros(14)
    upper = [0, 1, 2, 3, 4, 5, 12, 13]
    for j in upper:
        joints[j] = (10 + j, 20 + 2 * j)
        vis[j] = 1
    rng = np.random.default_rng(0)
    center, scale = half_body_center_scale(joints, vis, upper, 0.75, rng)
    pts = joints[upper]
    np.testing.assert_allclose(center, pts.mean(axis=0), rtol=1e-6)
    w, h = pts.max(axis=0) - pts.min(axis=0)
    h = max(h, w / 0.75)
    np.testing.assert_allclose(scale, [h * 0.75 / 200 * 1.5, h / 200 * 1.5], rtol=1e-5)
    # too few visible joints on either half: no half-body crop
    assert half_body_center_scale(joints, np.eye(14)[0], upper, 0.75, rng) is None
