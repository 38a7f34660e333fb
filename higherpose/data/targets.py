"""Training targets: bottom-up Gaussian heatmaps and joint index lists, top-down heatmaps.

Semantics follow HigherHRNet's target generators (bottom-up) and the MSRA/mmpose Gaussian
target (top-down); see reference/higherhrnet.md section 7 and reference/hrformer.md section 3.
"""
import warnings

import numpy as np


class HeatmapGenerator:
    """Unnormalised Gaussian per visible joint, max over people.

    joints: [P, J, >=3] (x, y, visibility, ...) in output-map pixels. A patch of width 6σ+3 with
    its peak at 3σ+1 is pasted at the integer-truncated joint position; joints whose truncated
    position falls outside the map, or with visibility 0, are not drawn.
    """

    def __init__(self, output_res, num_joints, sigma=-1):
        self.output_res = int(output_res)
        self.num_joints = int(num_joints)
        self.sigma = self.output_res / 64 if sigma < 0 else float(sigma)
        size = 6 * self.sigma + 3
        x = np.arange(0, size, 1, np.float64)
        y = x[:, None]
        c = 3 * self.sigma + 1
        self.patch = np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * self.sigma ** 2))

    def __call__(self, joints):
        res, s = self.output_res, self.sigma
        hms = np.zeros((self.num_joints, res, res), dtype=np.float32)
        joints = np.asarray(joints, dtype=np.float64).reshape(-1, self.num_joints, joints.shape[-1])
        for person in joints:
            for j, (px, py, v) in enumerate(person[:, :3]):
                if v <= 0:
                    continue
                x, y = int(px), int(py)
                if x < 0 or y < 0 or x >= res or y >= res:
                    continue
                x0, y0 = int(np.round(x - 3 * s - 1)), int(np.round(y - 3 * s - 1))
                x1, y1 = int(np.round(x + 3 * s + 2)), int(np.round(y + 3 * s + 2))
                cx0, cx1 = max(0, x0), min(x1, res)
                cy0, cy1 = max(0, y0), min(y1, res)
                patch = self.patch[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
                region = hms[j, cy0:cy1, cx0:cx1]
                np.maximum(region, patch, out=region)
        return hms


class JointsGenerator:
    """[MAX_NUM_PEOPLE, J, 2] of (flat index j·R²+y·R+x, 1) for visible in-map joints.

    Visible joints are packed at the front of each person's row (as upstream); the rest are 0.
    Persons beyond max_num_people are dropped with a warning (upstream would index out of range).
    """

    def __init__(self, max_num_people, num_joints, output_res, tag_per_joint=True):
        self.max_num_people = int(max_num_people)
        self.num_joints = int(num_joints)
        self.output_res = int(output_res)
        self.tag_per_joint = tag_per_joint

    def __call__(self, joints):
        res = self.output_res
        out = np.zeros((self.max_num_people, self.num_joints, 2), dtype=np.int64)
        joints = np.asarray(joints, dtype=np.float64).reshape(-1, self.num_joints, joints.shape[-1])
        if len(joints) > self.max_num_people:
            warnings.warn(f"{len(joints)} annotated persons exceed DATASET.MAX_NUM_PEOPLE="
                          f"{self.max_num_people}; the extra persons get no tag targets")
        for i, person in enumerate(joints[:self.max_num_people]):
            k = 0
            for j, (px, py, v) in enumerate(person[:, :3]):
                x, y = int(px), int(py)
                if v > 0 and 0 <= x < res and 0 <= y < res:
                    flat = y * res + x
                    out[i, k] = (j * res * res + flat if self.tag_per_joint else flat, 1)
                    k += 1
        return out


def topdown_gaussian_target(joints, joints_vis, image_size, heatmap_size, sigma):
    """MSRA Gaussian heatmaps for one crop.

    joints [J, 2] in crop-input pixels, joints_vis [J] (0/1), image_size and heatmap_size as
    (width, height). Returns target [J, hh, hw] float32 and target_weight [J, 1] float32; a joint
    whose 3σ window lies entirely outside the map gets weight 0.
    """
    joints = np.asarray(joints, np.float64)
    num_joints = len(joints)
    hw, hh = int(heatmap_size[0]), int(heatmap_size[1])
    stride = np.array(image_size, np.float64) / np.array(heatmap_size, np.float64)
    target = np.zeros((num_joints, hh, hw), np.float32)
    weight = (np.asarray(joints_vis, np.float32).reshape(num_joints) > 0).astype(np.float32)
    tmp = sigma * 3
    size = int(2 * tmp + 1)
    x = np.arange(0, size, 1, np.float64)
    y = x[:, None]
    g = np.exp(-((x - size // 2) ** 2 + (y - size // 2) ** 2) / (2 * sigma ** 2))
    for j in range(num_joints):
        if weight[j] == 0:
            continue
        mx = int(joints[j, 0] / stride[0] + 0.5)
        my = int(joints[j, 1] / stride[1] + 0.5)
        ul = (int(mx - tmp), int(my - tmp))
        br = (int(mx + tmp + 1), int(my + tmp + 1))
        if ul[0] >= hw or ul[1] >= hh or br[0] < 0 or br[1] < 0:
            weight[j] = 0
            continue
        gx = max(0, -ul[0]), min(br[0], hw) - ul[0]
        gy = max(0, -ul[1]), min(br[1], hh) - ul[1]
        ix = max(0, ul[0]), min(br[0], hw)
        iy = max(0, ul[1]), min(br[1], hh)
        target[j, iy[0]:iy[1], ix[0]:ix[1]] = g[gy[0]:gy[1], gx[0]:gx[1]]
    return target, weight[:, None]
