"""torch.compile(fullgraph=True) through whole networks that use the window-attention op: a small
HRFormer and a small higher_pose, in training mode, forward and backward, against eager. fullgraph
makes any graph break (in the attention blocks or elsewhere) an error. The engine's TRAIN.COMPILE
switch trains through the compiled network."""
import copy

import pytest
import torch

from higherpose.config import load_config
from higherpose.models import build_model
from test_models import HIGHER_POSE, HRT_T, small_hrnet_opts, small_hrt_opts


def train_step(net, images):
    """Forward, a loss over every output, backward; returns (outputs, gradients by name)."""
    outputs = net(images)
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    sum((o.float() ** 2).mean() for o in outputs).backward()
    return [o.detach() for o in outputs], {n: p.grad for n, p in net.named_parameters() if p.grad is not None}


def compare_compiled_with_eager(model, images):
    eager_model, compiled_model = model, copy.deepcopy(model)
    eager_out, eager_grads = train_step(eager_model, images)
    compiled = torch.compile(compiled_model, fullgraph=True)
    compiled_out, compiled_grads = train_step(compiled, images)
    for a, b in zip(compiled_out, eager_out):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    names = {n.replace("_orig_mod.", ""): g for n, g in compiled_grads.items()}
    assert names.keys() == eager_grads.keys()
    for name, grad in eager_grads.items():
        torch.testing.assert_close(names[name], grad, rtol=1e-3, atol=1e-5, msg=f"gradient of {name}")
    attention = [m for m in model.modules() if type(m).__name__ == "WindowMultiheadAttention"]
    assert attention, "the network has no window attention: the test would prove nothing"


def test_small_hrformer_compiles_fullgraph_for_training():
    torch.manual_seed(0)
    cfg = load_config(HRT_T, small_hrt_opts(width=8) + ["MODEL.PRETRAINED", "", "MODEL.EXTRA.DROP_PATH_RATE", "0.0"])
    model = build_model(cfg, is_train=True).train()
    compare_compiled_with_eager(model, torch.randn(2, 3, 64, 48))


def test_small_higher_pose_compiles_fullgraph_for_training():
    torch.manual_seed(0)
    opts = small_hrnet_opts() + ["MODEL.PRETRAINED", "", "MODEL.EXTRA.DECONV.NUM_CHANNELS", "[8]",
                                 "MODEL.EXTRA.TRANSFORMER.DIM", "16", "MODEL.EXTRA.TRANSFORMER.DEPTH", "2",
                                 "MODEL.EXTRA.TRANSFORMER.DROP_PATH_RATE", "0.0",
                                 "MODEL.EXTRA.TRANSFORMER.ZERO_INIT_OUTPUT", "False"]
    model = build_model(load_config(HIGHER_POSE, opts), is_train=True).train()
    compare_compiled_with_eager(model, torch.randn(2, 3, 64, 64))


def test_engine_trains_through_the_compiled_network(tmp_path):
    """TRAIN.COMPILE: training runs through torch.compile and reaches the eager run's weights; the
    checkpoint keeps the model's own parameter names (loadable without torch.compile)."""
    from higherpose.engine import DistContext, train
    from test_engine_helpers import final_weights, standin_components, tiny_cfg

    settings = {"TRAIN.END_EPOCH": 1}
    eager = final_weights(train(tiny_cfg(tmp_path / "eager", **settings), DistContext(), "c.yaml",
                                standin_components()))
    compiled = final_weights(train(tiny_cfg(tmp_path / "compiled", **settings, **{"TRAIN.COMPILE": True}),
                                   DistContext(), "c.yaml", standin_components()))
    assert compiled.keys() == eager.keys() and not any("_orig_mod" in k for k in compiled)
    for name, value in eager.items():
        torch.testing.assert_close(compiled[name], value, rtol=1e-4, atol=1e-6, msg=name)
