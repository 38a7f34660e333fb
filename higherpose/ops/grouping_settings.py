"""The grouping settings and the one rule that maps an upstream config onto them.

`HeatmapParser` and the bottom-up pipeline both build their settings with
`GroupingSettings.from_config`, so a config groups the same way through either.

The person-centre joint (DATASET.WITH_CENTER, upstream's HigherHRNet config): the config loader
appends it as the last joint (NUM_JOINTS + 1). Upstream's `Params` then
  * with TEST.IGNORE_CENTER (its default) parses NUM_JOINTS - 1 joints: the centre is not parsed;
  * without it parses all joints and visits the centre first (COCO order prefixed by joint 18).
"""
from dataclasses import dataclass

from .._cfg import cfg_get
from .joint_order import center_first_joint_order, default_joint_order

# What `center` says about the last joint of the maps.
NO_CENTER = "none"           # there is no centre joint
CENTER_DROPPED = "dropped"   # the last joint is a centre and is not parsed
CENTER_FIRST = "first"       # the last joint is a centre, parsed and visited first
CENTER_MODES = (NO_CENTER, CENTER_DROPPED, CENTER_FIRST)


@dataclass(frozen=True)
class GroupingSettings:
    """Everything the grouping op needs besides the maps.

    num_joints counts the joint channels of the network's maps (the centre included, if any);
    `parsed_joints` of them are grouped. Defaults are the released CrowdPose / COCO yamls'
    values (and `ae_group`'s); joint_order None means the rule of `higherpose.ops.joint_order`.
    """
    num_joints: int
    center: str = NO_CENTER
    joint_order: tuple = None
    max_people: int = 30
    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    use_detection_val: bool = True
    ignore_too_much: bool = False
    nms_kernel: int = 5
    adjust: bool = True
    refine: bool = True
    tag_per_joint: bool = True

    def __post_init__(self):
        if self.center not in CENTER_MODES:
            raise ValueError(f"GroupingSettings: center must be one of {CENTER_MODES}, got {self.center!r}")
        if self.center != NO_CENTER and self.num_joints < 2:
            raise ValueError(f"GroupingSettings: num_joints {self.num_joints} cannot hold joints and a centre")
        order = self.joint_order
        if order is None:
            order = center_first_joint_order(self.num_joints) if self.center == CENTER_FIRST \
                else default_joint_order(self.parsed_joints)
        order = tuple(int(j) for j in order)
        if sorted(order) != list(range(self.parsed_joints)):
            raise ValueError(f"GroupingSettings: joint_order must be a permutation of 0..{self.parsed_joints - 1} "
                             f"(the parsed joints), got {list(order)}")
        object.__setattr__(self, "joint_order", order)
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            raise ValueError(f"GroupingSettings: nms_kernel must be a positive odd number, got {self.nms_kernel}")

    @property
    def parsed_joints(self):
        """How many joints are grouped: all but the centre when it is dropped."""
        return self.num_joints - 1 if self.center == CENTER_DROPPED else self.num_joints

    @classmethod
    def from_config(cls, cfg):
        """Upstream's `Params(cfg)`, with TEST.ADJUST / TEST.REFINE, from a yacs CfgNode or any
        object with upstream's field names; absent fields take upstream's config defaults."""
        dataset, test, model = cfg_get(cfg, "DATASET"), cfg_get(cfg, "TEST"), cfg_get(cfg, "MODEL")
        num_joints = cfg_get(dataset, "NUM_JOINTS")
        if num_joints is None:
            raise ValueError("grouping settings: the config has no DATASET.NUM_JOINTS")
        center = NO_CENTER
        if cfg_get(dataset, "WITH_CENTER", False):
            center = CENTER_DROPPED if cfg_get(test, "IGNORE_CENTER", True) else CENTER_FIRST
        kernel = int(cfg_get(test, "NMS_KERNEL", 3))
        padding = int(cfg_get(test, "NMS_PADDING", kernel // 2))
        if kernel % 2 == 0 or padding != kernel // 2:
            raise ValueError(f"TEST.NMS_KERNEL {kernel} with TEST.NMS_PADDING {padding} is not a same-size "
                             f"max-pool: the kernel must be odd and the padding (kernel - 1) / 2")
        return cls(num_joints=int(num_joints), center=center,
                   max_people=int(cfg_get(dataset, "MAX_NUM_PEOPLE", 30)),
                   detection_threshold=float(cfg_get(test, "DETECTION_THRESHOLD", 0.2)),
                   tag_threshold=float(cfg_get(test, "TAG_THRESHOLD", 1.0)),
                   use_detection_val=bool(cfg_get(test, "USE_DETECTION_VAL", True)),
                   ignore_too_much=bool(cfg_get(test, "IGNORE_TOO_MUCH", False)),
                   nms_kernel=kernel,
                   adjust=bool(cfg_get(test, "ADJUST", True)),
                   refine=bool(cfg_get(test, "REFINE", True)),
                   tag_per_joint=bool(cfg_get(model, "TAG_PER_JOINT", True)))

    def parsed_maps(self, heatmaps, tags):
        """The maps the grouping reads: without the centre channel when it is dropped.

        heatmaps ``[N, num_joints, H, W]`` (or already ``[N, parsed_joints, H, W]``); tags
        ``[N, J or 1, H, W, T]``.
        """
        if heatmaps.shape[1] not in (self.num_joints, self.parsed_joints):
            raise ValueError(f"grouping: heatmaps have {heatmaps.shape[1]} joint channels, expected "
                             f"{self.num_joints}" + (f" or {self.parsed_joints} (without the centre)"
                                                      if self.parsed_joints != self.num_joints else ""))
        j = self.parsed_joints
        if tags.shape[1] > j:
            tags = tags[:, :j]
        return heatmaps[:, :j], tags

    def op_kwargs(self, adjust=None, refine=None):
        """Keyword arguments of `higherpose.ops.ae_group` (adjust / refine overridable per call)."""
        return dict(joint_order=list(self.joint_order), nms_kernel=self.nms_kernel, max_people=self.max_people,
                    detection_threshold=self.detection_threshold, tag_threshold=self.tag_threshold,
                    use_detection_val=self.use_detection_val, ignore_too_much=self.ignore_too_much,
                    adjust=self.adjust if adjust is None else bool(adjust),
                    refine=self.refine if refine is None else bool(refine))


__all__ = ["GroupingSettings", "NO_CENTER", "CENTER_DROPPED", "CENTER_FIRST"]
