"""Associative-embedding grouping (HigherHRNet's parser) as one compiled op over a batch."""
import torch

from ._args import as_bool, as_float, as_int, as_int_list
from ._library import load_library
from .peaks import heatmap_peaks
from .joint_order import COCO_JOINT_ORDER, default_joint_order  # noqa: F401

load_library()


def ae_group(heatmaps, tags, peaks=None, *, joint_order=None, nms_kernel=5, max_people=30,
             detection_threshold=0.1, tag_threshold=1.0, use_detection_val=True, ignore_too_much=False,
             adjust=True, refine=True):
    """Group heatmap peaks into persons by their associative-embedding tags (HigherHRNet's parser).

    Args:
        heatmaps: ``[N, J, H, W]`` floating tensor (CPU or CUDA; computed in float32).
        tags: ``[N, J, H, W, T]`` tensor of the same dtype and device (T tag maps, 2 with flip).
        peaks: the tuple ``(values, x, y, peak_tags)`` from :func:`heatmap_peaks`; computed from
            the maps with ``nms_kernel`` and ``k = max_people`` when None.
        joint_order: the order joint types are visited, a permutation of ``range(J)``; default
            :func:`default_joint_order` (upstream's COCO order truncated to J).
        nms_kernel: peak suppression kernel (upstream NMS_KERNEL), used only when peaks is None.
        max_people: persons taking part in matching (upstream MAX_NUM_PEOPLE); also the peak
            count k when peaks is None.
        detection_threshold, tag_threshold, use_detection_val, ignore_too_much: upstream's
            TEST.DETECTION_THRESHOLD, TAG_THRESHOLD, USE_DETECTION_VAL, IGNORE_TOO_MUCH.
        adjust: quarter-pixel adjust toward the larger neighbour, then +0.5 (TEST.ADJUST).
        refine: fill missing joints from the full maps (TEST.REFINE), on every image.

    Returns:
        ``(poses [N, P, J, 3 + T] float32, scores [N, P] float32, counts [N] int64)``: rows are
        (x, y, value, tags...) with zeros for missing joints; person ``p`` of image ``n`` exists
        iff ``p < counts[n]`` (the rest is zero padding); P = max(counts) is data-dependent and
        not capped at max_people (upstream keeps creating persons). Scores are the mean value
        over all J joints, taken after adjust and before refine.

    Semantics, tie-breaking and the documented deviations from upstream are those of
    :mod:`higherpose.ops.reference.group`. A peak above the detection threshold with a
    non-finite value or tag raises an error; NaN pixels of the maps never win in refine.
    """
    op = "ae_group"
    if joint_order is None:
        # Upstream's order for J joints; a map of the wrong rank is reported by the op's own check.
        joint_order = default_joint_order(heatmaps.shape[1]) if heatmaps.dim() == 4 else []
    max_people = as_int(max_people, op, "max_people")
    if peaks is None:
        # k = max_people; a max_people below 1 is reported by the op's own check, not as a bad k.
        try:
            peaks = heatmap_peaks(heatmaps, tags, kernel=nms_kernel, k=max(max_people, 1))
        except (RuntimeError, TypeError) as err:  # say which op the caller called
            raise type(err)(f"{op} (finding the peaks of the maps): {err}") from None
    values, x, y, peak_tags = peaks
    return torch.ops.higherpose.ae_group(
        heatmaps, tags, values, x, y, peak_tags, as_int_list(joint_order, op, "joint_order"),
        as_float(detection_threshold, op, "detection_threshold"), as_float(tag_threshold, op, "tag_threshold"),
        as_bool(use_detection_val, op, "use_detection_val"), as_bool(ignore_too_much, op, "ignore_too_much"),
        max_people, as_bool(adjust, op, "adjust"), as_bool(refine, op, "refine"))


def linear_sum_assignment(cost):
    """Minimum-cost rectangular assignment with ``scipy.optimize.linear_sum_assignment``'s
    interface and tie-breaking: ``(row_ind, col_ind)`` int64, row_ind ascending. It is the
    solver inside :func:`ae_group`. NaN / -inf entries or an infeasible matrix raise an error."""
    return torch.ops.higherpose.linear_sum_assignment(cost)


@torch.library.register_fake("higherpose::ae_group")
def _ae_group_fake(heatmaps, tags, values, x, y, peak_tags, joint_order, detection_threshold, tag_threshold,
                   use_detection_val, ignore_too_much, max_people, adjust, refine):
    # Shapes only: the full argument checks run in C++ (csrc/group/group_match.cpp) when the op runs.
    torch._check(heatmaps.dim() == 4 and tags.dim() == 5, lambda: "ae_group: heatmaps must be [N, J, H, W] and "
                 "tags [N, J, H, W, T]")
    n, j = heatmaps.shape[:2]
    t = tags.shape[4]
    p = torch.library.get_ctx().new_dynamic_size()
    poses = heatmaps.new_empty((n, p, j, 3 + t), dtype=torch.float32)
    scores = heatmaps.new_empty((n, p), dtype=torch.float32)
    counts = heatmaps.new_empty((n,), dtype=torch.long)
    return poses, scores, counts


@torch.library.register_fake("higherpose::linear_sum_assignment")
def _linear_sum_assignment_fake(cost):
    torch._check(cost.dim() == 2, lambda: f"linear_sum_assignment: cost must be 2-D, got {cost.dim()} dimensions")
    m = torch.library.get_ctx().new_dynamic_size(max=min(cost.shape))
    return cost.new_empty((m,), dtype=torch.long), cost.new_empty((m,), dtype=torch.long)
