"""The bottom-up evaluation runner: results JSON, metrics and table on a tiny synthetic split."""
import json

import numpy as np
import pytest

from higherpose.data import KeypointDataset
from higherpose.data.synthetic import generate
from higherpose.evaluation import evaluate_bottom_up
from higherpose.inference.bottom_up import Timer


class GroundTruthInference:
    """Stand-in pipeline that 'predicts' the GT poses of the images in evaluation order."""

    def __init__(self, dataset, drop_every=0):
        self.timer = Timer()
        self.queue = list(dataset.image_ids)
        self.dataset = dataset
        self.drop_every = drop_every

    def predict(self, images, batch_size=1):
        out = []
        for _ in images:
            image_id = self.queue.pop(0)
            anns = [a for a in self.dataset.annotations(image_id) if a["num_keypoints"] > 0]
            poses = np.array([np.reshape(a["keypoints"], (-1, 3)) for a in anns], np.float64).reshape(-1, 14, 3)
            poses[:, :, 2] = (poses[:, :, 2] > 0).astype(float)  # missing joints score 0
            if self.drop_every:
                poses = poses[::self.drop_every]
            out.append((poses, np.ones(len(poses))))
        self.timer.images += len(images)
        return out


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    generate(str(root), num_train=0, num_test=5, image_size=96, seed=3, min_people=2, max_people=3)
    return KeypointDataset("crowd_pose", str(root), "test")


def test_perfect_predictions(tiny_set, tmp_path):
    out = evaluate_bottom_up(GroundTruthInference(tiny_set), tiny_set, str(tmp_path), "pose_higher_hrnet",
                             batch_size=2, progress=False)
    assert out["metrics"]["AP"] == pytest.approx(1.0) and out["metrics"]["AR"] == pytest.approx(1.0)
    records = json.loads(open(out["results_file"]).read())
    assert {r["image_id"] for r in records} <= set(tiny_set.image_ids)
    assert all(min(r["keypoints"][2::3]) > 0 and len(r["keypoints"]) == 42 for r in records)
    assert open(out["table_file"]).read().splitlines()[2].startswith("| pose_hig... | 1.000 |")
    assert out["timing"]["images"] == 5


def test_missing_persons_lower_recall(tiny_set, tmp_path):
    out = evaluate_bottom_up(GroundTruthInference(tiny_set, drop_every=2), tiny_set, str(tmp_path), "x",
                             progress=False)
    assert out["metrics"]["AR"] < 0.9
