// CUDA entry points of the window-attention op: argument checks, the kernel family (the rule is in
// kernel_family.h), the device guard, the current stream and the launches. The kernels are in
// kernels_*.cuh, their launch logic in window_attention_launch.cuh (shared with the host emulator).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>

#include "registration.h"
#include "window_attention/window_attention_launch.cuh"

namespace higherpose {
namespace {

// Sets the dynamic shared memory of `kernel` to `bytes`, or fails with a clear message.
template <typename Kernel>
void set_shared_memory(Kernel kernel, size_t bytes, const char* what) {
  int device = 0, optin = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  TORCH_CHECK(bytes <= static_cast<size_t>(optin), "window_attention: the CUDA ", what,
              " of this window size and head_dim needs ", bytes,
              " bytes of shared memory per block, more than the device's ", optin, "; use smaller windows or heads");
  if (bytes > 48 * 1024)
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// Launches on the current stream of the current device.
struct CudaLaunch {
  template <typename... KernelArgs, typename... Args>
  void operator()(void (*kernel)(KernelArgs...), int64_t blocks, int threads, size_t shared_bytes,
                  const char* what, Args... args) const {
    set_shared_memory(kernel, shared_bytes, what);
    kernel<<<static_cast<unsigned>(blocks), threads, shared_bytes, c10::cuda::getCurrentCUDAStream()>>>(args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

int compute_capability_major() {
  int device = 0, major = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major;
}

// The family that runs this call: the forced one (benchmarks, tests) or the default table; mma
// needs tensor-core mma.sync (sm_80+), so below that it becomes tiles. A forced family that cannot
// take the call's shape runs the next one (family_for) and says so once.
KernelFamily family_for_call(const WindowGeometry& g, at::ScalarType dtype) {
  const int major = compute_capability_major();
  const std::optional<KernelFamily> forced = forced_kernel_family();
  KernelFamily requested = forced ? *forced : default_kernel_family(g, dtype, major);
  if (requested == KernelFamily::kMma && major < 8) requested = KernelFamily::kTiles;
  const KernelFamily runs = family_for(requested, g);
  if (forced && runs != *forced) {
    TORCH_WARN_ONCE("window_attention: the forced CUDA kernel family \"", kernel_family_name(*forced),
                    "\" cannot run windows of ", g.L, " positions with head_dim ", g.d, " on this device; ",
                    "those calls run \"", kernel_family_name(runs), "\"");
  }
  return runs;
}

void check_cuda(const at::Tensor& q, int64_t head_dim) {
  TORCH_CHECK(q.is_cuda(), "window_attention: the CUDA kernel got q on ", q.device());
  // Checked before any dispatch so the error is raised from plain host code.
  TORCH_CHECK(head_dim <= 128, "window_attention: the CUDA kernels support head_dim up to 128, got ", head_dim);
  TORCH_CHECK(q.scalar_type() != at::kDouble,
              "window_attention: float64 is supported on the CPU only (CUDA: float32, float16, bfloat16)");
}

std::tuple<at::Tensor, at::Tensor> window_attention_forward_cuda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::IntArrayRef window,
    int64_t num_heads, double scale, at::IntArrayRef offset, c10::string_view pad_mode,
    const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
    const c10::optional<at::Tensor>& rel_bias) {
  const WindowGeometry g = check_window_attention_args(q, k, v, window, num_heads, scale, offset,
                                                       pad_mode, k_pad, v_pad, rel_bias);
  check_cuda(q, g.d);
  c10::cuda::CUDAGuard guard(q.device());
  return window_attention_forward_impl(CudaLaunch{}, family_for_call(g, q.scalar_type()), g, scale, q, k, v, k_pad, v_pad,
                                       rel_bias);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
window_attention_backward_cuda(const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                               at::IntArrayRef window, int64_t num_heads, double scale,
                               at::IntArrayRef offset, c10::string_view pad_mode,
                               const c10::optional<at::Tensor>& k_pad,
                               const c10::optional<at::Tensor>& v_pad,
                               const c10::optional<at::Tensor>& rel_bias) {
  const WindowGeometry g = check_window_attention_backward_args(
      grad_out, q, k, v, out, lse, window, num_heads, scale, offset, pad_mode, k_pad, v_pad, rel_bias);
  check_cuda(q, g.d);
  c10::cuda::CUDAGuard guard(q.device());
  return window_attention_backward_impl(CudaLaunch{}, family_for_call(g, q.scalar_type()), g, scale, grad_out, q, k, v, out,
                                        lse.contiguous(), k_pad, v_pad, rel_bias);
}

}  // namespace

HIGHERPOSE_LIBRARY_IMPL(CUDA, m) {
  m.impl("window_attention_forward", &window_attention_forward_cuda);
  m.impl("window_attention_backward", &window_attention_backward_cuda);
}

}  // namespace higherpose
