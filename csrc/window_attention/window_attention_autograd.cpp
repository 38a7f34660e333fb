// The differentiable entry point `higherpose::window_attention`:
//  - Autograd kernel: a custom autograd function that calls window_attention_forward (which
//    also returns the per-query log-sum-exp) and, in the backward, window_attention_backward
//    (which recomputes the attention weights from it). Nothing window-sized is stored. Double
//    backward is refused with an error.
//  - Backend kernels (CompositeExplicitAutograd): the forward output alone, for calls without
//    autograd (inference mode, tracing below the autograd key).
//  - Autocast kernels (CUDA, CPU): cast every floating input to the autocast dtype, so q/k/v from
//    autocast linears (fp16/bf16) meet k_pad/v_pad/rel_bias parameters (fp32) in one dtype.
#include <ATen/autocast_mode.h>
#include <torch/autograd.h>

#include <string>

#include "registration.h"

namespace higherpose {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::tuple<at::Tensor, at::Tensor> call_forward(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::IntArrayRef window,
    int64_t num_heads, double scale, at::IntArrayRef offset, c10::string_view pad_mode,
    const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
    const c10::optional<at::Tensor>& rel_bias) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("higherpose::window_attention_forward", "")
                       .typed<decltype(call_forward)>();
  return op.call(q, k, v, window, num_heads, scale, offset, pad_mode, k_pad, v_pad, rel_bias);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> call_backward(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& out, const at::Tensor& lse, at::IntArrayRef window, int64_t num_heads,
    double scale, at::IntArrayRef offset, c10::string_view pad_mode,
    const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
    const c10::optional<at::Tensor>& rel_bias) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("higherpose::window_attention_backward", "")
                       .typed<decltype(call_backward)>();
  return op.call(grad_out, q, k, v, out, lse, window, num_heads, scale, offset, pad_mode, k_pad,
                 v_pad, rel_bias);
}

at::Tensor call_window_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 at::IntArrayRef window, int64_t num_heads, double scale,
                                 at::IntArrayRef offset, c10::string_view pad_mode,
                                 const c10::optional<at::Tensor>& k_pad,
                                 const c10::optional<at::Tensor>& v_pad,
                                 const c10::optional<at::Tensor>& rel_bias) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("higherpose::window_attention", "")
                       .typed<decltype(call_window_attention)>();
  return op.call(q, k, v, window, num_heads, scale, offset, pad_mode, k_pad, v_pad, rel_bias);
}

c10::optional<at::Tensor> optional_of(const at::Tensor& t) {
  return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt;
}

class WindowAttentionFunction : public torch::autograd::Function<WindowAttentionFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, at::IntArrayRef window, int64_t num_heads,
                            double scale, at::IntArrayRef offset, c10::string_view pad_mode,
                            const c10::optional<at::Tensor>& k_pad,
                            const c10::optional<at::Tensor>& v_pad,
                            const c10::optional<at::Tensor>& rel_bias) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, lse] =
        call_forward(q, k, v, window, num_heads, scale, offset, pad_mode, k_pad, v_pad, rel_bias);
    ctx->save_for_backward({q, k, v, out, lse, k_pad.value_or(at::Tensor()),
                            v_pad.value_or(at::Tensor()), rel_bias.value_or(at::Tensor())});
    ctx->saved_data["window"] = window.vec();
    ctx->saved_data["num_heads"] = num_heads;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["offset"] = offset.vec();
    ctx->saved_data["pad_mode"] = std::string(pad_mode);
    ctx->mark_non_differentiable({lse});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    // The backward op has no derivative of its own: a graph of this backward (create_graph=True,
    // i.e. double backward) would silently hold zeros, so it is refused here, up front.
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "window_attention: double backward is not supported (this backward was called with "
                "create_graph=True; use torch.autograd.grad without create_graph, or the pure-PyTorch "
                "reference higherpose.ops.reference.window_attention for higher derivatives)");
    const auto saved = ctx->get_saved_variables();
    const auto window = ctx->saved_data["window"].toIntVector();
    const auto offset = ctx->saved_data["offset"].toIntVector();
    const int64_t num_heads = ctx->saved_data["num_heads"].toInt();
    const double scale = ctx->saved_data["scale"].toDouble();
    const std::string pad_mode = ctx->saved_data["pad_mode"].toStringRef();
    at::Tensor grad_out = grad_outputs[0];
    const at::Tensor& q = saved[0];
    if (!grad_out.defined()) grad_out = at::zeros_like(q);
    auto [gq, gk, gv, gk_pad, gv_pad, g_bias] =
        call_backward(grad_out, q, saved[1], saved[2], saved[3], saved[4], window, num_heads,
                      scale, offset, pad_mode, optional_of(saved[5]), optional_of(saved[6]),
                      optional_of(saved[7]));
    const at::Tensor none;
    return {gq,
            gk,
            gv,
            none,
            none,
            none,
            none,
            none,
            saved[5].defined() ? gk_pad : none,
            saved[6].defined() ? gv_pad : none,
            saved[7].defined() ? g_bias : none};
  }
};

at::Tensor window_attention_autograd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     at::IntArrayRef window, int64_t num_heads, double scale,
                                     at::IntArrayRef offset, c10::string_view pad_mode,
                                     const c10::optional<at::Tensor>& k_pad,
                                     const c10::optional<at::Tensor>& v_pad,
                                     const c10::optional<at::Tensor>& rel_bias) {
  return WindowAttentionFunction::apply(q, k, v, window, num_heads, scale, offset, pad_mode, k_pad,
                                        v_pad, rel_bias);
}

at::Tensor window_attention_no_grad(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    at::IntArrayRef window, int64_t num_heads, double scale,
                                    at::IntArrayRef offset, c10::string_view pad_mode,
                                    const c10::optional<at::Tensor>& k_pad,
                                    const c10::optional<at::Tensor>& v_pad,
                                    const c10::optional<at::Tensor>& rel_bias) {
  return std::get<0>(
      call_forward(q, k, v, window, num_heads, scale, offset, pad_mode, k_pad, v_pad, rel_bias));
}

template <c10::DispatchKey autocast_key, c10::DeviceType device_type>
at::Tensor window_attention_autocast(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     at::IntArrayRef window, int64_t num_heads, double scale,
                                     at::IntArrayRef offset, c10::string_view pad_mode,
                                     const c10::optional<at::Tensor>& k_pad,
                                     const c10::optional<at::Tensor>& v_pad,
                                     const c10::optional<at::Tensor>& rel_bias) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(autocast_key);
  const auto dtype = at::autocast::get_autocast_dtype(device_type);
  // Only inputs on the autocast device in float32 are cast (float64 stays float64).
  auto cast = [&](const at::Tensor& t) { return at::autocast::cached_cast(dtype, t, device_type); };
  auto cast_opt = [&](const c10::optional<at::Tensor>& t) {
    return at::autocast::cached_cast(dtype, t, device_type);
  };
  return call_window_attention(cast(q), cast(k), cast(v), window, num_heads, scale, offset,
                               pad_mode, cast_opt(k_pad), cast_opt(v_pad), cast_opt(rel_bias));
}

}  // namespace

HIGHERPOSE_LIBRARY_IMPL(Autograd, m) {
  m.impl("window_attention", &window_attention_autograd);
}

HIGHERPOSE_LIBRARY_IMPL(CompositeExplicitAutograd, m) {
  m.impl("window_attention", &window_attention_no_grad);
}

HIGHERPOSE_LIBRARY_IMPL(AutocastCUDA, m) {
  m.impl("window_attention",
         &window_attention_autocast<c10::DispatchKey::AutocastCUDA, c10::DeviceType::CUDA>);
}

HIGHERPOSE_LIBRARY_IMPL(AutocastCPU, m) {
  m.impl("window_attention",
         &window_attention_autocast<c10::DispatchKey::AutocastCPU, c10::DeviceType::CPU>);
}

}  // namespace higherpose
