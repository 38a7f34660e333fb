"""Checkpoint files: one reader for the models and the training engine, errors that say what a
bad file is, and no temporary files left behind by killed runs."""
import os
import pickle
import subprocess
import sys

import pytest
import torch

from higherpose.engine import checkpoint as ckpt
from higherpose.models.checkpoint import CheckpointError, extract_state_dict, read_checkpoint


def both_readers():
    """The models' reader and the engine's resume reader: the same function underneath."""
    return [read_checkpoint, ckpt.load_file]


# ----------------------------------------------------------------------------- (a) not a checkpoint
@pytest.mark.parametrize("reader", both_readers())
@pytest.mark.parametrize("text", [b"hello\n",  # torch.load alone: KeyError: 101 (the byte 'e')
                                  b"epoch 3\nlr 0.001\n",  # IndexError: pop from empty list
                                  b"model weights go here\n",  # UnpicklingError about weights_only
                                  b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n",
                                  b""])
def test_a_text_file_is_named_and_called_not_a_checkpoint(tmp_path, reader, text):
    path = tmp_path / "weights.pth"
    path.write_bytes(text)
    with pytest.raises(CheckpointError) as info:
        reader(path)
    message = str(info.value)
    assert str(path) in message and "is not a PyTorch checkpoint" in message
    assert "weights_only" not in message  # nothing was refused: the file is simply something else


def test_what_the_foreign_file_is_is_said(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n")
    with pytest.raises(CheckpointError, match="Git LFS pointer"):
        read_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(path)
    path.write_bytes(b"hello\n")
    with pytest.raises(CheckpointError, match="text file"):
        read_checkpoint(path)


@pytest.mark.parametrize("reader", both_readers())
def test_a_truncated_checkpoint_is_named_and_called_damaged(tmp_path, reader):
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"w": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint: a truncated or damaged zip") as info:
        reader(path)
    assert str(path) in str(info.value)


# ----------------------------------------------------------------------------- (b) refused pickles
class RunsCode:
    """Unpickling this calls os.makedirs(marker): what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _malicious_files(tmp_path):
    marker = str(tmp_path / "code_ran")
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": RunsCode(marker)}, tmp_path / "torch_save.pth")
    with open(tmp_path / "pickle_v2.pth", "wb") as f:
        pickle.dump(RunsCode(marker), f, protocol=2)
    with open(tmp_path / "pickle_latest.pth", "wb") as f:
        pickle.dump(RunsCode(marker), f, protocol=pickle.HIGHEST_PROTOCOL)
    return marker, ["torch_save.pth", "pickle_v2.pth", "pickle_latest.pth"]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the protocol-5 file
@pytest.mark.parametrize("reader", both_readers())
def test_a_malicious_pickle_is_reported_as_refused_not_corrupted(tmp_path, reader):
    marker, names = _malicious_files(tmp_path)
    for name in names:
        with pytest.raises(CheckpointError) as info:
            reader(tmp_path / name)
        message = str(info.value)
        assert str(tmp_path / name) in message
        assert "refused by torch.load(weights_only=True)" in message and "run code" in message
        assert "corrupt" not in message.lower() and "is not a PyTorch checkpoint" not in message
    assert not os.path.exists(marker)  # and nothing in them ran


def test_a_refused_object_is_named(tmp_path):
    marker, _ = _malicious_files(tmp_path)
    with pytest.raises(CheckpointError, match=r"holds Python objects other than tensors.*os\.makedirs"):
        read_checkpoint(tmp_path / "torch_save.pth")


# ----------------------------------------------------------------------------- one reader, all layouts
def test_engine_checkpoint_layout_gives_the_unprefixed_model_weights(tmp_path):
    weights = {"conv.weight": torch.randn(2, 3), "bn.running_mean": torch.randn(2)}
    state = {"epoch": 3, "model": "pose_higher_hrnet", "state_dict": ckpt.add_prefix(weights),
             "best_state_dict": {k: torch.zeros_like(v) for k, v in weights.items()},
             "optimizer": {"state": {}, "param_groups": []}, "rng": [ckpt.get_rng_state()]}
    ckpt.atomic_save(state, tmp_path / "checkpoint.pth.tar")
    got = extract_state_dict(ckpt.load_file(tmp_path / "checkpoint.pth.tar"))
    assert set(got) == set(weights) and all(torch.equal(got[k], v) for k, v in weights.items())


def test_module_prefix_is_stripped_only_when_every_key_has_it():
    # a DDP state_dict
    assert list(ckpt.strip_prefix({"module.a": 1, "module.b.c": 2})) == ["a", "b.c"]
    # a model with a submodule really called `module` next to others keeps its names
    own = {"module.w": 1, "head.w": 2}
    assert list(ckpt.strip_prefix(own)) == ["module.w", "head.w"]
    assert list(extract_state_dict({"module.w": torch.ones(1), "head.w": torch.ones(1)})) == ["module.w", "head.w"]


# ----------------------------------------------------------------------------- (c) stale temporaries
def _dead_pid():
    """The pid of a process that has exited (and was reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def _impossible_pids(n):
    """Pids above the kernel's limit: no process can have them."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            pid_max = int(f.read())
    except OSError:
        pid_max = 4194304  # Linux's largest limit
    return [pid_max + 1 + i for i in range(n)]


@pytest.mark.skipif(os.name != "posix", reason="stale writers are recognised by pid only on POSIX")
def test_next_save_removes_temporaries_of_killed_runs_and_nothing_else(tmp_path):
    path = tmp_path / "checkpoint.pth.tar"
    ckpt.atomic_save({"epoch": 1}, path)
    dead = _dead_pid()
    gone, folder, link = _impossible_pids(3)
    stale = [f"checkpoint.pth.tar.tmp.{dead}", f"checkpoint.pth.tar.tmp.{gone}"]
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        kept = [f"checkpoint.pth.tar.tmp.{live.pid}",  # a writer that still runs
                f"model_best.pth.tar.tmp.{dead}",  # another file's temporary
                f"checkpoint.pth.tar.tmp.{dead}.bak", "checkpoint.pth.tar.tmp.abc", "checkpoint.pth.tar.tmp.",
                "xcheckpoint.pth.tar.tmp.12", "checkpoint.pth.tar.bak", "notes.txt"]
        for name in stale + kept:
            (tmp_path / name).write_bytes(b"half a zip")
        os.mkdir(tmp_path / f"checkpoint.pth.tar.tmp.{folder}")  # a folder with the pattern's name
        os.symlink(tmp_path / "notes.txt", tmp_path / f"checkpoint.pth.tar.tmp.{link}")  # and a link
        kept += [f"checkpoint.pth.tar.tmp.{folder}", f"checkpoint.pth.tar.tmp.{link}"]

        ckpt.atomic_save({"epoch": 2}, path)

        assert sorted(os.listdir(tmp_path)) == sorted(kept + ["checkpoint.pth.tar"])
        assert ckpt.load_file(path)["epoch"] == 2
    finally:
        live.kill()
        live.wait()


@pytest.mark.skipif(os.name != "posix", reason="stale writers are recognised by pid only on POSIX")
def test_a_failed_save_keeps_the_checkpoint_and_touches_no_temporaries(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth.tar"
    ckpt.atomic_save({"epoch": 1}, path)
    stale = tmp_path / f"checkpoint.pth.tar.tmp.{_dead_pid()}"
    stale.write_bytes(b"half a zip")

    def fails(obj, f, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fails)
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == sorted(["checkpoint.pth.tar", stale.name])
    assert ckpt.load_file(path)["epoch"] == 1
