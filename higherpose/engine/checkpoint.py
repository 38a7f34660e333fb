"""Training checkpoints: atomic writes, safe loading, RNG state capture.

`checkpoint.pth.tar` keeps upstream's keys — epoch (the next epoch to run), model (MODEL.NAME),
state_dict (with the `module.` prefix, as upstream's DistributedDataParallel model wrote it),
best_state_dict (no prefix), perf, optimizer — plus higherpose's: iteration (batches already
done in `epoch`, for mid-epoch resume), scheduler, scaler, rng (one entry per rank), history
(logged losses, for the training curve) and config (the YAML text).

Everything stored is a tensor, number, string, list or dict, so `torch.load(weights_only=True)`
reads it.
"""
import os
import random

import numpy as np
import torch

PREFIX = "module."


def atomic_save(obj, path):
    """torch.save to a temporary file next to `path`, then rename it over `path`.

    A crash or an error mid-write leaves any previous file at `path` untouched.
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


def load_file(path, map_location="cpu"):
    """torch.load with weights_only=True and a clear error for a missing or corrupt file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, pickle with code objects, ...
        raise RuntimeError(f"cannot read checkpoint {path}: {err}") from err


def add_prefix(state_dict):
    return {k if k.startswith(PREFIX) else PREFIX + k: v for k, v in state_dict.items()}


def strip_prefix(state_dict):
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state_dict.items()}


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
