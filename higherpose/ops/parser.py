"""`HeatmapParser`: upstream HigherHRNet's parser interface, backed by the compiled ae_group op.

A drop-in for code written against upstream's `lib/core/group.py`:

    parser = HeatmapParser(cfg)
    ans, scores = parser.parse(det, tag, adjust=True, refine=True)

The config is read duck-typed (any object with upstream's field names: a yacs CfgNode, a
namespace), so importing this module imports no config code.
"""
import numpy as np

from .group import ae_group, default_joint_order


def _get(node, name, default):
    return getattr(node, name, default) if node is not None else default


class HeatmapParser:
    """Upstream's HeatmapParser settings and `parse`, computed by :func:`higherpose.ops.ae_group`.

    Reads ``DATASET.NUM_JOINTS``, ``DATASET.MAX_NUM_PEOPLE``, ``DATASET.WITH_CENTER``,
    ``MODEL.TAG_PER_JOINT`` and ``TEST.{DETECTION_THRESHOLD, TAG_THRESHOLD, USE_DETECTION_VAL,
    IGNORE_TOO_MUCH, IGNORE_CENTER, NMS_KERNEL, NMS_PADDING}`` (upstream's defaults where absent).
    As upstream: with WITH_CENTER and IGNORE_CENTER the centre joint is not parsed (the caller
    passes the maps without it); with WITH_CENTER and not IGNORE_CENTER the centre (last joint)
    is visited first.
    """

    def __init__(self, cfg):
        dataset, test, model = _get(cfg, "DATASET", None), _get(cfg, "TEST", None), _get(cfg, "MODEL", None)
        num_joints = int(dataset.NUM_JOINTS)
        with_center = bool(_get(dataset, "WITH_CENTER", False))
        ignore_center = bool(_get(test, "IGNORE_CENTER", True))
        if with_center and ignore_center:
            num_joints -= 1
        self.num_joints = num_joints
        if with_center and not ignore_center:
            self.joint_order = [num_joints - 1] + default_joint_order(num_joints - 1)
        else:
            self.joint_order = default_joint_order(num_joints)
        self.max_num_people = int(dataset.MAX_NUM_PEOPLE)
        self.detection_threshold = float(_get(test, "DETECTION_THRESHOLD", 0.2))
        self.tag_threshold = float(_get(test, "TAG_THRESHOLD", 1.0))
        self.use_detection_val = bool(_get(test, "USE_DETECTION_VAL", True))
        self.ignore_too_much = bool(_get(test, "IGNORE_TOO_MUCH", False))
        self.tag_per_joint = bool(_get(model, "TAG_PER_JOINT", True))
        self.nms_kernel = int(_get(test, "NMS_KERNEL", 3))
        padding = int(_get(test, "NMS_PADDING", self.nms_kernel // 2))
        if self.nms_kernel % 2 == 0 or padding != self.nms_kernel // 2:
            raise ValueError(f"HeatmapParser: NMS_KERNEL {self.nms_kernel} with NMS_PADDING {padding} is not a "
                             "same-size max-pool (need an odd kernel and padding = kernel // 2)")

    def parse(self, det, tag, adjust=True, refine=True):
        """Group one batch. det: ``[N, J, H, W]``; tag: ``[N, J, H, W, T]`` (or ``[N, J, H, W]``
        for one tag map; J = 1 when MODEL.TAG_PER_JOINT is off).

        Returns ``(ans, scores)`` in upstream's layout: ``ans`` is a list with one float32 numpy
        array ``(P, J, 3 + T)`` per image (x, y, value, tags; an image without persons gives an
        array of shape ``(0,)``); ``scores`` is the list of person scores (np.float32) of image 0,
        as upstream returns. Unlike upstream, which refines (and returns) only image 0 when
        refine is on, every image is refined and returned; upstream's test batch size is 1.
        """
        if tag.dim() == 4:
            tag = tag.unsqueeze(-1)
        if not self.tag_per_joint and tag.shape[1] == 1 and det.shape[1] > 1:
            tag = tag.expand(-1, det.shape[1], -1, -1, -1)
        poses, scores, counts = ae_group(
            det, tag, joint_order=self.joint_order, nms_kernel=self.nms_kernel, max_people=self.max_num_people,
            detection_threshold=self.detection_threshold, tag_threshold=self.tag_threshold,
            use_detection_val=self.use_detection_val, ignore_too_much=self.ignore_too_much, adjust=adjust,
            refine=refine)
        poses, scores, counts = poses.cpu().numpy(), scores.cpu().numpy(), counts.cpu().tolist()
        ans = [poses[i, :c].copy() if c else np.zeros((0,), np.float32) for i, c in enumerate(counts)]
        image0 = [np.float32(s) for s in scores[0, :counts[0]]] if counts else []
        return ans, image0


__all__ = ["HeatmapParser"]
