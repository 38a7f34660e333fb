"""WindowMultiheadAttention against a pure-PyTorch re-implementation of HRFormer's local window
attention written from the reference description (pad -> partition -> MHA with separate q/k/v
projections, pad tokens are zero vectors -> merge -> crop), at HRFormer-T/S/B branch shapes."""
import pytest
import torch
import torch.nn.functional as F

from higherpose.models.attention import WindowMultiheadAttention

WINDOW = 7


def hrformer_attention(module, x, add_bias):
    """HRFormer's InterlacedPoolAttention + MHA_ in plain PyTorch, from the reference sheet."""
    b, h, w, c = x.shape
    heads, d = module.num_heads, c // module.num_heads
    pad_h, pad_w = (WINDOW - h % WINDOW) % WINDOW, (WINDOW - w % WINDOW) % WINDOW
    top, left = pad_h // 2, pad_w // 2
    x = F.pad(x, (0, 0, left, pad_w - left, top, pad_h - top))  # centre zero padding
    hp, wp = x.shape[1], x.shape[2]
    qh, qw = hp // WINDOW, wp // WINDOW
    # n (qh ph) (qw pw) c -> (ph pw) (n qh qw) c
    tokens = x.reshape(b, qh, WINDOW, qw, WINDOW, c).permute(2, 4, 0, 1, 3, 5).reshape(WINDOW * WINDOW, -1, c)
    L, n = tokens.shape[:2]
    q = F.linear(tokens, module.q_proj.weight, module.q_proj.bias) * d ** -0.5
    k = F.linear(tokens, module.k_proj.weight, module.k_proj.bias)
    v = F.linear(tokens, module.v_proj.weight, module.v_proj.bias)
    q, k, v = (t.reshape(L, n * heads, d).transpose(0, 1) for t in (q, k, v))  # [n*heads, L, d]
    logits = torch.bmm(q, k.transpose(1, 2))
    if add_bias:
        table, index = module.relative_position_bias_table, module.relative_position_index
        bias = table[index.reshape(-1)].reshape(L, L, heads).permute(2, 0, 1)
        logits = (logits.reshape(n, heads, L, L) + bias).reshape(n * heads, L, L)
    out = torch.bmm(torch.softmax(logits, dim=-1), v).transpose(0, 1).reshape(L, n, c)
    out = F.linear(out, module.out_proj.weight, module.out_proj.bias)
    out = out.reshape(WINDOW, WINDOW, b, qh, qw, c).permute(2, 3, 0, 4, 1, 5).reshape(b, hp, wp, c)
    return out[:, top:top + h, left:left + w]


MODELS = {  # widths, heads per branch
    "T": ((18, 36, 72, 144), (1, 2, 4, 8)),
    "S": ((32, 64, 128, 256), (1, 2, 4, 8)),
    "B": ((78, 156, 312, 624), (2, 4, 8, 16)),
}
RESOLUTIONS = {"256x192": ((64, 48), (32, 24), (16, 12), (8, 6)), "384x288": ((96, 72), (48, 36), (24, 18), (12, 9))}
SHAPES = [(m, r, branch) for m in MODELS for r in RESOLUTIONS for branch in range(4)]


def randomised(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():  # non-zero biases so pad tokens matter
            p.copy_(torch.randn(p.shape, generator=g) * (0.2 if p.dim() == 1 else p.shape[-1] ** -0.5))
    return module


@pytest.mark.parametrize("model,resolution,branch", SHAPES, ids=[f"{m}-{r}-b{i}" for m, r, i in SHAPES])
def test_module_matches_hrformer(model, resolution, branch):
    channels, heads = MODELS[model][0][branch], MODELS[model][1][branch]
    h, w = RESOLUTIONS[resolution][branch]
    module = randomised(WindowMultiheadAttention(channels, heads, window_size=7), seed=branch)
    x = torch.randn(1, h, w, channels, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(module(x), hrformer_attention(module, x, add_bias=False), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("branch", [0, 3])
def test_module_with_rpe_matches_hrformer_with_bias(branch):
    channels, heads = MODELS["B"][0][branch], MODELS["B"][1][branch]
    h, w = RESOLUTIONS["256x192"][branch]
    module = randomised(WindowMultiheadAttention(channels, heads, with_rpe=True), seed=3)
    x = torch.randn(2, h, w, channels, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(module(x), hrformer_attention(module, x, add_bias=True), atol=2e-5, rtol=2e-5)


def test_module_gradients_match_hrformer():
    module = randomised(WindowMultiheadAttention(36, 2, with_rpe=True), seed=4)
    x = torch.randn(2, 16, 12, 36, requires_grad=True)
    grad = torch.randn(2, 16, 12, 36)
    params = [x] + list(module.parameters())
    got = torch.autograd.grad(module(x), params, grad)
    want = torch.autograd.grad(hrformer_attention(module, x, add_bias=True), params, grad)
    for (name, _), a, e in zip([("x", None)] + list(module.named_parameters()), got, want):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4, msg=name)


def test_rpe_table_gets_no_gradient_when_off():
    module = WindowMultiheadAttention(32, 2)
    module(torch.randn(1, 9, 8, 32)).sum().backward()
    assert module.relative_position_bias_table.grad is None
    assert module.q_proj.weight.grad is not None


def test_upstream_parameter_names_and_shapes():
    module = WindowMultiheadAttention(78, 2)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert shapes == {
        "relative_position_bias_table": (169, 2), "relative_position_index": (49, 49),
        "q_proj.weight": (78, 78), "q_proj.bias": (78,), "k_proj.weight": (78, 78), "k_proj.bias": (78,),
        "v_proj.weight": (78, 78), "v_proj.bias": (78,), "out_proj.weight": (78, 78), "out_proj.bias": (78,),
    }
    assert module.relative_position_index.dtype == torch.int64
    other = WindowMultiheadAttention(78, 2)
    other.load_state_dict(module.state_dict(), strict=True)


def test_mask_mode_excludes_padding():
    """In "mask" mode the output does not depend on the projection biases of pad tokens: a module
    whose k bias changes by a constant gives the same output (softmax is shift-invariant per query)."""
    module = randomised(WindowMultiheadAttention(16, 2, pad_mode="mask"), seed=5)
    x = torch.randn(1, 9, 8, 16)
    with torch.no_grad():
        out = module(x)
        module.k_proj.bias.add_(1.0)
        torch.testing.assert_close(module(x), out, atol=1e-5, rtol=1e-5)


def test_compile_fullgraph_through_module():
    module = randomised(WindowMultiheadAttention(32, 2, with_rpe=True), seed=6)
    x = torch.randn(2, 10, 9, 32, requires_grad=True)
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    expected = hrformer_attention(module, x, add_bias=True)
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=2e-5)
    grads = torch.autograd.grad(out.square().sum(), [x, module.relative_position_bias_table, module.k_proj.bias])
    want = torch.autograd.grad(expected.square().sum(), [x, module.relative_position_bias_table, module.k_proj.bias])
    for a, e in zip(grads, want):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4)


def test_module_under_cpu_autocast():
    module = randomised(WindowMultiheadAttention(32, 2, with_rpe=True), seed=7)
    x = torch.randn(1, 9, 8, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), hrformer_attention(module, x, add_bias=True), atol=6e-2, rtol=6e-2)
    out.float().sum().backward()
    assert torch.isfinite(module.relative_position_bias_table.grad).all()


def test_bad_module_arguments():
    with pytest.raises(ValueError, match="divisible"):
        WindowMultiheadAttention(30, 4)
    with pytest.raises(ValueError, match="pad_mode"):
        WindowMultiheadAttention(32, 4, pad_mode="reflect")
    with pytest.raises(ValueError, match="window_size"):
        WindowMultiheadAttention(32, 4, window_size=0)
