"""Keypoint metrics (COCO, CrowdPose) with faster-coco-eval, results JSON and upstream tables."""
from .keypoint_eval import (COCO_SIGMAS, COCO_STAT_NAMES, CROWDPOSE_SIGMAS, CROWDPOSE_STAT_NAMES,
                            evaluate_keypoints, metric_style)
from .results import KEYPOINT_SCORE_FLOOR, person_records, write_results
from .runner import evaluate_bottom_up, timing_lines
from .tables import format_table, write_table

__all__ = ["evaluate_keypoints", "metric_style", "person_records", "write_results", "format_table",
           "write_table", "evaluate_bottom_up", "timing_lines", "CROWDPOSE_SIGMAS", "COCO_SIGMAS", "CROWDPOSE_STAT_NAMES", "COCO_STAT_NAMES",
           "KEYPOINT_SCORE_FLOOR"]
