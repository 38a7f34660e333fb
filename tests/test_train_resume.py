"""Killing training mid-epoch and resuming (AUTO_RESUME) reaches the same weights as an
uninterrupted run.

The "kill" is the trainer's `stop_after_iters` hook: it stops at once, after the given
iteration, without writing anything more, so only what is on disk survives. Between the two
halves the global RNGs are scrambled, so the resumed run must restore them from the checkpoint
(the model has dropout, so the RNG stream matters).
"""
import os
import random

import numpy as np
import pytest
import torch

from higherpose.engine import DistContext, train
from higherpose.engine import checkpoint as ckpt
from test_engine_helpers import final_weights, standin_components, tiny_cfg, one_thread  # noqa: F401 (autouse)

# 16 samples, batch 4 -> 4 iterations per epoch, 3 epochs; a checkpoint every 2 iterations.
SETTINGS = {"TRAIN.END_EPOCH": 3, "TRAIN.CHECKPOINT_EVERY_ITERS": 2, "MODEL.EXTRA.DROPOUT": 0.3,
            "TRAIN.LR_STEP": [1, 2], "TRAIN.WARMUP_ITERS": 3, "TRAIN.OPTIMIZER": "adamw"}


def _scramble_rngs():
    torch.manual_seed(12345)
    np.random.seed(12345)
    random.seed(12345)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Final weights of the uninterrupted run."""
    cfg = tiny_cfg(tmp_path_factory.mktemp("full"), **SETTINGS)
    return final_weights(train(cfg, DistContext(), "resume.yaml", standin_components()))


def _killed_then_resumed(tmp_path, kill_after):
    cfg = tiny_cfg(tmp_path / f"killed{kill_after}", **SETTINGS)
    comps = standin_components()
    final_dir = train(cfg, DistContext(), "resume.yaml", comps, stop_after_iters=kill_after)
    assert not os.path.exists(os.path.join(final_dir, "final_state.pth.tar"))
    saved = ckpt.load_file(os.path.join(final_dir, "checkpoint.pth.tar"))
    _scramble_rngs()
    resumed_dir = train(cfg, DistContext(), "resume.yaml", comps)
    return saved, final_weights(resumed_dir), ckpt.load_file(os.path.join(resumed_dir, "checkpoint.pth.tar"))


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=f"weights differ at {k}")


def test_mid_epoch_kill_and_resume_matches_uninterrupted(tmp_path, reference):
    # killed in epoch 1 after iteration 3 of 4 (global 7): the last checkpoint is epoch 1, iteration 2
    saved, resumed, last = _killed_then_resumed(tmp_path, kill_after=7)
    assert (saved["epoch"], saved["iteration"], saved["global_iteration"]) == (1, 2, 6)
    _assert_same(reference, resumed)
    # the loss history continues where it stopped: one entry per iteration, none repeated
    assert [h["iteration"] for h in last["history"]] == list(range(1, 13))


def test_kill_right_after_an_epoch_resumes_from_the_epoch_checkpoint(tmp_path, reference):
    saved, resumed, _ = _killed_then_resumed(tmp_path, kill_after=5)
    assert (saved["epoch"], saved["iteration"]) == (1, 0)
    _assert_same(reference, resumed)


def test_resume_without_the_rng_states_diverges(tmp_path, reference):
    """The check above can fail: dropping the saved RNG states changes the result."""
    cfg = tiny_cfg(tmp_path / "norng", **SETTINGS)
    comps = standin_components()
    final_dir = train(cfg, DistContext(), "resume.yaml", comps, stop_after_iters=7)
    path = os.path.join(final_dir, "checkpoint.pth.tar")
    state = ckpt.load_file(path)
    del state["rng"]
    ckpt.atomic_save(state, path)
    _scramble_rngs()
    resumed = final_weights(train(cfg, DistContext(), "resume.yaml", comps))
    assert any(not torch.allclose(reference[k], resumed[k], atol=1e-6) for k in reference)
