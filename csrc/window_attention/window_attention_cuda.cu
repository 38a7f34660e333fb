// CUDA entry points of the window-attention op: argument checks, the device guard, the current
// stream and the launches. The kernels and the launch logic are in window_attention_kernels.cuh
// (shared with the host emulator). HIGHERPOSE_WINDOW_ATTENTION_KERNEL=rows|tiles|mma picks the
// kernel family (default rows, the one measured on an H100; see the header).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include "registration.h"

#include <cstdlib>
#include <string>

#include "window_attention/window_attention_kernels.cuh"

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

// The family HIGHERPOSE_WINDOW_ATTENTION_KERNEL asks for (rows when unset); mma needs tensor-core
// mma.sync (sm_80+), so on older GPUs it becomes tiles.
KernelFamily family_from_environment() {
  const char* name = std::getenv("HIGHERPOSE_WINDOW_ATTENTION_KERNEL");
  if (name == nullptr || *name == '\0') return KernelFamily::kRows;
  const KernelFamily family = kernel_family(name, "HIGHERPOSE_WINDOW_ATTENTION_KERNEL");
  if (family == KernelFamily::kMma) {
    int device = 0, major = 0;
    C10_CUDA_CHECK(cudaGetDevice(&device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    if (major < 8) return KernelFamily::kTiles;
  }
  return family;
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
  return window_attention_forward_impl(CudaLaunch{}, family_from_environment(), g, scale, q, k, v, k_pad, v_pad,
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
  return window_attention_backward_impl(CudaLaunch{}, family_from_environment(), g, scale, grad_out, q, k, v, out,
                                        lse.contiguous(), k_pad, v_pad, rel_bias);
}

}  // namespace

HIGHERPOSE_LIBRARY_IMPL(CUDA, m) {
  m.impl("window_attention_forward", &window_attention_forward_cuda);
  m.impl("window_attention_backward", &window_attention_backward_cuda);
}

}  // namespace higherpose
