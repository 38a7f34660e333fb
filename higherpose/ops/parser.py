"""`HeatmapParser`: upstream HigherHRNet's parser interface, backed by the compiled ae_group op.

A drop-in for code written against upstream's `lib/core/group.py`:

    parser = HeatmapParser(cfg)
    ans, scores = parser.parse(det, tag, adjust=True, refine=True)

The config is read duck-typed (any object with upstream's field names: a yacs CfgNode, a
namespace), so importing this module imports no config code.
"""
import numpy as np

from .group import ae_group
from .grouping_settings import GroupingSettings


class HeatmapParser:
    """Upstream's HeatmapParser settings and `parse`, computed by :func:`higherpose.ops.ae_group`.

    The settings come from `GroupingSettings.from_config` (the rule the bottom-up pipeline uses
    too), kept in ``self.settings``; upstream's attribute names are read-only views of it. As
    upstream, ``num_joints`` is the number of parsed joints: with WITH_CENTER and IGNORE_CENTER
    the centre (last joint) is not parsed, and `parse` takes the maps with or without it; with
    WITH_CENTER and not IGNORE_CENTER the centre is parsed and visited first.
    """

    def __init__(self, cfg):
        self.settings = GroupingSettings.from_config(cfg)

    num_joints = property(lambda self: self.settings.parsed_joints)
    joint_order = property(lambda self: list(self.settings.joint_order))
    max_num_people = property(lambda self: self.settings.max_people)
    detection_threshold = property(lambda self: self.settings.detection_threshold)
    tag_threshold = property(lambda self: self.settings.tag_threshold)
    use_detection_val = property(lambda self: self.settings.use_detection_val)
    ignore_too_much = property(lambda self: self.settings.ignore_too_much)
    tag_per_joint = property(lambda self: self.settings.tag_per_joint)
    nms_kernel = property(lambda self: self.settings.nms_kernel)

    def parse(self, det, tag, adjust=True, refine=True):
        """Group one batch. det: ``[N, J, H, W]``; tag: ``[N, J, H, W, T]`` (or ``[N, J, H, W]``
        for one tag map; J = 1 when MODEL.TAG_PER_JOINT is off). J = DATASET.NUM_JOINTS; a
        centre that is not parsed may be left in (it is ignored, as upstream) or already cut off.

        Returns ``(ans, scores)`` in upstream's layout: ``ans`` is a list with one float32 numpy
        array ``(P, J, 3 + T)`` per image (x, y, value, tags; an image without persons gives an
        array of shape ``(0,)``); ``scores`` is the list of person scores (np.float32) of image 0,
        as upstream returns. Unlike upstream, which refines (and returns) only image 0 when
        refine is on, every image is refined and returned; upstream's test batch size is 1.
        """
        if tag.dim() == 4:
            tag = tag.unsqueeze(-1)
        det, tag = self.settings.parsed_maps(det, tag)
        if not self.tag_per_joint and tag.shape[1] == 1 and det.shape[1] > 1:
            tag = tag.expand(-1, det.shape[1], -1, -1, -1)
        poses, scores, counts = ae_group(det, tag, **self.settings.op_kwargs(adjust=adjust, refine=refine))
        poses, scores, counts = poses.cpu().numpy(), scores.cpu().numpy(), counts.cpu().tolist()
        ans = [poses[i, :c].copy() if c else np.zeros((0,), np.float32) for i, c in enumerate(counts)]
        image0 = [np.float32(s) for s in scores[0, :counts[0]]] if counts else []
        return ans, image0


__all__ = ["HeatmapParser"]
