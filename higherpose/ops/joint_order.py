"""The order in which the grouping visits joint types (HigherHRNet's `Params.joint_order`).

The one home of this rule: the compiled op's wrapper, its numpy reference, `HeatmapParser` and the
bottom-up pipeline all import it from here.
"""

# Upstream's COCO order, 1-based [1..7, 12, 13, 8..11, 14..17] minus 1: head, shoulders, elbows,
# wrists, then hips before knees and ankles.
COCO_JOINT_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)


def default_joint_order(num_joints):
    """Upstream's joint visiting order for ``num_joints`` joints.

    The COCO order truncated to its first J entries (as upstream does, also for CrowdPose's
    J = 14). Where that truncation is not a permutation of ``range(J)`` (J = 8..11, or J > 17,
    on which upstream would fail) the natural order ``0 .. J-1`` is returned instead.
    """
    num_joints = int(num_joints)
    if num_joints < 0:
        raise ValueError(f"default_joint_order: num_joints must be >= 0, got {num_joints}")
    order = list(COCO_JOINT_ORDER[:num_joints])
    if sorted(order) != list(range(num_joints)):
        order = list(range(num_joints))
    return order


def center_first_joint_order(num_joints):
    """The order with a person-centre joint that is parsed (WITH_CENTER and not IGNORE_CENTER).

    ``num_joints`` counts the centre, which is the last joint (the data appends it): it is visited
    first, then the other joints in :func:`default_joint_order`. Upstream prefixes its COCO order
    with joint 18 (1-based), which is this rule for COCO's 17 + 1 joints.
    """
    num_joints = int(num_joints)
    if num_joints < 1:
        raise ValueError(f"center_first_joint_order: num_joints counts the centre, so it must be >= 1, "
                         f"got {num_joints}")
    return [num_joints - 1] + default_joint_order(num_joints - 1)


__all__ = ["COCO_JOINT_ORDER", "default_joint_order", "center_first_joint_order"]
