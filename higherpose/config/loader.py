"""Reading experiment YAMLs the way upstream tools do: `--cfg FILE` plus `KEY VALUE` pairs."""
import os

import yaml
from yacs.config import CfgNode

from .default import get_default_config

# The repository's configs/ folder mirrors upstream's experiments/ tree.
CONFIG_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")


def resolve_config_path(path):
    """Return an existing config file for `path`.

    Upstream command lines name `experiments/<dataset>/<model>/<file>.yaml`; when that path does
    not exist, the same file under this repository's `configs/` is used, so they run verbatim.
    """
    if os.path.isfile(path):
        return path
    parts = os.path.normpath(path).split(os.sep)
    if "experiments" in parts:
        rel = os.path.join(*parts[parts.index("experiments") + 1:])
        candidate = os.path.join(CONFIG_ROOT, rel)
        if os.path.isfile(candidate):
            return candidate
    candidate = os.path.join(CONFIG_ROOT, path)
    if os.path.isfile(candidate):
        return candidate
    raise FileNotFoundError(f"config file not found: {path} (also looked under {CONFIG_ROOT})")


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
