// Every schema of the higherpose operator library, in one place.
//
// Kernels register themselves per dispatch key with TORCH_LIBRARY_IMPL in their own files
// (csrc/<op>/<op>_cpu.cpp, csrc/<op>/<op>_cuda.cu, csrc/<op>/<op>_autograd.cpp). Fake (meta)
// kernels for torch.compile live in Python (higherpose/ops/*.py), next to the documented wrappers.
#include <torch/library.h>

TORCH_LIBRARY(higherpose, m) {
  // 1. Heatmap peaks: local-maximum suppression + top-k + tag gather, fused.
  //    heatmaps [N, J, H, W], tags [N, J, H, W, T] -> values [N, J, k] (heatmaps' dtype),
  //    x, y [N, J, k] (int64), peak_tags [N, J, k, T] (tags' dtype).
  m.def(
      "heatmap_peaks(Tensor heatmaps, Tensor tags, int kernel, int k) "
      "-> (Tensor values, Tensor x, Tensor y, Tensor peak_tags)");

  // 2. Associative-embedding grouping (HigherHRNet's parser) over a batch.
  //    Returns poses [N, P, J, 3 + T] (x, y, value, tags), scores [N, P], counts [N] (int64).
  m.def(
      "ae_group(Tensor heatmaps, Tensor tags, Tensor peak_values, Tensor peak_x, Tensor peak_y, "
      "Tensor peak_tags, int[] joint_order, float detection_threshold, float tag_threshold, "
      "bool use_detection_val, bool ignore_too_much, int max_people, bool adjust, bool refine) "
      "-> (Tensor poses, Tensor scores, Tensor counts)");
  //    Its assignment solver, with scipy.optimize.linear_sum_assignment's interface and ties.
  m.def("linear_sum_assignment(Tensor cost) -> (Tensor row_ind, Tensor col_ind)");

  // 3. Local-window multi-head attention (HRFormer / Swin style), with backward.
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
  //    The CUDA kernels run on the CPU by the block emulator (csrc/emulation), for tests without
  //    a GPU: same arguments plus the kernel family ("rows" or "tiles") and a scheduling seed.
  m.def(
      "_window_attention_forward_emulated(Tensor q, Tensor k, Tensor v, int[] window, "
      "int num_heads, float scale, int[] offset, str pad_mode, Tensor? k_pad, Tensor? v_pad, "
      "Tensor? rel_bias, str kernel, int seed) -> (Tensor out, Tensor lse)");
  m.def(
      "_window_attention_backward_emulated(Tensor grad_out, Tensor q, Tensor k, Tensor v, "
      "Tensor out, Tensor lse, int[] window, int num_heads, float scale, int[] offset, "
      "str pad_mode, Tensor? k_pad, Tensor? v_pad, Tensor? rel_bias, str kernel, int seed) "
      "-> (Tensor grad_q, Tensor grad_k, Tensor grad_v, Tensor grad_k_pad, Tensor grad_v_pad, "
      "Tensor grad_rel_bias)");
  // The differentiable entry point (Autograd kernel in csrc/window_attention/).
  //    (Below: the block emulator's own checks, csrc/emulation/emulator_self_test.cpp.)
  m.def(
      "window_attention(Tensor q, Tensor k, Tensor v, int[] window, int num_heads, float scale, "
      "int[] offset, str pad_mode, Tensor? k_pad, Tensor? v_pad, Tensor? rel_bias) -> Tensor");

  // Tiny kernels run by the CUDA block emulator, for its tests (see csrc/emulation/).
  m.def("_cuda_emulator_self_test(str scenario) -> Tensor");
}
