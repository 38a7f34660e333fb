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

// Checks every argument; errors name the argument that is wrong. Returns the geometry.
inline WindowGeometry check_window_attention_args(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::IntArrayRef window,
    int64_t num_heads, double scale, at::IntArrayRef offset, c10::string_view pad_mode,
    const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
    const c10::optional<at::Tensor>& rel_bias) {
  TORCH_CHECK(q.dim() == 4, "window_attention: q must be [B, H, W, heads * d], got ", q.dim(),
              " dimensions");
  TORCH_CHECK(k.sizes() == q.sizes(), "window_attention: k shape ", k.sizes(),
              " differs from q shape ", q.sizes());
  TORCH_CHECK(v.sizes() == q.sizes(), "window_attention: v shape ", v.sizes(),
              " differs from q shape ", q.sizes());
  TORCH_CHECK(at::isFloatingType(q.scalar_type()),
              "window_attention: q must be a floating dtype, got ", q.scalar_type());
  check_same(k, q, "k");
  check_same(v, q, "v");
  TORCH_CHECK(num_heads > 0, "window_attention: num_heads must be positive, got ", num_heads);
  const int64_t C = q.size(3);
  TORCH_CHECK(C % num_heads == 0, "window_attention: num_heads ", num_heads,
              " does not divide the channels ", C);
  TORCH_CHECK(window.size() == 2, "window_attention: window must be (wh, ww), got ", window);
  TORCH_CHECK(window[0] > 0 && window[1] > 0,
              "window_attention: window sizes must be positive, got ", window);
  TORCH_CHECK(window[0] * window[1] <= 1024,
              "window_attention: windows of more than 1024 positions are not supported, got ",
              window);
  TORCH_CHECK(offset.size() == 2, "window_attention: offset must be (top, left), got ", offset);
  TORCH_CHECK(offset[0] >= 0 && offset[0] < window[0] && offset[1] >= 0 && offset[1] < window[1],
              "window_attention: offset ", offset, " must satisfy 0 <= offset < window ", window);
  TORCH_CHECK(pad_mode == "zeros" || pad_mode == "mask",
              "window_attention: pad_mode must be \"zeros\" or \"mask\", got \"",
              std::string(pad_mode), "\"");
  TORCH_CHECK(std::isfinite(scale), "window_attention: scale must be finite, got ", scale);
  if (k_pad.has_value() && k_pad->defined()) {
    TORCH_CHECK(k_pad->dim() == 1 && k_pad->size(0) == C, "window_attention: k_pad must be [", C,
                "] (heads * d), got ", k_pad->sizes());
    check_same(*k_pad, q, "k_pad");
  }
  if (v_pad.has_value() && v_pad->defined()) {
    TORCH_CHECK(v_pad->dim() == 1 && v_pad->size(0) == C, "window_attention: v_pad must be [", C,
                "] (heads * d), got ", v_pad->sizes());
    check_same(*v_pad, q, "v_pad");
  }
  WindowGeometry g;
  g.B = q.size(0);
  g.H = q.size(1);
  g.W = q.size(2);
  g.C = C;
  g.heads = num_heads;
  g.d = C / num_heads;
  g.wh = window[0];
  g.ww = window[1];
  g.top = offset[0];
  g.left = offset[1];
  g.nh = (g.H + g.top + g.wh - 1) / g.wh;
  g.nw = (g.W + g.left + g.ww - 1) / g.ww;
  g.L = g.wh * g.ww;
  g.table = (2 * g.wh - 1) * (2 * g.ww - 1);
  g.zeros_mode = pad_mode == "zeros";
  if (rel_bias.has_value() && rel_bias->defined()) {
    TORCH_CHECK(rel_bias->dim() == 2 && rel_bias->size(0) == g.table &&
                    rel_bias->size(1) == num_heads,
                "window_attention: rel_bias must be [(2wh - 1) * (2ww - 1), heads] = [", g.table,
                ", ", num_heads, "], got ", rel_bias->sizes());
    check_same(*rel_bias, q, "rel_bias");
  }
  return g;
}

inline bool has(const c10::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// Checks the extra tensors of the backward against the forward inputs.
inline void check_window_attention_backward_args(const at::Tensor& grad_out, const at::Tensor& q,
                                                 const at::Tensor& out, const at::Tensor& lse,
                                                 const WindowGeometry& g) {
  TORCH_CHECK(grad_out.sizes() == q.sizes(), "window_attention_backward: grad_out shape ",
              grad_out.sizes(), " differs from q shape ", q.sizes());
  TORCH_CHECK(out.sizes() == q.sizes(), "window_attention_backward: out shape ", out.sizes(),
              " differs from q shape ", q.sizes());
  check_same(grad_out, q, "grad_out");
  check_same(out, q, "out");
  TORCH_CHECK(lse.dim() == 4 && lse.size(0) == g.B && lse.size(1) == g.heads &&
                  lse.size(2) == g.H && lse.size(3) == g.W,
              "window_attention_backward: lse must be [B, heads, H, W] = [", g.B, ", ", g.heads,
              ", ", g.H, ", ", g.W, "], got ", lse.sizes());
  TORCH_CHECK(lse.scalar_type() == at::kFloat || lse.scalar_type() == at::kDouble,
              "window_attention_backward: lse must be float32 (float64 for float64 inputs), got ",
              lse.scalar_type());
  TORCH_CHECK(lse.device() == q.device(), "window_attention_backward: lse is on ", lse.device(),
              " but q is on ", q.device());
}

// dtype of the per-query log-sum-exp: float64 for float64 inputs, float32 otherwise.
inline at::ScalarType lse_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace higherpose
