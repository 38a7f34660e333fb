// Every schema of the higherpose operator library, in one place, and the C++ API
// (include/higherpose/ops.h) that calls them through the dispatcher.
//
// Kernels register themselves per dispatch key in their own files (csrc/<op>/<op>_cpu.cpp,
// <op>_cuda.cu, <op>_meta.cpp, <op>_autograd.cpp) through the macros of registration.h, so that
// only the first loaded copy of this library registers. Fake kernels for torch.compile: C++ Meta
// kernels where the output shape follows from the input shapes; the grouping ops, whose person
// count depends on the data, have Python fakes in higherpose/ops/group.py.
#include <ATen/core/dispatch/Dispatcher.h>

#include "include/higherpose/ops.h"
#include "registration.h"

namespace higherpose {
namespace detail {

bool owns_registration() {
  static const bool owns =
      !c10::Dispatcher::singleton().findSchema({"higherpose::heatmap_peaks", ""}).has_value();
  return owns;
}

}  // namespace detail
}  // namespace higherpose

HIGHERPOSE_LIBRARY(m) {
  // 1. Heatmap peaks: local-maximum suppression + top-k + tag gather, fused.
  //    heatmaps [N, J, H, W], tags [N, J, H, W, T] -> values [N, J, k] (heatmaps' dtype),
  //    x, y [N, J, k] (int64), peak_tags [N, J, k, T] (tags' dtype).
  m.def(
      "heatmap_peaks(Tensor heatmaps, Tensor tags, int kernel, int k) "
      "-> (Tensor values, Tensor x, Tensor y, Tensor peak_tags)");

  // 2. Local-window multi-head attention (HRFormer / Swin style), with backward.
  //    q, k, v [B, H, W, heads * d]; window (wh, ww); offset (top, left) of the window grid;
  //    pad_mode "zeros" (padded positions are real keys/values equal to k_pad / v_pad) or "mask".
  //    rel_bias: optional [(2 wh - 1) * (2 ww - 1), heads] table.
  //    The forward also returns the per-query log-sum-exp [B, heads, H, W] (float32) that the
  //    backward uses to recompute attention weights instead of storing them.
  m.def(
      "window_attention_forward(Tensor q, Tensor k, Tensor v, int[] window, int num_heads, "
      "float scale, int[] offset, str pad_mode, Tensor? k_pad, Tensor? v_pad, Tensor? rel_bias) "
      "-> (Tensor out, Tensor lse)");
  m.def(
      "window_attention_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor out, "
      "Tensor lse, int[] window, int num_heads, float scale, int[] offset, str pad_mode, "
      "Tensor? k_pad, Tensor? v_pad, Tensor? rel_bias) "
      "-> (Tensor grad_q, Tensor grad_k, Tensor grad_v, Tensor grad_k_pad, Tensor grad_v_pad, "
      "Tensor grad_rel_bias)");
  //    The differentiable entry point (Autograd kernel in csrc/window_attention/).
  m.def(
      "window_attention(Tensor q, Tensor k, Tensor v, int[] window, int num_heads, float scale, "
      "int[] offset, str pad_mode, Tensor? k_pad, Tensor? v_pad, Tensor? rel_bias) -> Tensor");
  //    For benchmarks and tests: force the CUDA kernel family ("rows", "tiles", "mma"; "auto" or ""
  //    = the default rule of csrc/window_attention/kernel_family.h); returns the previous setting.
  m.def("set_window_attention_kernel(str family) -> str");

  // 3. Associative-embedding grouping (HigherHRNet's parser) over a batch.
  //    Returns poses [N, P, J, 3 + T] (x, y, value, tags), scores [N, P], counts [N] (int64).
  //    The fake kernels of these two (their output sizes depend on the data) are Python: torch
  //    learns from here which module holds them, also in a process that loaded only this library.
  m.set_python_module("higherpose.ops.group");
  m.def(
      "ae_group(Tensor heatmaps, Tensor tags, Tensor peak_values, Tensor peak_x, Tensor peak_y, "
      "Tensor peak_tags, int[] joint_order, float detection_threshold, float tag_threshold, "
      "bool use_detection_val, bool ignore_too_much, int max_people, bool adjust, bool refine) "
      "-> (Tensor poses, Tensor scores, Tensor counts)");
  //    Its assignment solver, with scipy.optimize.linear_sum_assignment's interface and ties.
  m.def("linear_sum_assignment(Tensor cost) -> (Tensor row_ind, Tensor col_ind)");
}

namespace higherpose {
namespace {

// The dispatcher's handle of op `name`, typed by the C++ signature of its schema.
template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> heatmap_peaks(const at::Tensor& heatmaps,
                                                                         const at::Tensor& tags,
                                                                         int64_t kernel, int64_t k) {
  static const auto op = find_op<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, int64_t, int64_t)>("higherpose::heatmap_peaks");
  return op.call(heatmaps, tags, kernel, k);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ae_group(
    const at::Tensor& heatmaps, const at::Tensor& tags, const at::Tensor& peak_values, const at::Tensor& peak_x,
    const at::Tensor& peak_y, const at::Tensor& peak_tags, const std::vector<int64_t>& joint_order,
    double detection_threshold, double tag_threshold, bool use_detection_val, bool ignore_too_much,
    int64_t max_people, bool adjust, bool refine) {
  static const auto op = find_op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
      const at::Tensor&, at::IntArrayRef, double, double, bool, bool, int64_t, bool, bool)>("higherpose::ae_group");
  return op.call(heatmaps, tags, peak_values, peak_x, peak_y, peak_tags, joint_order, detection_threshold,
                 tag_threshold, use_detection_val, ignore_too_much, max_people, adjust, refine);
}

std::tuple<at::Tensor, at::Tensor> linear_sum_assignment(const at::Tensor& cost) {
  static const auto op =
      find_op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&)>("higherpose::linear_sum_assignment");
  return op.call(cost);
}

at::Tensor window_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            std::vector<int64_t> window, int64_t num_heads, double scale,
                            std::vector<int64_t> offset, std::string_view pad_mode,
                            const std::optional<at::Tensor>& k_pad, const std::optional<at::Tensor>& v_pad,
                            const std::optional<at::Tensor>& rel_bias) {
  static const auto op = find_op<at::Tensor(
      const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef, int64_t, double, at::IntArrayRef,
      c10::string_view, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
      const std::optional<at::Tensor>&)>("higherpose::window_attention");
  return op.call(q, k, v, window, num_heads, scale, offset, pad_mode, k_pad, v_pad, rel_bias);
}

}  // namespace higherpose
