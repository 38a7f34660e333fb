"""Several nodes as one job, and elastic restart, with torchrun on this machine (loopback, gloo).

Each "node" is one `torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d` invocation; the
c10d rendezvous assigns the ranks. Most workers run this file as their script (`_worker_main` at
the bottom): the training tool's own steps (launcher.parse -> make_plan -> run) with the tiny
stand-in model, data and loss of test_engine_helpers, plus two test-only extras outside the
engine: every rank saves its final weights, and one rank can SIGKILL itself at an iteration.
One test runs the real tool (`-m higherpose.cli.train`) on the synthetic-crowd config.

Why a world of 2 x batch b equals one process x batch 2b: the DistributedSampler deals one
seeded permutation round-robin, so iteration i of the two ranks together sees exactly the
samples of the single process's iteration i; a sample's content depends on (epoch, index) only;
the loss is a mean over images and DDP averages the gradients. The stand-in has no BatchNorm
(statistics per process: PyTorch's SyncBatchNorm needs GPUs) and no dropout there (each rank
draws from its own RNG stream). What is left is float summation order, see ATOL.
"""
import glob
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)  # for the workers, which run this file as a script

from test_engine_helpers import (TinyBottomUp, build_tiny_dataset, build_tiny_loss,  # noqa: E402
                                 build_tiny_model, final_weights, one_thread, standin_components,  # noqa: F401
                                 tiny_cfg)

from higherpose.engine import DistContext, train  # noqa: E402
from higherpose.engine import checkpoint as ckpt  # noqa: E402
from higherpose.engine.distributed import free_port, shared_store_restart_warning  # noqa: E402

TIMEOUT = 150  # seconds for any one torchrun job (each takes about 10 s here)
OUT_ENV = "HIGHERPOSE_TEST_MULTINODE_OUT"  # where workers leave their weights and start marks
KILL_ENV = "HIGHERPOSE_TEST_MULTINODE_KILL"  # "RANK:N": that rank SIGKILLs itself after N iterations, once

# Two nodes vs one process: summation order only ((g_a + g_b) / 2 over ranks vs one mean over the
# batch) changes the gradients by a few float32 ulps per step; measured 2.2e-8 at most on the
# weights after 8 steps. ATOL is 50x that, and training moves the weights by >= 100 x ATOL.
ATOL, LOSS_RTOL = 1e-6, 1e-5

# 16 samples, global batch 4: 4 iterations per epoch, 2 epochs.
SETTINGS = {"TRAIN.END_EPOCH": 2, "TRAIN.LR_STEP": [1], "TRAIN.OPTIMIZER": "sgd", "TRAIN.LR": 0.05,
            "TRAIN.WD": 1e-4, "TRAIN.MOMENTUM": 0.9, "TEST.WITH_HEATMAPS": (True, True),
            "TEST.WITH_AE": (True, False)}
STEM = "multinode"  # the config file's stem names the output folder


def _write_cfg(folder, **overrides):
    """The stand-in config as a file (the launcher reads a file, as the tool does)."""
    os.makedirs(folder, exist_ok=True)
    cfg = tiny_cfg(folder, **{**SETTINGS, **overrides})
    path = folder / f"{STEM}.yaml"
    path.write_text(cfg.dump())
    return cfg, str(path)


def _final_dir(cfg):
    return os.path.join(cfg.OUTPUT_DIR, "tiny_kpt", "tiny_standin", STEM)


def _torchrun(endpoint, script_args, max_restarts=0):
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", f"job{os.getpid()}",
            "--max-restarts", str(max_restarts), "--monitor-interval", "0.1", *script_args]


def _launch_nodes(commands, env, log_dir, timeout=TIMEOUT):
    """Start one command per node at once; [(returncode, output)] once all have ended.

    Outputs go to log_dir/node<i>.log. A job still running at the timeout is killed whole:
    torchrun puts its workers in sessions of their own, so they are found as its descendants."""
    logs = [open(log_dir / f"node{i}.log", "w+") for i in range(len(commands))]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
             for cmd, f in zip(commands, logs)]
    timed_out = False
    try:
        for p in procs:
            p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        for p in procs:
            for pid in [*_descendants(p.pid), p.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.wait()
    outs = []
    for f in logs:
        f.seek(0)
        outs.append(f.read())
        f.close()
    if timed_out:
        pytest.fail(f"torchrun job still running after {timeout} s:\n" + "\n----\n".join(o[-3000:] for o in outs))
    return [(p.returncode, out) for p, out in zip(procs, outs)]


def _descendants(pid):
    """Process ids under `pid` (Linux /proc)."""
    children = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.split("/")[2]))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _run_two_nodes(folder, node_args, max_restarts=0, timeout=TIMEOUT, **env):
    """Two torchrun nodes of one worker each, one c10d rendezvous on a free loopback port;
    node_args: the script and its arguments, one list per node (or one list for both)."""
    if not isinstance(node_args[0], list):
        node_args = [node_args, node_args]
    out = folder / "ranks"
    out.mkdir()
    endpoint = f"127.0.0.1:{free_port()}"
    env = {**os.environ, OUT_ENV: str(out), "OMP_NUM_THREADS": "1", **env}
    results = _launch_nodes([_torchrun(endpoint, args, max_restarts) for args in node_args], env, folder, timeout)
    return out, results


def _assert_ok(results):
    for rc, out in results:
        assert rc == 0, out[-4000:]


def _rank_weights(out):
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """One process, global batch 4, run in this process (no launch cost)."""
    cfg, cfg_file = _write_cfg(tmp_path_factory.mktemp("single"), **{"TRAIN.IMAGES_PER_GPU": 4})
    final_dir = train(cfg, DistContext(), cfg_file, standin_components())
    return final_dir, final_weights(final_dir), ckpt.load_file(os.path.join(final_dir, "checkpoint.pth.tar"))


# ----------------------------------------------------------------------------- one job on two nodes
def test_two_nodes_train_as_one_job(tmp_path, single_process):
    """Two torchrun nodes x batch 2 end where one process with batch 4 ends."""
    cfg, cfg_file = _write_cfg(tmp_path, **{"TRAIN.IMAGES_PER_GPU": 2})
    out, results = _run_two_nodes(tmp_path, [__file__, "--cfg", cfg_file])
    _assert_ok(results)
    _, single_w, single_state = single_process
    final_dir = _final_dir(cfg)
    state = ckpt.load_file(os.path.join(final_dir, "checkpoint.pth.tar"))

    # one job: a world of 2 with a rank on each node, the rendezvous gave out ranks 0 and 1
    assert len(state["rng"]) == 2 and state["global_iteration"] == 8
    assert sorted(open(p).read() for p in glob.glob(str(out / "start_*"))) == ["0", "1"]
    # DDP keeps the replicas identical, bit for bit
    rank0, rank1 = _rank_weights(out)
    assert _max_diff(rank0, rank1) == 0
    # rank 0 wrote the final file from those weights
    assert _max_diff(final_weights(final_dir), rank0) == 0

    # and equal to one process with the same global batch
    two_loss = [h["loss"] for h in state["history"]]
    one_loss = [h["loss"] for h in single_state["history"]]
    assert len(two_loss) == len(one_loss) == 8
    np.testing.assert_allclose(two_loss, one_loss, rtol=LOSS_RTOL)
    assert _max_diff(rank0, single_w) < ATOL
    # the comparison is not between two barely trained models
    torch.manual_seed(cfg.SEED)  # as the trainer seeds rank 0 before building the model
    initial = TinyBottomUp().state_dict()
    assert _max_diff(single_w, initial) > 100 * ATOL
    assert one_loss[-1] < 0.8 * one_loss[0]


# ----------------------------------------------------------------------------- elastic restart
RESTART = {"TRAIN.IMAGES_PER_GPU": 2, "TRAIN.CHECKPOINT_EVERY_ITERS": 2, "MODEL.EXTRA.DROPOUT": 0.3}
# torch 2.13's torchrun keeps its shared store across restarts without a per-attempt prefix, so a
# restarted worker can read a dead worker's address (pytorch/pytorch#135712): a fresh store per
# attempt instead, as shared_store_restart_warning tells users.
FRESH_STORE = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def test_elastic_restart_resumes_and_loses_nothing(tmp_path):
    """Rank 1 is SIGKILLed in epoch 1 after iteration 3 of 4 (global 7; checkpoint at 6); torchrun
    (--max-restarts 1) restarts both nodes' workers, which resume from that checkpoint and finish
    where an uninterrupted run does. Dropout is on, so each rank's restored RNG state matters."""
    ref_cfg, ref_file = _write_cfg(tmp_path / "uninterrupted", **RESTART)
    ref_out, results = _run_two_nodes(tmp_path / "uninterrupted", [__file__, "--cfg", ref_file])
    _assert_ok(results)

    cfg, cfg_file = _write_cfg(tmp_path / "killed", **RESTART)
    out, results = _run_two_nodes(tmp_path / "killed", [__file__, "--cfg", cfg_file], max_restarts=1,
                                  **{KILL_ENV: "1:7"}, **FRESH_STORE)
    _assert_ok(results)
    log = "\n".join(o for _, o in results)
    # the kill happened, and torchrun started every worker again, once
    assert os.path.exists(out / "killed")
    starts = sorted(open(p).read() for p in glob.glob(str(out / "start_*")))
    assert starts == ["0", "0", "1", "1"], starts  # RANK of each worker start: two attempts
    final_dir = _final_dir(cfg)
    assert f"=> resumed from {os.path.join(final_dir, 'checkpoint.pth.tar')} (epoch 1, iteration 2)" in log

    # nothing lost: the counters, the history and the weights are the uninterrupted run's
    state = ckpt.load_file(os.path.join(final_dir, "checkpoint.pth.tar"))
    assert (state["epoch"], state["iteration"], state["global_iteration"]) == (2, 0, 8)
    assert [h["iteration"] for h in state["history"]] == list(range(1, 9))
    ref_state = ckpt.load_file(os.path.join(_final_dir(ref_cfg), "checkpoint.pth.tar"))
    assert [h["loss"] for h in state["history"]] == [h["loss"] for h in ref_state["history"]]
    rank0, rank1 = _rank_weights(out)
    ref0, _ = _rank_weights(ref_out)
    assert _max_diff(rank0, rank1) == 0
    # same ranks, same arithmetic, same restored RNG streams: bit for bit
    assert _max_diff(rank0, ref0) == 0
    # the files a user keeps exist and load
    model = TinyBottomUp()  # strict loads
    model.load_state_dict(ckpt.load_file(os.path.join(final_dir, "model_best.pth.tar")))
    model.load_state_dict(ckpt.strip_prefix(state["state_dict"]))
    model.load_state_dict(final_weights(final_dir))
    assert _max_diff(model.state_dict(), rank0) == 0
    assert not glob.glob(os.path.join(final_dir, "*.tmp*"))  # no half-written files left


def test_shared_store_warning_names_the_setting(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "3")
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in shared_store_restart_warning()
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "0")  # never restarted: no stale keys
    assert shared_store_restart_warning() is None
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "3")
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "False")  # a fresh store per attempt
    assert shared_store_restart_warning() is None


# ----------------------------------------------------------------------------- nodes that do not share OUTPUT_DIR
def test_nodes_that_see_different_checkpoints_stop_with_a_clear_error(tmp_path, single_process):
    """Only rank 0 writes checkpoints; a node whose OUTPUT_DIR is not the shared one would start
    from scratch beside resumed ranks. Both nodes stop at once, saying why."""
    node_args = []
    for node in (0, 1):
        cfg, cfg_file = _write_cfg(tmp_path / f"node{node}", **{"TRAIN.IMAGES_PER_GPU": 2})
        node_args.append([__file__, "--cfg", cfg_file])
    os.makedirs(_final_dir(cfg))  # node 1's folder holds a finished run's checkpoint, node 0's none
    shutil.copy(os.path.join(single_process[0], "checkpoint.pth.tar"), _final_dir(cfg))
    _, results = _run_two_nodes(tmp_path, node_args, timeout=60)
    for rc, out in results:
        assert rc != 0
        assert "the ranks would start from different points" in out, out[-3000:]
        assert "epoch 2 iteration 0 from" in out and "epoch 0 iteration 0 from no checkpoint" in out


# ----------------------------------------------------------------------------- the real tool
CFG = os.path.join(ROOT, "configs", "synthetic", "higher_hrnet_tiny.yaml")


def test_training_tool_on_two_nodes(tmp_path):
    """`torchrun ... -m higherpose.cli.train` with the synthetic-crowd HigherHRNet on two nodes,
    on a set rendered beforehand (so that no node renders it during the run).

    Not compared with one process: the network has BatchNorm, whose batch statistics are per
    process on CPUs (a world of 2 x batch 2 normalises differently from 1 x batch 4); the
    stand-in tests above make that comparison."""
    from higherpose.config import load_config
    from higherpose.data.synthetic import generate
    from higherpose.models import build_model, load_checkpoint

    data_root = tmp_path / "synthetic_crowd"
    generate(str(data_root), num_train=8, num_test=2, image_size=64, seed=0, max_people=3)
    annotations = data_root / "json" / "crowdpose_train.json"
    rendered = annotations.stat().st_mtime_ns
    opts = ["OUTPUT_DIR", str(tmp_path / "output"), "LOG_DIR", str(tmp_path / "log"), "DATASET.ROOT", str(data_root),
            "DATASET.INPUT_SIZE", "64", "DATASET.OUTPUT_SIZE", "[16, 32]", "TRAIN.IMAGES_PER_GPU", "2",
            "TRAIN.END_EPOCH", "1", "TRAIN.WARMUP_ITERS", "2", "TRAIN.CHECKPOINT_EVERY_ITERS", "1",
            "WORKERS", "0", "PRINT_FREQ", "1"]
    _, results = _run_two_nodes(tmp_path, ["-m", "higherpose.cli.train", "--cfg", CFG, *opts])
    _assert_ok(results)
    assert annotations.stat().st_mtime_ns == rendered  # read, not rendered again

    cfg = load_config(CFG, opts)
    final_dir = os.path.join(cfg.OUTPUT_DIR, "synthetic_crowd", "pose_higher_hrnet", "higher_hrnet_tiny")
    # 8 images / (2 ranks x 2): 2 iterations; one checkpoint holding both ranks' RNG states
    state = ckpt.load_file(os.path.join(final_dir, "checkpoint.pth.tar"))
    assert (state["epoch"], state["iteration"], state["global_iteration"]) == (1, 0, 2)
    assert len(state["rng"]) == 2 and [h["iteration"] for h in state["history"]] == [1, 2]
    # each rank logged, rank 0 for a world of 2
    logs = {r: glob.glob(os.path.join(final_dir, f"*_train_rank{r}.log")) for r in (0, 1)}
    assert len(logs[0]) == len(logs[1]) == 1
    assert "world size 2" in open(logs[0][0]).read()
    model = build_model(cfg, is_train=False)
    for name in ("final_state.pth.tar", "model_best.pth.tar", "checkpoint.pth.tar"):
        load_checkpoint(model, os.path.join(final_dir, name))  # strict


# ----------------------------------------------------------------------------- the workers
def _kill_hook(out, rank):
    """A forward pre-hook that SIGKILLs this process when iteration N + 1 starts, on the rank
    KILL_ENV names, once per job (a file marks it done: torchrun's restart count is per node)."""
    spec = os.environ.get(KILL_ENV)
    if not spec or int(spec.split(":")[0]) != rank or os.path.exists(os.path.join(out, "killed")):
        return None
    after = int(spec.split(":")[1])
    calls = [0]

    def hook(module, inputs):
        calls[0] += 1
        if calls[0] > after:
            open(os.path.join(out, "killed"), "w").close()
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _worker_main(argv):
    """What higherpose-train does under torchrun (launcher.parse, make_plan, run), with the
    stand-ins; then this rank's final weights go to OUT_ENV/rank<R>.pt."""
    from higherpose.engine import Components, launcher

    rank, out = int(os.environ["RANK"]), os.environ[OUT_ENV]
    with open(os.path.join(out, f"start_{os.getpid()}"), "w") as f:
        f.write(str(rank))
    built = []

    def build_model(cfg, is_train):
        model = build_tiny_model(cfg, is_train)
        hook = _kill_hook(out, rank)
        if hook:
            model.register_forward_pre_hook(hook)
        built.append(model)
        return model

    args, cfg = launcher.parse(argv)
    components = Components(build_model, build_tiny_dataset, build_tiny_loss)
    launcher.run(launcher.make_plan(args, cfg, spawn_per_gpu=False, components=components))
    torch.save(built[0].state_dict(), os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
