// Which CUDA kernel family runs a window-attention call: the rule, in one place (host code only).
// The families ("rows", "tiles", "mma") are described in window_attention_launch.cuh; what each
// can take (window positions, head_dim) is `family_for` there.
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <string>

#include "registration.h"
#include "window_attention/window_attention.h"

namespace higherpose {

enum class KernelFamily { kRows, kTiles, kMma };

inline KernelFamily parse_kernel_family(const std::string& name, const char* where) {
  if (name == "rows") return KernelFamily::kRows;
  if (name == "tiles") return KernelFamily::kTiles;
  if (name == "mma") return KernelFamily::kMma;
  TORCH_CHECK(false, "window_attention: ", where, " must be \"rows\", \"tiles\" or \"mma\", got \"", name, "\"");
  return KernelFamily::kRows;
}

inline const char* kernel_family_name(KernelFamily family) {
  return family == KernelFamily::kMma ? "mma" : family == KernelFamily::kTiles ? "tiles" : "rows";
}

// The family a call gets by default, by shape, dtype and the device's compute capability (major).
// The table is what has been measured on a GPU (BENCHMARKS.md): "rows" (H100: 1.2-3.2x the
// reference, forward + backward) for every shape and dtype. "tiles" and "mma" have never run on a
// GPU, so no shape picks them yet; once `tools/gpu_check.sh attention` has measured them, the
// shapes where one wins get it here.
inline KernelFamily default_kernel_family(const WindowGeometry& /*g*/, at::ScalarType /*dtype*/, int /*sm_major*/) {
  return KernelFamily::kRows;
}

// The family forced for benchmarking and tests, if any: set by
// torch.ops.higherpose.set_window_attention_kernel (Python: higherpose.ops.window_attention_kernel),
// initialised once from the environment variable HIGHERPOSE_WINDOW_ATTENTION_KERNEL.
HIGHERPOSE_HIDDEN std::optional<KernelFamily> forced_kernel_family();

}  // namespace higherpose
