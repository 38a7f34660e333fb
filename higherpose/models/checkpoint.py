"""Loading checkpoints in the formats upstream projects write.

Accepted: a bare state_dict; a dict holding it under 'state_dict' (HigherHRNet checkpoint.pth.tar,
mmpose), 'model' (HRFormer ImageNet) or 'best_state_dict'; keys prefixed by 'module.' (DDP);
mmpose prefixes 'backbone.' / 'keypoint_head.' (or 'head.' in mmpose 1.x) for networks whose own
keys lack them; mmpose HRFormer names (packed 'attn.attn.qkv', 'attn.attn.proj', 'ffn.'). Files are
read with torch.load(weights_only=True): a pickle holding anything but tensors and plain
containers is refused.

`read_checkpoint` and `extract_state_dict` are the package's one checkpoint reader: the training
engine (higherpose.engine.checkpoint) reads its resume files with them too.
"""
import os
import pickle
from collections import OrderedDict, namedtuple
from collections.abc import Mapping

import torch

from ..errors import DATA_GUIDE, MissingInputError

LoadResult = namedtuple("LoadResult", ["missing_keys", "unexpected_keys", "mismatched_keys"])

_NESTED = ("state_dict", "model", "best_state_dict", "model_state_dict")
_MMPOSE_PREFIXES = ("backbone.", "keypoint_head.", "head.")
DDP_PREFIX = "module."


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded into the model, with the reason spelled out."""


def read_checkpoint(path):
    """The object stored at `path`: torch.load(path, map_location="cpu", weights_only=True), with
    errors that name the file and say what is wrong with it (CheckpointError)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingInputError(f"checkpoint file not found: {path} (see {DATA_GUIDE})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise  # permission denied, I/O error: the system's message names the file
    except Exception as err:  # on foreign bytes torch.load fails with anything, e.g. KeyError: 101
        looks_like, description = _looks_like(path)
        if looks_like == "other":  # torch's own message would only add noise about weights_only
            raise CheckpointError(f"{path} is not a PyTorch checkpoint: {description}") from err
        if isinstance(err, pickle.UnpicklingError):  # how torch's weights-only unpickler says no
            raise CheckpointError(_refused(path, err)) from err
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: {description} "
                              f"({type(err).__name__}: {_first_sentence(err)})") from err


def _first_sentence(err):
    text = str(err).strip()
    return text.splitlines()[0].split(". ")[0] if text else "no detail"


def _looks_like(path):
    """("zip" | "pickle" | "other", a description) from the file's first bytes: torch.save writes
    a zip archive, or in its legacy format a pickle that starts with the PROTO opcode."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PK"):
        return "zip", "a truncated or damaged zip archive"
    if head.startswith(b"\x80"):
        return "pickle", "a damaged pickle, or one not written by torch.save"
    if not head.strip():
        return "other", "the file is empty" if not head else "the file holds only white space"
    if head.startswith(b"version https://git-lfs"):
        return "other", "it is a Git LFS pointer, not the weights (fetch them with `git lfs pull`)"
    try:
        first_line = head.decode("utf-8").strip().splitlines()[0]
    except UnicodeDecodeError:
        return "other", f"it is neither a zip archive nor a pickle (it starts with {head[:16]!r})"
    return "other", f"it is a text file (it starts with {first_line[:40]!r})"


def _refused(path, err):
    """The message for a pickle that torch.load(weights_only=True) refused to unpickle."""
    lines = [line.strip() for line in str(err).splitlines()]
    named = [line for line in lines if "global" in line.lower()]
    if named:  # a class or function: unpickling it would import and call code the file names
        return (f"{path}: refused by torch.load(weights_only=True): it holds Python objects other than tensors "
                f"and plain containers, and loading them would run code named in the file "
                f"({named[0].split('. ')[0]}). It is not a state_dict checkpoint; if you trust its source, "
                f"load it once with weights_only=False and save its state_dict")
    detail = next((line for line in lines if line.lower().startswith("unsupported")), _first_sentence(err))
    return (f"{path}: refused by torch.load(weights_only=True): it uses pickle instructions the safe loader "
            f"does not accept ({detail}); it is not a state_dict written by torch.save (or it is damaged), "
            f"and unpickling it without weights_only could run code")


def extract_state_dict(obj, source="checkpoint"):
    """The model state_dict inside a loaded checkpoint, whatever its layout (module docstring):
    nested under a known key or not, with the DDP `module.` prefix stripped; validated."""
    if isinstance(obj, Mapping):
        for key in _NESTED:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source} is not a state_dict: got {type(obj).__name__}"
                              + ("" if not isinstance(obj, Mapping) else " with no entries"))
    bad = [(k, type(v).__name__) for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(f"{source} is not a state_dict: {len(bad)} of {len(obj)} entries are not "
                              f"name -> tensor, e.g. {bad[:3]} (top-level keys: {list(obj)[:8]})")
    return strip_module_prefix(obj)


def strip_module_prefix(state_dict, prefix=DDP_PREFIX):
    """Keys without DistributedDataParallel's `module.` prefix. Only when every key has it: a
    model may own a submodule that is really called `module`."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items())
    return state_dict


def _split_qkv(sd):
    """mmpose HRFormer `attn.attn.qkv` ([3C, C], [3C]) -> q_proj / k_proj / v_proj; `proj` -> out_proj."""
    out = OrderedDict()
    for k, v in sd.items():
        if ".attn.attn.qkv." in k:
            for name, part in zip(("q_proj", "k_proj", "v_proj"), v.chunk(3, dim=0)):
                out[k.replace(".attn.attn.qkv.", f".attn.attn.{name}.")] = part.clone()
        elif ".attn.attn.proj." in k:
            out[k.replace(".attn.attn.proj.", ".attn.attn.out_proj.")] = v
        else:
            out[k] = v
    return out


def adapt_state_dict(sd, model_keys):
    """Rename checkpoint keys towards `model_keys` (mmpose prefixes, mmpose HRFormer names)."""
    sd = OrderedDict(sd)
    model_keys = set(model_keys)
    model_has_backbone = any(k.startswith("backbone.") for k in model_keys)
    if not model_has_backbone and any(k.startswith(_MMPOSE_PREFIXES) for k in sd):
        renamed = OrderedDict()
        for k, v in sd.items():
            for prefix in _MMPOSE_PREFIXES:
                if k.startswith(prefix):
                    k = k[len(prefix):]
                    break
            renamed[k] = v
        sd = renamed
    if model_has_backbone and "keypoint_head.final_layer.weight" in model_keys and "head.final_layer.weight" in sd:
        sd = OrderedDict((("keypoint_head." + k[5:]) if k.startswith("head.") else k, v) for k, v in sd.items())
    if any(".attn.attn.qkv." in k for k in sd):
        sd = _split_qkv(sd)
    if any(".ffn." in k for k in sd) and not any(".ffn." in k for k in model_keys):
        sd = OrderedDict((k.replace(".ffn.", ".mlp."), v) for k, v in sd.items())
    return sd


def _preview(keys, n=5):
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n} more)" if len(keys) > n else "")


def load_checkpoint(model, path_or_dict, strict=True):
    """Load a checkpoint (file path or already-loaded object) into `model`.

    strict=True: every model key must be present with the same shape and no checkpoint key may be
    left over, else CheckpointError names a few missing / unexpected / mismatched keys and counts.
    strict=False: loads what matches (name and shape) and returns the rest in a LoadResult.
    Constant buffers the checkpoint may lack (relative_position_index) are taken from the model.
    """
    source = path_or_dict if isinstance(path_or_dict, (str, os.PathLike)) else "checkpoint"
    obj = read_checkpoint(os.fspath(path_or_dict)) if isinstance(path_or_dict, (str, os.PathLike)) else path_or_dict
    own = model.state_dict()
    sd = adapt_state_dict(extract_state_dict(obj, str(source)), own.keys())
    for k in own:
        if k.endswith("relative_position_index") and k not in sd:
            sd[k] = own[k]
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if strict and (missing or unexpected or mismatched):
        lines = [f"cannot load {source} into {type(model).__name__} with strict=True:"]
        if missing:
            lines.append(f"  {len(missing)} missing keys (of {len(own)}): {_preview(missing)}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected keys (of {len(sd)}): {_preview(unexpected)}")
        if mismatched:
            lines.append(f"  {len(mismatched)} shape mismatches: " + ", ".join(
                f"{k} checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched[:5]))
        raise CheckpointError("\n".join(lines))
    usable = OrderedDict((k, v) for k, v in sd.items() if k in own and k not in mismatched)
    model.load_state_dict(usable, strict=False)
    return LoadResult(missing, unexpected, mismatched)


def load_pretrained(model, path, pretrained_layers=("*",)):
    """Upstream `init_weights(pretrained)`: copy checkpoint entries whose first name component is in
    PRETRAINED_LAYERS ('*' = any) and that exist in the model with the same shape. Returns the keys
    loaded. A named but missing file is an error (set MODEL.PRETRAINED '' to train from scratch).
    """
    if not os.path.isfile(path):
        raise MissingInputError(f"MODEL.PRETRAINED names {path!r}, which does not exist (where the "
                                f"ImageNet weights come from: {DATA_GUIDE}; MODEL.PRETRAINED '' trains "
                                f"from scratch)")
    sd = adapt_state_dict(extract_state_dict(read_checkpoint(path), path), model.state_dict().keys())
    own = model.state_dict()
    layers = set(pretrained_layers)
    chosen = OrderedDict((k, v) for k, v in sd.items()
                         if ("*" in layers or k.split(".")[0] in layers) and k in own and v.shape == own[k].shape)
    if not chosen:
        raise CheckpointError(f"{path}: no entry matches the model's keys and shapes for PRETRAINED_LAYERS "
                              f"{sorted(layers)} (checkpoint keys: {_preview(sd.keys(), 4)})")
    model.load_state_dict(chosen, strict=False)
    return list(chosen)
