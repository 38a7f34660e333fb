"""Training losses: masked heatmap MSE, associative embedding, top-down joints MSE."""
from .ae import AELoss
from .factory import MultiLossFactory, build_loss
from .heatmap import HeatmapLoss, JointsMSELoss

__all__ = ["AELoss", "HeatmapLoss", "JointsMSELoss", "MultiLossFactory", "build_loss"]
