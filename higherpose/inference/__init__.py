"""Inference pipelines: bottom-up (flip, multi-scale, grouping) and top-down (boxes, flip, OKS-NMS)."""
from .bottom_up import BottomUpInference, BottomUpSettings, default_joint_order
from .transforms import affine_matrix, box_to_center_scale, multi_scale_size, to_image_coords

__all__ = ["BottomUpInference", "BottomUpSettings", "default_joint_order", "affine_matrix", "box_to_center_scale",
           "multi_scale_size", "to_image_coords"]
