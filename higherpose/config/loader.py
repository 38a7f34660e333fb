"""Reading experiment YAMLs the way upstream tools do: `--cfg FILE` plus `KEY VALUE` pairs."""
import glob
import importlib.resources
import os

import yaml
from yacs.config import CfgNode

from .default import get_default_config

# The experiment YAMLs ship inside the package (higherpose/configs/, the same tree as upstream's
# experiments/), so names resolve the same from a checkout, an editable install or a wheel.
CONFIG_ROOT = os.fspath(importlib.resources.files("higherpose") / "configs")


def resolve_config_path(path):
    """Return an existing config file for `path`.

    In order: the path itself (a file of the user's); upstream's `experiments/<dataset>/...`
    and this project's `configs/<dataset>/...` mapped onto the packaged configs, so upstream
    command lines run verbatim from any directory; a path relative to the packaged configs
    (`crowd_pose/higher_hrnet/w32_512_adam_lr1e-3.yaml`); a bare file name with or without
    `.yaml` (`higher_hrnet_tiny`) when exactly one packaged config has it.
    """
    if os.path.isfile(path):
        return path
    parts = [p for p in os.path.normpath(path).split(os.sep) if p not in ("", ".")]
    for marker in ("experiments", "configs"):
        if marker in parts:
            candidate = os.path.join(CONFIG_ROOT, *parts[parts.index(marker) + 1:])
            if os.path.isfile(candidate):
                return candidate
    candidate = os.path.join(CONFIG_ROOT, *parts) if parts else CONFIG_ROOT
    if os.path.isfile(candidate):
        return candidate
    if len(parts) == 1:
        name = parts[0] if parts[0].endswith(".yaml") else parts[0] + ".yaml"
        matches = sorted(glob.glob(os.path.join(CONFIG_ROOT, "**", name), recursive=True))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(os.path.relpath(m, CONFIG_ROOT) for m in matches)
            raise FileNotFoundError(f"config name {path!r} is ambiguous: it names {names}; give the folder too")
    raise FileNotFoundError(f"config file not found: {path} (also looked among the packaged configs in "
                            f"{CONFIG_ROOT}; list them with `higherpose-model-info --list`)")


def packaged_configs():
    """Every packaged config, as paths relative to the config root (e.g. `synthetic/x.yaml`)."""
    files = glob.glob(os.path.join(CONFIG_ROOT, "**", "*.yaml"), recursive=True)
    return sorted(os.path.relpath(f, CONFIG_ROOT) for f in files)


def load_config(cfg_file=None, opts=None, freeze=True):
    """Defaults, merged with `cfg_file` (safe YAML loading by yacs) and `opts` (KEY VALUE list).

    As upstream's update_config: DATA_DIR is joined onto DATASET.ROOT, MODEL.PRETRAINED and
    TEST.MODEL_FILE; WITH_CENTER adds one joint.
    """
    cfg = get_default_config()
    if cfg_file:
        cfg.merge_from_other_cfg(_read_yaml(resolve_config_path(cfg_file)))
    if opts:
        if len(opts) % 2:
            raise ValueError(f"config overrides must be KEY VALUE pairs, got an odd list: {opts}")
        try:
            cfg.merge_from_list(list(opts))
        except AssertionError as exc:  # yacs reports unknown keys with a bare assert
            raise KeyError(f"config override rejected: {exc}") from None
    if cfg.DATA_DIR:
        cfg.DATASET.ROOT = os.path.join(cfg.DATA_DIR, cfg.DATASET.ROOT)
        if cfg.MODEL.PRETRAINED:
            cfg.MODEL.PRETRAINED = os.path.join(cfg.DATA_DIR, cfg.MODEL.PRETRAINED)
        if cfg.TEST.MODEL_FILE:
            cfg.TEST.MODEL_FILE = os.path.join(cfg.DATA_DIR, cfg.TEST.MODEL_FILE)
    if cfg.DATASET.WITH_CENTER:
        cfg.DATASET.NUM_JOINTS += 1
        cfg.MODEL.NUM_JOINTS = cfg.DATASET.NUM_JOINTS
    check_config(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def _read_yaml(path):
    """Safe-load one YAML file into a CfgNode, reconciling upstream field types.

    Top-down HRNet/HRFormer YAMLs write DATASET.FLIP as a boolean (flip or not) where bottom-up
    HigherHRNet YAMLs give a probability: a boolean becomes 0.5 / 0.0.
    """
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    flip = data.get("DATASET", {}).get("FLIP") if isinstance(data.get("DATASET"), dict) else None
    if isinstance(flip, bool):
        data["DATASET"]["FLIP"] = 0.5 if flip else 0.0
    return CfgNode(data)


def check_config(cfg):
    """Per-stage LOSS / TEST lists must have LOSS.NUM_STAGES entries (as upstream asserts)."""
    n = cfg.LOSS.NUM_STAGES
    for node, names in ((cfg.LOSS, ("WITH_HEATMAPS_LOSS", "HEATMAPS_LOSS_FACTOR", "WITH_AE_LOSS",
                                     "PUSH_LOSS_FACTOR", "PULL_LOSS_FACTOR")),
                        (cfg.TEST, ("WITH_HEATMAPS", "WITH_AE"))):
        for name in names:
            if len(node[name]) != n:
                raise ValueError(f"{name} has {len(node[name])} entries but LOSS.NUM_STAGES is {n}")
