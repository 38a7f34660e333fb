"""Training with the real pieces: the synthetic-crowd config, HigherHRNet, the CrowdPose loader
on a freshly rendered synthetic set, and the AE/heatmap losses — shrunk to 64x64 inputs."""
import os
import subprocess
import sys

import pytest
import torch

from test_engine_helpers import one_thread  # noqa: F401 (autouse)

from higherpose.config import load_config
from higherpose.engine import DistContext, train
from higherpose.engine import checkpoint as ckpt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(ROOT, "configs", "synthetic", "higher_hrnet_tiny.yaml")


def tiny_opts(tmp_path, data_root):
    return ["OUTPUT_DIR", str(tmp_path / "output"), "LOG_DIR", str(tmp_path / "log"),
            "DATASET.ROOT", str(data_root), "DATASET.SYNTHETIC.NUM_TRAIN", "8",
            "DATASET.SYNTHETIC.NUM_TEST", "2", "DATASET.SYNTHETIC.IMAGE_SIZE", "64",
            "DATASET.INPUT_SIZE", "64", "DATASET.OUTPUT_SIZE", "[16, 32]", "TRAIN.IMAGES_PER_GPU", "2",
            "TRAIN.END_EPOCH", "1", "TRAIN.WARMUP_ITERS", "2", "WORKERS", "0", "PRINT_FREQ", "1"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A tiny rendered set, the same as the one the config renders with tiny_opts."""
    from higherpose.data.synthetic import generate
    root = tmp_path_factory.mktemp("synthetic_data") / "synthetic_crowd"
    generate(str(root), num_train=8, num_test=2, image_size=64, seed=0, max_people=3)
    return root


def test_config_loads_and_describes_the_synthetic_job():
    cfg = load_config(CFG)
    assert cfg.MODEL.NAME == "pose_higher_hrnet" and cfg.DATASET.NUM_JOINTS == cfg.MODEL.NUM_JOINTS == 14
    assert cfg.DATASET.SYNTHETIC.GENERATE and cfg.MODEL.PRETRAINED == ""
    assert len(cfg.DATASET.OUTPUT_SIZE) == cfg.LOSS.NUM_STAGES == 2


def test_cli_trains_on_rendered_synthetic_set(tmp_path):
    data_root = tmp_path / "fresh_data"
    opts = tiny_opts(tmp_path, data_root) + ["TRAIN.MAX_ITERS_PER_EPOCH", "2"]
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train.py"), "--cfg", CFG, *opts],
                       capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert os.path.isfile(data_root / "json" / "crowdpose_train.json")  # rendered on first use
    cfg = load_config(CFG, opts)
    final_dir = os.path.join(cfg.OUTPUT_DIR, "synthetic_crowd", "pose_higher_hrnet", "higher_hrnet_tiny")
    for name in ("checkpoint.pth.tar", "model_best.pth.tar", "final_state.pth.tar", "training_curve.png"):
        assert os.path.isfile(os.path.join(final_dir, name)), name
    from higherpose.models import build_model, load_checkpoint
    model = build_model(cfg, is_train=False)
    load_checkpoint(model, os.path.join(final_dir, "final_state.pth.tar"))  # strict
    load_checkpoint(model, os.path.join(final_dir, "checkpoint.pth.tar"))  # upstream-style dict
    assert "Stage0-push" in r.stderr and "Stage1-heatmaps" in r.stderr  # upstream log names


def test_real_model_mid_epoch_resume_matches(tmp_path, data_root):
    """BatchNorm statistics, the real dataset's per-sample augmentation and the real losses
    survive a kill after iteration 3 (checkpoint at 2) and give the uninterrupted weights."""
    extra = ["TRAIN.END_EPOCH", "1", "TRAIN.CHECKPOINT_EVERY_ITERS", "2"]
    full_cfg = load_config(CFG, tiny_opts(tmp_path / "full", data_root) + extra)
    reference_file = os.path.join(train(full_cfg, DistContext(), CFG), "final_state.pth.tar")
    reference = torch.load(reference_file, weights_only=True)

    cfg = load_config(CFG, tiny_opts(tmp_path / "killed", data_root) + extra)
    final_dir = train(cfg, DistContext(), CFG, stop_after_iters=3)
    saved = ckpt.load_file(os.path.join(final_dir, "checkpoint.pth.tar"))
    assert (saved["epoch"], saved["iteration"]) == (0, 2)
    torch.manual_seed(777)
    resumed = torch.load(os.path.join(train(cfg, DistContext(), CFG), "final_state.pth.tar"), weights_only=True)
    assert reference.keys() == resumed.keys()
    assert any("running_mean" in k for k in reference)
    for k in reference:
        torch.testing.assert_close(resumed[k], reference[k], rtol=0, atol=1e-6, msg=f"weights differ at {k}")


def test_torchrun_two_cpu_processes(tmp_path, data_root):
    """env:// launch by torchrun (gloo on CPU) of tools/dist_train.py."""
    opts = tiny_opts(tmp_path, data_root) + ["TRAIN.MAX_ITERS_PER_EPOCH", "2"]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--standalone", os.path.join(ROOT, "tools", "dist_train.py"), "--cfg", CFG,
                        "--cpu", *opts], capture_output=True, text=True, timeout=240, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = load_config(CFG, opts)
    final_dir = os.path.join(cfg.OUTPUT_DIR, "synthetic_crowd", "pose_higher_hrnet", "higher_hrnet_tiny")
    state = ckpt.load_file(os.path.join(final_dir, "checkpoint.pth.tar"))
    assert len(state["rng"]) == 2 and state["global_iteration"] == 2
    assert os.path.isfile(os.path.join(final_dir, "final_state.pth.tar"))


def test_top_down_training_runs(tmp_path, data_root):
    """Top-down batches (image, target, target_weight, meta) with JointsMSELoss, HRNet trunk
    shrunk, on the synthetic set's person boxes."""
    cfg_file = os.path.join(ROOT, "configs", "coco", "hrnet", "w32_256x192_adam_lr1e-3.yaml")
    small = {"NUM_MODULES": 1, "NUM_BLOCKS": None, "NUM_CHANNELS": None}
    opts = ["OUTPUT_DIR", str(tmp_path / "output"), "LOG_DIR", str(tmp_path / "log"),
            "DATASET.ROOT", str(data_root), "DATASET.DATASET", "synthetic_crowd", "DATASET.TRAIN_SET", "train",
            "DATASET.TEST_SET", "test", "DATASET.NUM_JOINTS", "14", "MODEL.NUM_JOINTS", "14",
            "MODEL.PRETRAINED", "", "MODEL.IMAGE_SIZE", "[32, 64]", "MODEL.HEATMAP_SIZE", "[8, 16]",
            "TRAIN.BATCH_SIZE_PER_GPU", "4", "TRAIN.END_EPOCH", "1", "TRAIN.MAX_ITERS_PER_EPOCH", "2",
            "WORKERS", "0", "PRINT_FREQ", "1"]
    for n, width in ((2, [8, 16]), (3, [8, 16, 32]), (4, [8, 16, 32, 64])):
        small["NUM_BLOCKS"], small["NUM_CHANNELS"] = [1] * len(width), width
        for key, value in small.items():
            opts += [f"MODEL.EXTRA.STAGE{n}.{key}", str(value)]
    cfg = load_config(cfg_file, opts, freeze=False)
    cfg.MODEL.EXTRA.LAYER1_PLANES = 8  # new keys: not settable from the command line
    cfg.MODEL.EXTRA.LAYER1_NUM_BLOCKS = 1
    cfg.freeze()
    final_dir = train(cfg, DistContext(), cfg_file)
    state = ckpt.load_file(os.path.join(final_dir, "checkpoint.pth.tar"))
    assert [sorted(h) for h in state["history"]][0] == sorted(["iteration", "epoch", "loss", "heatmaps", "lr",
                                                                 "images_per_s"])
    assert all(h["loss"] > 0 for h in state["history"]) and state["global_iteration"] == 2
    assert final_dir.endswith(os.path.join("synthetic_crowd", "pose_hrnet", "w32_256x192_adam_lr1e-3"))
