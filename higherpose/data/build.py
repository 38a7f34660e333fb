"""Datasets from a config, as upstream's `make_dataloader` / `make_test_dataloader` choose them.

Bottom-up: DATASET.DATASET (crowd_pose_kpt / coco_kpt / ochuman_kpt) with DATASET.TRAIN for
training, DATASET.DATASET_TEST with DATASET.TEST for testing. Top-down (MODEL.NAME pose_hrt /
pose_hrnet): DATASET.DATASET with DATASET.TRAIN_SET / DATASET.TEST_SET.

Synthetic crowds: when DATASET.SYNTHETIC.GENERATE is true (or DATASET.DATASET is 'synthetic')
and the annotation file is missing, the CrowdPose-format set is rendered into DATASET.ROOT first
(keys NUM_TRAIN, NUM_TEST, IMAGE_SIZE, SEED, LAYOUTS, MIN_PEOPLE, MAX_PEOPLE, MARKER_SCALE,
CLUTTER). LAYOUTS defaults to the packaged real CrowdPose layouts, as in higherpose-make-synthetic
and the quickstart; '' or 'none' renders sampled poses.
"""
import os

from .datasets import BottomUpDataset, KeypointDataset, TopDownDataset, dataset_paths

TOP_DOWN_MODELS = ("pose_hrt", "pose_hrnet")


def is_top_down(cfg):
    return cfg.MODEL.NAME in TOP_DOWN_MODELS


def _synthetic_settings(cfg):
    syn = cfg.DATASET.get("SYNTHETIC", None) or {}
    wanted = bool(syn.get("GENERATE", False)) or str(cfg.DATASET.DATASET).lower().startswith("synthetic")
    return wanted, syn


def ensure_synthetic(cfg, name, split):
    """Render the synthetic set into DATASET.ROOT if the config asks for it and it is absent."""
    wanted, syn = _synthetic_settings(cfg)
    if not wanted:
        return
    ann, _ = dataset_paths(name, cfg.DATASET.ROOT, split)
    if os.path.isfile(ann):
        return
    from .synthetic import PACKAGED_LAYOUTS, generate
    generate(cfg.DATASET.ROOT, num_train=int(syn.get("NUM_TRAIN", 64)), num_test=int(syn.get("NUM_TEST", 16)),
             image_size=int(syn.get("IMAGE_SIZE", 256)), seed=int(syn.get("SEED", 0)),
             layouts=syn.get("LAYOUTS", PACKAGED_LAYOUTS), min_people=int(syn.get("MIN_PEOPLE", 1)),
             max_people=int(syn.get("MAX_PEOPLE", 6)), marker_scale=float(syn.get("MARKER_SCALE", 1.0)),
             clutter=float(syn.get("CLUTTER", 1.0)))


def build_test_dataset(cfg):
    """The evaluation split as a KeypointDataset (bottom-up) or TopDownDataset (top-down)."""
    return build_dataset(cfg, is_train=False)


def build_dataset(cfg, is_train):
    d = cfg.DATASET
    if str(d.DATA_FORMAT).lower() == "zip":
        raise NotImplementedError("DATASET.DATA_FORMAT zip (images.zip@name) is not supported; unpack the "
                                  "images into <ROOT>/images and use DATA_FORMAT jpg")
    if is_top_down(cfg):
        split = d.TRAIN_SET if is_train else d.TEST_SET
        ensure_synthetic(cfg, d.DATASET, split)
        base = KeypointDataset(d.DATASET, d.ROOT, split)
        base.check_images()
        return TopDownDataset(
            base, is_train, cfg.MODEL.IMAGE_SIZE, cfg.MODEL.HEATMAP_SIZE, sigma=cfg.MODEL.SIGMA,
            flip=bool(d.FLIP), scale_factor=d.SCALE_FACTOR, rot_factor=d.ROT_FACTOR,
            prob_half_body=d.PROB_HALF_BODY, num_joints_half_body=d.NUM_JOINTS_HALF_BODY,
            color_rgb=d.COLOR_RGB, bbox_file=cfg.TEST.COCO_BBOX_FILE, use_gt_bbox=cfg.TEST.USE_GT_BBOX,
            image_thre=cfg.TEST.IMAGE_THRE, seed=cfg.get("SEED", 0))
    if not is_train:
        ensure_synthetic(cfg, d.DATASET_TEST, d.TEST)
        dataset = KeypointDataset(d.DATASET_TEST, d.ROOT, d.TEST, with_center=d.WITH_CENTER)
        dataset.check_images()
        return dataset
    if d.SCALE_AWARE_SIGMA:
        raise NotImplementedError("DATASET.SCALE_AWARE_SIGMA (per-person sigma) is not supported; "
                                  "the released HigherHRNet configs leave it False")
    ensure_synthetic(cfg, d.DATASET, d.TRAIN)
    base = KeypointDataset(d.DATASET, d.ROOT, d.TRAIN, with_center=d.WITH_CENTER)
    base.check_images()
    if base.num_joints != cfg.DATASET.NUM_JOINTS:
        raise ValueError(f"DATASET.NUM_JOINTS is {cfg.DATASET.NUM_JOINTS} but {base.name} has "
                         f"{base.num_joints} joints")
    return BottomUpDataset(
        base, d.INPUT_SIZE, d.OUTPUT_SIZE, d.MAX_NUM_PEOPLE, sigma=d.SIGMA, flip=d.FLIP,
        max_rotation=d.MAX_ROTATION, min_scale=d.MIN_SCALE, max_scale=d.MAX_SCALE,
        scale_type=d.SCALE_TYPE, max_translate=d.MAX_TRANSLATE, tag_per_joint=cfg.MODEL.TAG_PER_JOINT,
        seed=cfg.get("SEED", 0))
