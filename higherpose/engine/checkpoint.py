"""Training checkpoints: atomic writes, safe loading, RNG state capture.

`checkpoint.pth.tar` keeps upstream's keys — epoch (the next epoch to run), model (MODEL.NAME),
state_dict (with the `module.` prefix, as upstream's DistributedDataParallel model wrote it),
best_state_dict (no prefix), perf, optimizer — plus higherpose's: iteration (batches already
done in `epoch`, for mid-epoch resume), scheduler, scaler, rng (one entry per rank), history
(logged losses, for the training curve) and config (the YAML text).

Everything stored is a tensor, number, string, list or dict, so `torch.load(weights_only=True)`
reads it. Files are read by the package's one checkpoint reader (higherpose.models.checkpoint).
"""
import os
import random
import re
import warnings

import numpy as np
import torch

from ..models.checkpoint import DDP_PREFIX as PREFIX
from ..models.checkpoint import read_checkpoint
from ..models.checkpoint import strip_module_prefix as strip_prefix  # noqa: F401  (used by the trainer)


def atomic_save(obj, path):
    """torch.save to a temporary file next to `path`, then rename it over `path`.

    A crash or an error mid-write leaves any previous file at `path` untouched. Once the rename
    has succeeded, temporary files of `path` that killed runs left behind are removed.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    remove_stale_temporaries(path)


_PID = re.compile(r"[0-9]+")


def remove_stale_temporaries(path):
    """Delete `<path>.tmp.<pid>` files whose writer process no longer runs (a run killed mid-save).

    Only that exact name pattern next to `path` is touched, never a directory or link, never the
    file of a live process (another writer may be about to rename it); pids are checked on this
    machine, so one output folder must not be written from two machines at once.
    """
    folder, name = os.path.split(os.fspath(path))
    prefix = f"{name}.tmp."
    with os.scandir(folder or ".") as entries:
        stale = [e.path for e in entries
                 if e.name.startswith(prefix) and _PID.fullmatch(e.name[len(prefix):])
                 and e.is_file(follow_symlinks=False) and not _process_exists(int(e.name[len(prefix):]))]
    for tmp in stale:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass  # removed by someone else meanwhile
        except OSError as err:  # the checkpoint itself is saved; leave the leftover with a warning
            warnings.warn(f"could not remove the stale temporary checkpoint {tmp}: {err}")


def _process_exists(pid):
    """Whether `pid` may be a running process here (when in doubt: yes, so its file is kept)."""
    if pid == os.getpid():
        return True
    if os.name != "posix" or pid <= 0:
        return True  # no safe probe (os.kill would terminate on Windows; 0 is a process group)
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: another user's live process
        return True
    return True


def load_file(path):
    """A training checkpoint (or any checkpoint file) as stored: torch.load(weights_only=True) on
    the CPU, with errors that name the file (FileNotFoundError, CheckpointError)."""
    return read_checkpoint(path)


def add_prefix(state_dict):
    return {k if k.startswith(PREFIX) else PREFIX + k: v for k, v in state_dict.items()}


# ----------------------------------------------------------------------------- RNG states
def get_rng_state(device=None):
    """This process's torch, numpy, python (and `device`'s CUDA) RNG states as tensors and lists."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }
    if device is not None and torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device=None):
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and device is not None and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
