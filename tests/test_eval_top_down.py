"""Top-down evaluation runner end to end with an oracle network (heatmaps drawn from the GT joints
of each crop, in the order the runner asks for them)."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from higherpose.config import get_default_config
from higherpose.data import KeypointDataset, TopDownDataset
from higherpose.data.synthetic import generate
from higherpose.evaluation.top_down_runner import evaluate_top_down

IMAGE_SIZE = (48, 64)   # w, h
HEATMAP_SIZE = (12, 16)


class OracleTopDown(nn.Module):
    def __init__(self, dataset):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.maps = []
        w, h = HEATMAP_SIZE
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(len(dataset)):
            _, meta = dataset[i]
            entry = dataset.boxes[i]
            c, s = meta["center"].astype(float), meta["scale"].astype(float) * 200
            hm = np.zeros((14, h, w), np.float32)
            for j, ((x, y), v) in enumerate(zip(entry["joints"], entry["joints_vis"])):
                if v <= 0:
                    continue
                hx = (x - c[0] + s[0] / 2) * w / s[0]
                hy = (y - c[1] + s[1] / 2) * h / s[1]
                hm[j] = np.exp(-((xx - hx) ** 2 + (yy - hy) ** 2) / 2.0)
            self.maps.append(torch.from_numpy(hm))
        self.cursor = 0

    def forward(self, x):
        out = torch.stack(self.maps[self.cursor:self.cursor + len(x)])
        self.cursor += len(x)
        return out + self.dummy


@pytest.fixture(scope="module")
def td_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn_td")
    generate(str(root), num_train=0, num_test=4, image_size=96, seed=5, min_people=2, max_people=3)
    base = KeypointDataset("crowd_pose", str(root), "test")
    return TopDownDataset(base, False, IMAGE_SIZE, HEATMAP_SIZE)


def test_oracle_scores_high(td_set, tmp_path):
    cfg = get_default_config()
    cfg.TEST.FLIP_TEST = False
    cfg.TEST.OKS_THRE = 0.9
    cfg.MODEL.NAME = "pose_hrnet"
    out = evaluate_top_down(OracleTopDown(td_set), td_set, cfg, str(tmp_path), batch_size=3, progress=False)
    assert out["metrics"]["AP"] > 0.9, out["metrics"]
    records = json.loads(open(out["results_file"]).read())
    assert 0 < len(records) <= len(td_set)
    assert open(out["table_file"]).read().splitlines()[2].startswith("| pose_hrnet | ")
