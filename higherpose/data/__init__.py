"""Datasets (CrowdPose, COCO, OCHuman, synthetic crowds), augmentation and training targets."""
from .annotations import AnnotationError, KeypointAnnotations
from .build import build_dataset, build_test_dataset, is_top_down
from .datasets import BottomUpDataset, KeypointDataset, TopDownDataset, dataset_paths
from .info import DatasetInfo, canonical_name, dataset_info
from .targets import HeatmapGenerator, JointsGenerator, topdown_gaussian_target

__all__ = [
    "AnnotationError", "KeypointAnnotations", "build_dataset", "build_test_dataset", "is_top_down",
    "BottomUpDataset", "KeypointDataset", "TopDownDataset", "dataset_paths", "DatasetInfo",
    "canonical_name", "dataset_info", "HeatmapGenerator", "JointsGenerator", "topdown_gaussian_target",
]
