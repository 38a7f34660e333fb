"""Checkpoint formats (bare, {'state_dict'}, 'module.', mmpose prefixes and HRFormer names) and
the errors for checkpoints that do not fit."""
import collections

import pytest
import torch

from higherpose.config import load_config
from higherpose.models import CheckpointError, build_model, load_checkpoint
from test_models import CROWD_W32, HRT_T, small_hrnet_opts, small_hrt_opts


def _model(seed, kind="higherhrnet"):
    torch.manual_seed(seed)
    if kind == "hrt":
        return build_model(load_config(HRT_T, small_hrt_opts()))
    return build_model(load_config(CROWD_W32, small_hrnet_opts() + ["MODEL.EXTRA.DECONV.NUM_CHANNELS", "[8]"]))


def _randomised(model):
    """A reference copy of the state_dict with random values (so a load is visible)."""
    gen = torch.Generator().manual_seed(3)
    return collections.OrderedDict(
        (k, torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone())
        for k, v in model.state_dict().items())


def _assert_loaded(model, reference):
    own = model.state_dict()
    assert set(own) == set(reference)
    for k, v in reference.items():
        assert torch.equal(own[k], v), k


def test_bare_state_dict_file(tmp_path):
    ref = _randomised(_model(0))
    torch.save(ref, tmp_path / "model_best.pth.tar")
    model = _model(1)
    load_checkpoint(model, str(tmp_path / "model_best.pth.tar"))
    _assert_loaded(model, ref)


def test_training_checkpoint_with_module_prefix(tmp_path):
    ref = _randomised(_model(0))
    checkpoint = {"epoch": 12, "model": "pose_higher_hrnet", "perf": 0.5,
                  "state_dict": collections.OrderedDict(("module." + k, v) for k, v in ref.items()),
                  "best_state_dict": ref, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]}}
    torch.save(checkpoint, tmp_path / "checkpoint.pth.tar")
    model = _model(1)
    load_checkpoint(model, tmp_path / "checkpoint.pth.tar")
    _assert_loaded(model, ref)


def test_mmpose_bottom_up_prefixes():
    ref = _randomised(_model(0))
    head = ("final_layers.", "deconv_layers.")
    mmpose = {("keypoint_head." if k.startswith(head) else "backbone.") + k: v for k, v in ref.items()}
    model = _model(1)
    load_checkpoint(model, {"meta": {"mmpose_version": "0.x"}, "state_dict": mmpose})
    _assert_loaded(model, ref)


def test_hrformer_checkpoint_and_mmpose_names():
    ref = _randomised(_model(0, "hrt"))
    model = _model(1, "hrt")
    load_checkpoint(model, {"state_dict": ref})
    _assert_loaded(model, ref)
    # mmpose 1.x HRFormer: packed qkv, 'proj', 'ffn.', 'head.'; no relative_position_index buffers
    mm = collections.OrderedDict()
    for k, v in ref.items():
        if k.endswith("relative_position_index"):
            continue
        if ".attn.attn.q_proj." in k:
            parts = [ref[k.replace("q_proj", name)] for name in ("q_proj", "k_proj", "v_proj")]
            mm[k.replace("q_proj", "qkv")] = torch.cat(parts, 0)
        elif ".attn.attn.k_proj." in k or ".attn.attn.v_proj." in k:
            continue
        else:
            k2 = k.replace(".attn.attn.out_proj.", ".attn.attn.proj.").replace(".mlp.", ".ffn.")
            mm[k2.replace("keypoint_head.", "head.")] = v
    model = _model(2, "hrt")
    load_checkpoint(model, {"state_dict": mm})
    _assert_loaded(model, ref)


def test_hrformer_imagenet_backbone_under_model_key(tmp_path):
    ref = _randomised(_model(0, "hrt"))
    backbone = {k[len("backbone."):]: v for k, v in ref.items() if k.startswith("backbone.")}
    backbone["classifier.weight"] = torch.randn(1000, 2048)
    torch.save({"model": backbone, "epoch": 300}, tmp_path / "hrt_tiny.pth")
    model = _model(1, "hrt")
    model.init_weights(str(tmp_path / "hrt_tiny.pth"))
    for k, v in backbone.items():
        if k != "classifier.weight":
            assert torch.equal(model.backbone.state_dict()[k], v), k


# ---------------------------------------------------------------- errors
def test_missing_and_unexpected_keys_are_listed():
    sd = _randomised(_model(0))
    removed = ["stage4.0.branches.0.0.conv1.weight", "final_layers.1.bias", "bn1.running_mean"]
    for k in removed:
        del sd[k]
    sd["extra_head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_model(1), sd)
    msg = str(info.value)
    assert "3 missing keys" in msg and all(k in msg for k in removed)
    assert "1 unexpected keys" in msg and "extra_head.weight" in msg
    result = load_checkpoint(_model(1), sd, strict=False)
    assert sorted(result.missing_keys) == sorted(removed) and result.unexpected_keys == ["extra_head.weight"]


def test_many_missing_keys_are_summarised():
    sd = _randomised(_model(0))
    sd = {k: v for k, v in sd.items() if not k.startswith("stage3.")}
    with pytest.raises(CheckpointError, match=r"missing keys \(of \d+\): .*\(\+\d+ more\)"):
        load_checkpoint(_model(1), sd)


def test_shape_mismatch_is_reported():
    sd = _randomised(_model(0))
    sd["final_layers.0.weight"] = torch.zeros(34, 8, 1, 1)  # a COCO head in a CrowdPose model
    with pytest.raises(CheckpointError, match=r"final_layers.0.weight checkpoint \(34, 8, 1, 1\) vs model \(28, 8, 1, 1\)"):
        load_checkpoint(_model(1), sd)


class NotAStateDict:
    def __init__(self):
        self.weights = [1, 2, 3]


def test_pickle_that_is_not_a_state_dict(tmp_path):
    torch.save(NotAStateDict(), tmp_path / "object.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(_model(0), tmp_path / "object.pth")
    torch.save({"epoch": 3, "lr": [0.1, 0.01]}, tmp_path / "dict.pth")
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_checkpoint(_model(0), tmp_path / "dict.pth")
    (tmp_path / "garbage.pth").write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(_model(0), tmp_path / "garbage.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(_model(0), tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_checkpoint(_model(0), [torch.zeros(3)])
