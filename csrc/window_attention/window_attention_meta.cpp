// The Meta (fake) kernels of the window-attention ops: the same argument checks as the CPU and
// CUDA kernels (window_attention.h), then outputs of the right shapes and dtypes without data.
// torch.compile / FakeTensor / torch.export trace through them, also in a process that loaded
// only the CMake library.
#include <ATen/ATen.h>

#include "registration.h"
#include "window_attention/window_attention.h"

namespace higherpose {
namespace {

std::tuple<at::Tensor, at::Tensor> window_attention_forward_meta(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::IntArrayRef window, int64_t num_heads,
    double scale, at::IntArrayRef offset, c10::string_view pad_mode, const c10::optional<at::Tensor>& k_pad,
    const c10::optional<at::Tensor>& v_pad, const c10::optional<at::Tensor>& rel_bias) {
  check_window_attention_inputs(q, k, v, window, num_heads, scale, offset, pad_mode, k_pad, v_pad, rel_bias);
  auto out = at::empty_symint(q.sym_sizes(), q.options().memory_format(at::MemoryFormat::Contiguous));
  auto lse = at::empty_symint({q.sym_size(0), c10::SymInt(num_heads), q.sym_size(1), q.sym_size(2)},
                              q.options().dtype(lse_dtype(q.scalar_type())));
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> window_attention_backward_meta(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
    const at::Tensor& lse, at::IntArrayRef window, int64_t num_heads, double scale, at::IntArrayRef offset,
    c10::string_view pad_mode, const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
    const c10::optional<at::Tensor>& rel_bias) {
  check_window_attention_inputs(q, k, v, window, num_heads, scale, offset, pad_mode, k_pad, v_pad, rel_bias);
  check_window_attention_backward_inputs(grad_out, q, out, lse, num_heads);
  const auto contiguous = q.options().memory_format(at::MemoryFormat::Contiguous);
  auto grad_bias = has(rel_bias) ? at::empty_symint(rel_bias->sym_sizes(), q.options())
                                 : at::empty({0}, q.options());
  return {at::empty_symint(q.sym_sizes(), contiguous), at::empty_symint(q.sym_sizes(), contiguous),
          at::empty_symint(q.sym_sizes(), contiguous), at::empty_symint({q.sym_size(3)}, q.options()),
          at::empty_symint({q.sym_size(3)}, q.options()), grad_bias};
}

// The differentiable op below autograd: the forward's output alone.
at::Tensor window_attention_meta(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 at::IntArrayRef window, int64_t num_heads, double scale, at::IntArrayRef offset,
                                 c10::string_view pad_mode, const c10::optional<at::Tensor>& k_pad,
                                 const c10::optional<at::Tensor>& v_pad, const c10::optional<at::Tensor>& rel_bias) {
  return std::get<0>(
      window_attention_forward_meta(q, k, v, window, num_heads, scale, offset, pad_mode, k_pad, v_pad, rel_bias));
}

}  // namespace

HIGHERPOSE_LIBRARY_IMPL(Meta, m) {
  m.impl("window_attention_forward", &window_attention_forward_meta);
  m.impl("window_attention_backward", &window_attention_backward_meta);
  m.impl("window_attention", &window_attention_meta);
}

}  // namespace higherpose
