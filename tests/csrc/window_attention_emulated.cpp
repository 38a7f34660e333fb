// The window-attention CUDA kernels (csrc/window_attention/kernels_*.cuh) run on the CPU through
// the block emulator (tests/csrc/emulation), as the test-only ops
// higherpose_testing::window_attention_{forward,backward}_emulated. Without a GPU (CI) they check
// the CUDA kernels' logic against the reference. Very slow (every CUDA thread is a fiber); meant
// for small inputs only.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>

#include "window_attention/window_attention.h"
// After ATen: the emulator header defines macros named like CUDA's keywords.
#include "emulation/cuda_on_host.h"
#include "window_attention/window_attention_launch.cuh"

namespace higherpose {
namespace {

// The largest opt-in shared memory per block of the GPUs we target (H100: 227 KiB).
constexpr size_t kEmulatedSharedLimit = 227 * 1024;

struct EmulatedLaunch {
  uint64_t seed;
  template <typename... KernelArgs, typename... Args>
  void operator()(void (*kernel)(KernelArgs...), int64_t blocks, int threads, size_t shared_bytes,
                  const char* what, Args... args) const {
    TORCH_CHECK(shared_bytes <= kEmulatedSharedLimit, "window_attention: the CUDA ", what, " needs ", shared_bytes,
                " bytes of shared memory per block, more than an H100's ", kEmulatedSharedLimit);
    emu::run_grid(static_cast<unsigned>(blocks), static_cast<unsigned>(threads), shared_bytes,
                  [&] { kernel(args...); }, seed);
  }
};

void check_emulated(const at::Tensor& q, int64_t head_dim, int64_t seed) {
  TORCH_CHECK(q.device().is_cpu(), "window_attention (emulated CUDA): inputs must be on the CPU, got ", q.device());
  TORCH_CHECK(head_dim <= 128, "window_attention: the CUDA kernels support head_dim up to 128, got ", head_dim);
  TORCH_CHECK(q.scalar_type() != at::kDouble,
              "window_attention: float64 is supported on the CPU only (CUDA: float32, float16, bfloat16)");
  TORCH_CHECK(seed >= 0, "window_attention (emulated CUDA): seed must be >= 0, got ", seed);
}

std::tuple<at::Tensor, at::Tensor> forward_emulated(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::IntArrayRef window, int64_t num_heads,
    double scale, at::IntArrayRef offset, c10::string_view pad_mode, const c10::optional<at::Tensor>& k_pad,
    const c10::optional<at::Tensor>& v_pad, const c10::optional<at::Tensor>& rel_bias, c10::string_view kernel,
    int64_t seed) {
  const WindowGeometry g =
      check_window_attention_args(q, k, v, window, num_heads, scale, offset, pad_mode, k_pad, v_pad, rel_bias);
  check_emulated(q, g.d, seed);
  return window_attention_forward_impl(EmulatedLaunch{static_cast<uint64_t>(seed)},
                                       parse_kernel_family(std::string(kernel), "kernel"), g, scale, q, k, v, k_pad, v_pad,
                                       rel_bias);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_emulated(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
    const at::Tensor& lse, at::IntArrayRef window, int64_t num_heads, double scale, at::IntArrayRef offset,
    c10::string_view pad_mode, const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
    const c10::optional<at::Tensor>& rel_bias, c10::string_view kernel, int64_t seed) {
  const WindowGeometry g = check_window_attention_backward_args(
      grad_out, q, k, v, out, lse, window, num_heads, scale, offset, pad_mode, k_pad, v_pad, rel_bias);
  check_emulated(q, g.d, seed);
  return window_attention_backward_impl(EmulatedLaunch{static_cast<uint64_t>(seed)},
                                        parse_kernel_family(std::string(kernel), "kernel"), g, scale, grad_out, q, k, v,
                                        out, lse.contiguous(), k_pad, v_pad, rel_bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(higherpose_testing, CPU, m) {
  m.impl("window_attention_forward_emulated", &forward_emulated);
  m.impl("window_attention_backward_emulated", &backward_emulated);
}

}  // namespace higherpose
