"""Two CPU processes (gloo, spawned by the launcher) give the same losses and weights as one
process with the same global batch.

The stand-in model has no BatchNorm: with BatchNorm each process normalises with its own
half-batch statistics (PyTorch's SyncBatchNorm runs on GPUs only), so the runs would differ by
design. Dropout is off, since each rank draws from its own RNG stream.
"""
import os

import numpy as np
import torch

from higherpose.engine import checkpoint as ckpt
from higherpose.engine.launcher import Plan, run
from test_engine_helpers import final_weights, standin_components, tiny_cfg

SETTINGS = {"TRAIN.END_EPOCH": 2, "TRAIN.LR_STEP": [1], "TRAIN.OPTIMIZER": "sgd", "TRAIN.LR": 0.05,
            "TRAIN.WD": 1e-4}


def _run(tmp_path, procs, per_process_batch):
    cfg = tiny_cfg(tmp_path, **SETTINGS, **{"TRAIN.IMAGES_PER_GPU": per_process_batch})
    plan = Plan(cfg=cfg, cfg_file="dist.yaml", device_type="cpu", procs_per_node=procs,
                components=standin_components(), threads=1 if procs > 1 else 0)
    run(plan)
    final_dir = os.path.join(cfg.OUTPUT_DIR, "tiny_kpt", "tiny_standin", "dist")
    return final_weights(final_dir), ckpt.load_file(os.path.join(final_dir, "checkpoint.pth.tar"))


def test_two_gloo_processes_match_one_process(tmp_path):
    one_w, one_state = _run(tmp_path / "one", procs=1, per_process_batch=4)
    two_w, two_state = _run(tmp_path / "two", procs=2, per_process_batch=2)

    one_loss = [h["loss"] for h in one_state["history"]]
    two_loss = [h["loss"] for h in two_state["history"]]
    assert len(one_loss) == len(two_loss) == 8  # 16 samples / global batch 4, 2 epochs
    np.testing.assert_allclose(two_loss, one_loss, rtol=1e-5)
    for k in one_w:
        torch.testing.assert_close(two_w[k], one_w[k], rtol=1e-4, atol=1e-6, msg=f"weights differ at {k}")
    # the checkpoint holds both ranks' RNG states
    assert len(two_state["rng"]) == 2 and len(one_state["rng"]) == 1
    # and training really moved the weights (the comparison is not between two untouched models)
    first = one_state["history"][0]["loss"]
    assert one_loss[-1] < first
