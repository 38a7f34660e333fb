"""Pure-PyTorch (and numpy) references of every higherpose operator.

They are written for clarity, not speed, straight from the op contracts in DESIGN.md and the
upstream descriptions; the tests hold the compiled kernels to them.
"""
from .peaks import heatmap_peaks
from .group import ae_group, default_joint_order  # noqa: F401
from .window_attention import window_attention

__all__ = ["heatmap_peaks", "window_attention"]
