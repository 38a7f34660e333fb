"""Networks, built by name from a config (registry keyed by MODEL.NAME), and checkpoint loading.

    model = build_model(cfg, is_train=False)
    load_checkpoint(model, "model_best.pth.tar")          # strict by default

Bottom-up models (pose_higher_hrnet, higher_pose) return a list of stage outputs
[[B, 2J, H/4, W/4], [B, J, H/2, W/2]]; top-down models (pose_hrnet, pose_hrt) return [B, J, H/4, W/4].
"""
from . import higher_pose, pose_higher_hrnet, pose_hrnet, pose_hrt
from .checkpoint import CheckpointError, LoadResult, load_checkpoint, load_pretrained

MODELS = {
    "pose_higher_hrnet": pose_higher_hrnet.get_pose_net,
    "higher_pose": higher_pose.get_pose_net,
    "pose_hrnet": pose_hrnet.get_pose_net,
    "pose_hrt": pose_hrt.get_pose_net,
}


def build_model(cfg, is_train=False):
    """The network named by cfg.MODEL.NAME. With is_train and MODEL.INIT_WEIGHTS it is initialised
    as upstream (normal std 0.001 convolutions, then MODEL.PRETRAINED for PRETRAINED_LAYERS when
    that is set)."""
    name = cfg.MODEL.NAME
    if name not in MODELS:
        raise ValueError(f"unknown MODEL.NAME {name!r}; available: {sorted(MODELS)}")
    return MODELS[name](cfg, is_train=is_train)


__all__ = ["MODELS", "build_model", "load_checkpoint", "load_pretrained", "CheckpointError", "LoadResult"]
