"""Loading checkpoints in the formats upstream projects write.

Accepted: a bare state_dict; a dict holding it under 'state_dict' (HigherHRNet checkpoint.pth.tar,
mmpose), 'model' (HRFormer ImageNet) or 'best_state_dict'; keys prefixed by 'module.' (DDP);
mmpose prefixes 'backbone.' / 'keypoint_head.' (or 'head.' in mmpose 1.x) for networks whose own
keys lack them; mmpose HRFormer names (packed 'attn.attn.qkv', 'attn.attn.proj', 'ffn.'). Files are
read with torch.load(weights_only=True): a pickle holding anything but tensors and plain
containers is refused.
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


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded into the model, with the reason spelled out."""


def read_checkpoint(path):
    """torch.load(path, weights_only=True) with readable errors."""
    if not os.path.isfile(path):
        raise MissingInputError(f"checkpoint file not found: {path} (see {DATA_GUIDE})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = [line.strip() for line in str(e).splitlines() if "Unsupported global" in line]
        if detail:
            raise CheckpointError(f"{path}: refused by torch.load(weights_only=True): it holds Python objects "
                                  f"other than tensors and plain containers, so it is not a state_dict "
                                  f"checkpoint ({detail[0].split('. Please')[0]})") from e
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unreadable or corrupted pickle)") from e
    except (RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from e


def extract_state_dict(obj, source="checkpoint"):
    """The tensor mapping inside `obj` (see module docstring), validated."""
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
    return obj


def _strip_prefix(sd, prefix):
    if all(k.startswith(prefix) for k in sd):
        return OrderedDict((k[len(prefix):], v) for k, v in sd.items())
    return sd


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
    """Rename checkpoint keys towards `model_keys` (prefixes, mmpose HRFormer names)."""
    sd = _strip_prefix(OrderedDict(sd), "module.")
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
