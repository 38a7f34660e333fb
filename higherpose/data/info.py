"""Per-dataset keypoint facts: joint names, flip index, skeleton and OKS sigmas.

Skeletons are 0-based joint index pairs (COCO JSON files store them 1-based; use
`skeleton_1based` when writing a category). CrowdPose's own annotation file ships COCO's
17-joint skeleton, which is wrong for its 14 joints; the skeleton here is the correct one.
"""
from dataclasses import dataclass, field
from typing import List, Tuple

CROWDPOSE_JOINTS = [
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck",
]
CROWDPOSE_FLIP = [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13]
CROWDPOSE_SKELETON = [
    (12, 13),                      # head - neck
    (13, 0), (13, 1),              # neck - shoulders
    (0, 1),                        # shoulder - shoulder
    (0, 6), (1, 7),                # shoulders - hips
    (6, 7),                        # hip - hip
    (0, 2), (2, 4), (1, 3), (3, 5),        # arms
    (6, 8), (8, 10), (7, 9), (9, 11),      # legs
]
CROWDPOSE_SIGMAS = [.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79]

COCO_JOINTS = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]
COCO_FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
# The standard COCO person skeleton (as in person_keypoints_*.json), converted to 0-based.
COCO_SKELETON = [(a - 1, b - 1) for a, b in [
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7)]]
COCO_SIGMAS = [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    joint_names: List[str]
    flip_index: List[int]
    skeleton: List[Tuple[int, int]]
    sigmas: List[float] = field(default_factory=list)  # OKS sigmas (already divided by 10)

    @property
    def num_joints(self):
        return len(self.joint_names)

    @property
    def skeleton_1based(self):
        return [[a + 1, b + 1] for a, b in self.skeleton]

    # dict-style access, so code written against a plain dict works too
    def __getitem__(self, key):
        return getattr(self, key)

    def keys(self):
        return ["name", "num_joints", "joint_names", "flip_index", "skeleton", "sigmas"]


_INFOS = {
    "crowdpose": DatasetInfo("crowdpose", CROWDPOSE_JOINTS, CROWDPOSE_FLIP, CROWDPOSE_SKELETON,
                             [s / 10.0 for s in CROWDPOSE_SIGMAS]),
    "coco": DatasetInfo("coco", COCO_JOINTS, COCO_FLIP, COCO_SKELETON, [s / 10.0 for s in COCO_SIGMAS]),
}
# Config spellings (DATASET.DATASET / DATASET_TEST) -> canonical dataset name.
ALIASES = {
    "crowdpose": "crowdpose", "crowd_pose": "crowdpose", "crowd_pose_kpt": "crowdpose",
    "crowdpose_kpt": "crowdpose", "synthetic": "crowdpose", "synthetic_crowd": "crowdpose",
    "coco": "coco", "coco_kpt": "coco",
    "ochuman": "ochuman", "ochuman_kpt": "ochuman",
}


def canonical_name(name):
    key = str(name).lower()
    if key not in ALIASES:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(ALIASES)}")
    return ALIASES[key]


def dataset_info(name, with_center=False):
    """Keypoint facts for 'crowdpose', 'coco' or 'ochuman' (OCHuman uses COCO's 17 joints).

    with_center appends a person-centre joint (upstream WITH_CENTER), which flips onto itself.
    """
    canon = canonical_name(name)
    info = _INFOS["coco" if canon == "ochuman" else canon]
    if canon == "ochuman":
        info = DatasetInfo("ochuman", info.joint_names, info.flip_index, info.skeleton, info.sigmas)
    if with_center:
        n = info.num_joints
        info = DatasetInfo(info.name, info.joint_names + ["center"], info.flip_index + [n],
                           info.skeleton, info.sigmas + [1.0])
    return info
