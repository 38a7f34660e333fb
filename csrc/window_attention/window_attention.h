// Shared argument checks and window-grid geometry of the window-attention op (CPU and CUDA).
//
// Layout: q, k, v are [B, H, W, heads * d] (any strides). The window grid starts at
// (-top, -left): window (wi, wj) covers rows -top + wi * wh ... and columns -left + wj * ww ...;
// nh = ceil((H + top) / wh) windows down, nw = ceil((W + left) / ww) across. Every image
// position lies in exactly one window, so per-window writes of outputs and of the gradients of
// q, k, v never overlap.
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <string>

namespace higherpose {

struct WindowGeometry {
  int64_t B, H, W, C, heads, d;
  int64_t wh, ww, top, left, nh, nw;
  int64_t L;        // positions per window, wh * ww
  int64_t table;    // rows of the relative-position-bias table, (2wh - 1)(2ww - 1)
  bool zeros_mode;  // true: padded positions are keys/values k_pad/v_pad; false: masked out
};

inline void check_same(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "window_attention: ", name, " dtype ",
              t.scalar_type(), " differs from q dtype ", ref.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), "window_attention: ", name, " is on ", t.device(),
              " but q is on ", ref.device());
}

// dtype of the per-query log-sum-exp: float64 for float64 inputs, float32 otherwise.
inline at::ScalarType lse_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline bool has(const c10::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// Every argument check of the forward, written once for all paths: the CPU and CUDA kernels and
// the Meta kernel (window_attention_meta.cpp), whose sizes may be symbolic under torch.compile
// (hence sym_size: on real tensors it is the plain size). Errors name the wrong argument.
inline void check_window_attention_inputs(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::IntArrayRef window,
    int64_t num_heads, double scale, at::IntArrayRef offset, c10::string_view pad_mode,
    const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
    const c10::optional<at::Tensor>& rel_bias) {
  TORCH_CHECK(q.dim() == 4, "window_attention: q must be [B, H, W, heads * d], got ", q.dim(),
              " dimensions");
  TORCH_CHECK(k.sym_sizes() == q.sym_sizes(), "window_attention: k shape ", k.sym_sizes(),
              " differs from q shape ", q.sym_sizes());
  TORCH_CHECK(v.sym_sizes() == q.sym_sizes(), "window_attention: v shape ", v.sym_sizes(),
              " differs from q shape ", q.sym_sizes());
  TORCH_CHECK(at::isFloatingType(q.scalar_type()),
              "window_attention: q must be a floating dtype, got ", q.scalar_type());
  check_same(k, q, "k");
  check_same(v, q, "v");
  const c10::SymInt C = q.sym_size(3);
  TORCH_CHECK(num_heads > 0 && C % num_heads == 0, "window_attention: num_heads ", num_heads,
              " does not divide the channels ", C, " (it must be a positive divisor)");
  TORCH_CHECK(C > 0, "window_attention: q has no channels (its last dimension is 0)");
  TORCH_CHECK(window.size() == 2, "window_attention: window must be (wh, ww), got ", window);
  TORCH_CHECK(window[0] > 0 && window[1] > 0,
              "window_attention: window sizes must be positive, got ", window);
  // Each side first, so that the product cannot overflow.
  TORCH_CHECK(window[0] <= 1024 && window[1] <= 1024 && window[0] * window[1] <= 1024,
              "window_attention: windows of more than 1024 positions are not supported, got ",
              window);
  TORCH_CHECK(offset.size() == 2, "window_attention: offset must be (top, left), got ", offset);
  TORCH_CHECK(offset[0] >= 0 && offset[0] < window[0] && offset[1] >= 0 && offset[1] < window[1],
              "window_attention: offset ", offset, " must satisfy 0 <= offset < window ", window);
  TORCH_CHECK(pad_mode == "zeros" || pad_mode == "mask",
              "window_attention: pad_mode must be \"zeros\" or \"mask\", got \"",
              std::string(pad_mode), "\"");
  TORCH_CHECK(std::isfinite(scale), "window_attention: scale must be finite, got ", scale);
  if (has(k_pad)) {
    TORCH_CHECK(k_pad->dim() == 1 && k_pad->sym_size(0) == C, "window_attention: k_pad must be [",
                C, "] (heads * d), got ", k_pad->sym_sizes());
    check_same(*k_pad, q, "k_pad");
  }
  if (has(v_pad)) {
    TORCH_CHECK(v_pad->dim() == 1 && v_pad->sym_size(0) == C, "window_attention: v_pad must be [",
                C, "] (heads * d), got ", v_pad->sym_sizes());
    check_same(*v_pad, q, "v_pad");
  }
  if (has(rel_bias)) {
    const int64_t table = (2 * window[0] - 1) * (2 * window[1] - 1);
    TORCH_CHECK(rel_bias->dim() == 2 && rel_bias->sym_size(0) == table &&
                    rel_bias->sym_size(1) == num_heads,
                "window_attention: rel_bias must be [(2wh - 1) * (2ww - 1), heads] = [", table,
                ", ", num_heads, "], got ", rel_bias->sym_sizes());
    check_same(*rel_bias, q, "rel_bias");
  }
}

// The extra tensors of the backward against the forward inputs (all paths, as above).
inline void check_window_attention_backward_inputs(const at::Tensor& grad_out, const at::Tensor& q,
                                                   const at::Tensor& out, const at::Tensor& lse,
                                                   int64_t num_heads) {
  TORCH_CHECK(grad_out.sym_sizes() == q.sym_sizes(), "window_attention_backward: grad_out shape ",
              grad_out.sym_sizes(), " differs from q shape ", q.sym_sizes());
  TORCH_CHECK(out.sym_sizes() == q.sym_sizes(), "window_attention_backward: out shape ",
              out.sym_sizes(), " differs from q shape ", q.sym_sizes());
  check_same(grad_out, q, "grad_out");
  check_same(out, q, "out");
  TORCH_CHECK(lse.dim() == 4 && lse.sym_size(0) == q.sym_size(0) && lse.sym_size(1) == num_heads &&
                  lse.sym_size(2) == q.sym_size(1) && lse.sym_size(3) == q.sym_size(2),
              "window_attention_backward: lse must be [B, heads, H, W] = [", q.sym_size(0), ", ",
              num_heads, ", ", q.sym_size(1), ", ", q.sym_size(2), "], got ", lse.sym_sizes());
  TORCH_CHECK(lse.scalar_type() == lse_dtype(q.scalar_type()), "window_attention_backward: lse must be ",
              lse_dtype(q.scalar_type()), " for ", q.scalar_type(), " inputs, got ", lse.scalar_type());
  TORCH_CHECK(lse.device() == q.device(), "window_attention_backward: lse is on ", lse.device(),
              " but q is on ", q.device());
}

// The checks above, then the window grid of real (not symbolic) inputs, for the kernels.
inline WindowGeometry check_window_attention_args(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::IntArrayRef window,
    int64_t num_heads, double scale, at::IntArrayRef offset, c10::string_view pad_mode,
    const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
    const c10::optional<at::Tensor>& rel_bias) {
  check_window_attention_inputs(q, k, v, window, num_heads, scale, offset, pad_mode, k_pad, v_pad,
                                rel_bias);
  WindowGeometry g;
  g.B = q.size(0);
  g.H = q.size(1);
  g.W = q.size(2);
  g.C = q.size(3);
  g.heads = num_heads;
  g.d = g.C / num_heads;
  g.wh = window[0];
  g.ww = window[1];
  g.top = offset[0];
  g.left = offset[1];
  g.nh = (g.H + g.top + g.wh - 1) / g.wh;
  g.nw = (g.W + g.left + g.ww - 1) / g.ww;
  g.L = g.wh * g.ww;
  g.table = (2 * g.wh - 1) * (2 * g.ww - 1);
  g.zeros_mode = pad_mode == "zeros";
  return g;
}

// Both checks of the backward, then the geometry.
inline WindowGeometry check_window_attention_backward_args(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& out, const at::Tensor& lse, at::IntArrayRef window, int64_t num_heads,
    double scale, at::IntArrayRef offset, c10::string_view pad_mode,
    const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
    const c10::optional<at::Tensor>& rel_bias) {
  const WindowGeometry g = check_window_attention_args(q, k, v, window, num_heads, scale, offset,
                                                       pad_mode, k_pad, v_pad, rel_bias);
  check_window_attention_backward_inputs(grad_out, q, out, lse, num_heads);
  return g;
}

}  // namespace higherpose
