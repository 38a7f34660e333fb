"""Drawing skeletons and heatmaps."""
from .draw import draw_poses, overlay_heatmap, person_colors

__all__ = ["draw_poses", "overlay_heatmap", "person_colors"]
