"""Engine pieces: LR schedule, optimizers, checkpoints (atomic, weights_only), RNG states,
output layout, AMP on the CPU, and clear errors for bad configs / arguments."""
import glob
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from higherpose.engine import DistContext, WarmupMultiStepLR, build_optimizer, train
from higherpose.engine import checkpoint as ckpt
from test_engine_helpers import TinyBottomUp, final_weights, standin_components, tiny_cfg, one_thread  # noqa: F401 (autouse)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- LR schedule
def test_schedule_multistep_and_warmup_hand_worked():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = WarmupMultiStepLR(opt, milestones=[2, 3], gamma=0.1, iters_per_epoch=4, warmup_iters=4,
                              warmup_ratio=0.2)
    seen = []
    for _ in range(16):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # warm-up: 0.2 + 0.8 * i / 4 for i < 4; epochs 0-1 at 1.0; epoch 2 at 0.1; epoch 3 at 0.01
    expected = [0.2, 0.4, 0.6, 0.8] + [1.0] * 4 + [0.1] * 4 + [0.01] * 4
    np.testing.assert_allclose(seen, expected, rtol=1e-12)


def test_schedule_state_round_trip_keeps_position():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = WarmupMultiStepLR(opt, [1], 0.5, iters_per_epoch=3)
    for _ in range(4):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = WarmupMultiStepLR(opt2, [1], 0.5, iters_per_epoch=3)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    assert sched2.get_last_lr() == sched.get_last_lr() == [0.5]


def test_schedule_rejects_bad_values():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="LR_STEP"):
        WarmupMultiStepLR(opt, [3, 2], 0.1, 4)
    with pytest.raises(ValueError, match="WARMUP"):
        WarmupMultiStepLR(opt, [3], 0.1, 4, warmup_iters=5, warmup_ratio=0.0)


# ----------------------------------------------------------------------------- optimizers
class _WithBiasTable(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 1)
        self.relative_position_bias_table = torch.nn.Parameter(torch.ones(3, 2))


def test_optimizers_follow_config(tmp_path):
    model = _WithBiasTable()
    adam = build_optimizer(tiny_cfg(tmp_path, **{"TRAIN.OPTIMIZER": "adam", "TRAIN.WD": 0.5}), model)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["weight_decay"] == 0  # as upstream
    adamw = build_optimizer(tiny_cfg(tmp_path, **{"TRAIN.OPTIMIZER": "AdamW", "TRAIN.WD": 0.05}), model)
    assert isinstance(adamw, torch.optim.AdamW)
    decays = {id(p): g["weight_decay"] for g in adamw.param_groups for p in g["params"]}
    assert decays[id(model.conv.weight)] == 0.05 and decays[id(model.relative_position_bias_table)] == 0
    sgd = build_optimizer(tiny_cfg(tmp_path, **{"TRAIN.OPTIMIZER": "sgd", "TRAIN.WD": 1e-4,
                                               "TRAIN.NESTEROV": True}), model)
    g = sgd.param_groups[0]
    assert isinstance(sgd, torch.optim.SGD) and g["momentum"] == 0.9 and g["weight_decay"] == 1e-4 and g["nesterov"]
    with pytest.raises(ValueError, match="TRAIN.OPTIMIZER must be one of"):
        build_optimizer(tiny_cfg(tmp_path, **{"TRAIN.OPTIMIZER": "lamb"}), model)
    with pytest.raises(ValueError, match="TRAIN.LR"):
        build_optimizer(tiny_cfg(tmp_path, **{"TRAIN.LR": 0.0}), model)


# ----------------------------------------------------------------------------- checkpoints
def test_atomic_save_never_destroys_previous(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth.tar"
    ckpt.atomic_save({"epoch": 1, "w": torch.arange(4)}, path)

    real_save = torch.save

    def dies_mid_write(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a zip")  # some bytes hit the disk, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_save({"epoch": 2, "w": torch.zeros(4)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    state = ckpt.load_file(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.arange(4))
    assert os.listdir(tmp_path) == ["checkpoint.pth.tar"]  # no temporary file left behind


def test_load_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pth.tar"):
        ckpt.load_file(tmp_path / "nothere.pth.tar")
    bad = tmp_path / "truncated.pth.tar"
    ckpt.atomic_save({"w": torch.ones(1000)}, bad)
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(RuntimeError, match="truncated.pth.tar"):
        ckpt.load_file(bad)


def test_rng_state_round_trips_through_weights_only_file(tmp_path):
    torch.manual_seed(3)
    np.random.seed(4)
    random.seed(5)
    np.random.standard_normal()  # leave a cached gaussian in numpy's state
    ckpt.atomic_save({"rng": [ckpt.get_rng_state()]}, tmp_path / "r.pth")
    expected = (torch.rand(3), np.random.rand(3), np.random.standard_normal(), random.random())
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    ckpt.set_rng_state(ckpt.load_file(tmp_path / "r.pth")["rng"][0])
    got = (torch.rand(3), np.random.rand(3), np.random.standard_normal(), random.random())
    assert torch.equal(expected[0], got[0])
    np.testing.assert_array_equal(expected[1], got[1])
    assert expected[2] == got[2] and expected[3] == got[3]


def test_prefix_helpers():
    sd = {"a.weight": 1, "module.b": 2}
    assert ckpt.add_prefix(sd) == {"module.a.weight": 1, "module.b": 2}
    assert ckpt.strip_prefix(ckpt.add_prefix(sd)) == {"a.weight": 1, "b": 2}


# ----------------------------------------------------------------------------- a full tiny run
def test_run_writes_upstream_layout_and_loadable_files(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"TRAIN.END_EPOCH": 1})
    final_dir = train(cfg, DistContext(), "configs/x/tiny_run.yaml", standin_components())
    assert final_dir == os.path.join(cfg.OUTPUT_DIR, "tiny_kpt", "tiny_standin", "tiny_run")
    names = set(os.listdir(final_dir))
    assert {"checkpoint.pth.tar", "model_best.pth.tar", "final_state.pth.tar", "training_curve.png"} <= names
    assert glob.glob(os.path.join(final_dir, "tiny_run_*_train_rank0.log"))
    assert glob.glob(os.path.join(cfg.LOG_DIR, "tiny_kpt", "tiny_standin", "tiny_run_*", "events.out.tfevents.*"))

    state = torch.load(os.path.join(final_dir, "checkpoint.pth.tar"), weights_only=True)
    for key in ("epoch", "model", "state_dict", "best_state_dict", "perf", "optimizer", "scheduler",
                "scaler", "rng", "iteration"):
        assert key in state, key
    assert state["epoch"] == 1 and state["iteration"] == 0 and state["model"] == "tiny_standin"
    assert all(k.startswith("module.") for k in state["state_dict"])
    final = final_weights(final_dir)
    best = torch.load(os.path.join(final_dir, "model_best.pth.tar"), weights_only=True)
    model = TinyBottomUp()
    model.load_state_dict(final)  # unprefixed, strict
    model.load_state_dict(best)
    for k, v in final.items():
        assert torch.equal(v, state["best_state_dict"][k])
    # 16 samples / batch 4 = 4 iterations, one logged entry each (PRINT_FREQ 1)
    assert [h["iteration"] for h in state["history"]] == [1, 2, 3, 4]
    assert state["history"][-1]["loss"] < state["history"][0]["loss"]


def test_max_iters_per_epoch_cuts_epochs(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"TRAIN.END_EPOCH": 2, "TRAIN.MAX_ITERS_PER_EPOCH": 1})
    final_dir = train(cfg, DistContext(), "cut.yaml", standin_components())
    state = ckpt.load_file(os.path.join(final_dir, "checkpoint.pth.tar"))
    assert state["global_iteration"] == 2


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_amp_on_cpu_trains(tmp_path, dtype):
    cfg = tiny_cfg(tmp_path, **{"FP16.ENABLED": True, "FP16.DTYPE": dtype, "TRAIN.END_EPOCH": 1})
    torch.manual_seed(0)
    initial = TinyBottomUp().state_dict()
    final_dir = train(cfg, DistContext(), "amp.yaml", standin_components())
    state = ckpt.load_file(os.path.join(final_dir, "checkpoint.pth.tar"))
    losses = [h["loss"] for h in state["history"]]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    final = final_weights(final_dir)
    assert all(v.dtype == torch.float32 for v in final.values())  # master weights stay fp32
    assert not torch.equal(final["head0.weight"], initial["head0.weight"])
    if dtype == "float16":
        assert state["scaler"]["scale"] > 0  # the GradScaler's state is saved
    else:
        assert not state["scaler"]


def test_bad_fp16_dtype_is_a_clear_error(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"FP16.ENABLED": True, "FP16.DTYPE": "float8"})
    with pytest.raises(ValueError, match="FP16.DTYPE"):
        train(cfg, DistContext(), "bad.yaml", standin_components())


def test_dataset_smaller_than_a_batch_is_a_clear_error(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"MODEL.EXTRA.NUM_SAMPLES": 3})
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(cfg, DistContext(), "small.yaml", standin_components())


def test_resume_flag_with_missing_checkpoint_is_a_clear_error(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"TRAIN.RESUME": True, "TRAIN.CHECKPOINT": str(tmp_path / "gone.pth.tar")})
    with pytest.raises(FileNotFoundError, match="gone.pth.tar"):
        train(cfg, DistContext(), "r.yaml", standin_components())


# ----------------------------------------------------------------------------- command line
def _parse_error(capsys, *argv):
    """Run the command-line checks in-process; returns (exit code, stderr)."""
    from higherpose.engine.launcher import make_plan, parse
    with pytest.raises(SystemExit) as exc:
        args, cfg = parse(list(argv))
        make_plan(args, cfg, spawn_per_gpu=True)
    return exc.value.code, capsys.readouterr().err + str(exc.value.code)


def test_cli_bad_arguments_give_clear_errors(tmp_path, capsys):
    code, err = _parse_error(capsys, "--cfg", str(tmp_path / "missing.yaml"))
    assert code == 2 and "config file not found" in err and "missing.yaml" in err
    good = tmp_path / "c.yaml"
    good.write_text("TRAIN:\n  LR: 0.01\n")
    code, err = _parse_error(capsys, "--cfg", str(good), "TRAIN.LR")
    assert code == 2 and "KEY VALUE pairs" in err
    code, err = _parse_error(capsys, "--cfg", str(good), "TRAIN.NO_SUCH_KEY", "1")
    assert code == 2 and "NO_SUCH_KEY" in err
    code, err = _parse_error(capsys, "--cfg", str(good), "TRAIN.LR", "fast")
    assert code == 2 and "TRAIN.LR" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("TRAIN: [unclosed\n")
    code, err = _parse_error(capsys, "--cfg", str(broken))
    assert code == 2 and "bad config" in err
    code, err = _parse_error(capsys, "--cfg", str(good), "--gpu", "0,1")
    assert code == 2 and "--gpu takes one integer" in err
    code, err = _parse_error(capsys, "--cfg", str(good), "--cpu-procs", "-1")
    assert code == 2 and "--cpu-procs" in err
    _, err = _parse_error(capsys, "--cfg", str(good), "--world-size", "2", "--rank", "2", "--cpu")
    assert "--rank 2" in err
    if not torch.cuda.is_available():
        _, err = _parse_error(capsys, "--cfg", str(good), "--gpu", "0")
        assert "CUDA is not available" in err


def test_cli_script_reports_errors_on_stderr(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "dist_train.py"), "--cfg",
                        str(tmp_path / "missing.yaml")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "config file not found" in r.stderr


def test_torchrun_env_checks(monkeypatch):
    from higherpose.engine.distributed import torchrun_env
    monkeypatch.delenv("RANK", raising=False)
    assert torchrun_env() is None
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ValueError, match="inconsistent torchrun environment"):
        torchrun_env()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_PORT", "0")
    with pytest.raises(ValueError, match="--standalone"):
        torchrun_env()
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert torchrun_env() == (1, 2, 0)


# ----------------------------------------------------------------------------- GPU (run by the lead)
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_amp_training_and_resume(tmp_path, dtype):
    """One GPU process with torch.amp: finite decreasing loss, fp32 weights, CUDA RNG state saved
    and a mid-epoch resume that reproduces the uninterrupted weights."""
    device = torch.device("cuda", 0)
    settings = {"FP16.ENABLED": True, "FP16.DTYPE": dtype, "TRAIN.END_EPOCH": 2,
                "TRAIN.CHECKPOINT_EVERY_ITERS": 2, "MODEL.EXTRA.DROPOUT": 0.2,
                "CUDNN.BENCHMARK": False, "CUDNN.DETERMINISTIC": True}
    ctx = DistContext(device=device)
    full = final_weights(train(tiny_cfg(tmp_path / "full", **settings), ctx, "gpu.yaml", standin_components()))
    cfg = tiny_cfg(tmp_path / "killed", **settings)
    final_dir = train(cfg, ctx, "gpu.yaml", standin_components(), stop_after_iters=3)
    state = ckpt.load_file(os.path.join(final_dir, "checkpoint.pth.tar"))
    assert "cuda" in state["rng"][0]
    losses = [h["loss"] for h in state["history"]]
    assert all(np.isfinite(losses))
    torch.manual_seed(1)
    torch.cuda.manual_seed(1)
    resumed = final_weights(train(cfg, ctx, "gpu.yaml", standin_components()))
    for k in full:
        assert full[k].dtype == torch.float32
        # loose: CUDA's nearest-upsample backward accumulates with atomics (not bitwise
        # reproducible); a lost dropout RNG stream would differ far more
        torch.testing.assert_close(resumed[k], full[k], rtol=1e-3, atol=1e-4)
