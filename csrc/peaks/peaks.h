// Shared argument checks and output allocation of the heatmap-peaks op (CPU and CUDA).
#pragma once
#include <ATen/ATen.h>
#include <c10/util/safe_numerics.h>

#include <algorithm>
#include <limits>
#include <tuple>

namespace higherpose {

// Checks every argument of heatmap_peaks, for every path (CPU, CUDA and the Meta kernel, whose
// sizes may be symbolic under torch.compile, hence sym_size); errors name the wrong argument.
inline void check_heatmap_peaks_args(const at::Tensor& heatmaps, const at::Tensor& tags,
                                     int64_t kernel, int64_t k) {
  TORCH_CHECK(heatmaps.dim() == 4, "heatmap_peaks: heatmaps must be [N, J, H, W], got ",
              heatmaps.dim(), " dimensions");
  TORCH_CHECK(tags.dim() == 5, "heatmap_peaks: tags must be [N, J, H, W, T], got ", tags.dim(),
              " dimensions");
  for (int d = 0; d < 4; ++d) {
    TORCH_CHECK(tags.sym_size(d) == heatmaps.sym_size(d), "heatmap_peaks: tags ", tags.sym_sizes(),
                " do not match heatmaps ", heatmaps.sym_sizes(), " in dimension ", d);
  }
  TORCH_CHECK(at::isFloatingType(heatmaps.scalar_type()),
              "heatmap_peaks: heatmaps must be a floating dtype, got ", heatmaps.scalar_type());
  TORCH_CHECK(tags.scalar_type() == heatmaps.scalar_type(),
              "heatmap_peaks: tags dtype ", tags.scalar_type(), " differs from heatmaps dtype ",
              heatmaps.scalar_type());
  TORCH_CHECK(tags.device() == heatmaps.device(), "heatmap_peaks: tags are on ", tags.device(),
              " but heatmaps are on ", heatmaps.device());
  TORCH_CHECK(kernel > 0 && kernel % 2 == 1,
              "heatmap_peaks: kernel must be a positive odd number, got ", kernel);
  TORCH_CHECK(k >= 1, "heatmap_peaks: k must be at least 1, got ", k);
}

// Runs `allocate` (the outputs' allocation) with errors that name k: output sizes that overflow
// 64-bit byte counts are refused before any allocation, and an out-of-memory error says which k
// asked for how much.
template <typename Allocate>
auto allocate_for_k(const at::Tensor& heatmaps, const at::Tensor& tags, int64_t k, Allocate allocate) {
  const int64_t n = heatmaps.size(0), j = heatmaps.size(1), t = std::max<int64_t>(tags.size(4), 1);
  int64_t bytes = 0;
  const bool overflow = c10::mul_overflows(n, j, &bytes) || c10::mul_overflows(bytes, k, &bytes) ||
                        c10::mul_overflows(bytes, t + 3, &bytes) || c10::mul_overflows(bytes, int64_t(8), &bytes);
  TORCH_CHECK(!overflow, "heatmap_peaks: k = ", k, " is too large: outputs of ", n, " x ", j, " x ", k,
              " peaks would overflow 64-bit sizes");
  try {
    return allocate();
  } catch (const c10::Error& e) {  // the CPU allocator's failure is a plain c10::Error, CUDA's an OutOfMemoryError
    TORCH_CHECK(false, "heatmap_peaks: not enough memory for the outputs of k = ", k, " peaks per map (about ",
                bytes, " bytes): ", e.what_without_backtrace());
  }
}

// values (heatmaps' dtype, filled with -inf), x and y (int64, filled with -1), peak tags (zeros).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> allocate_heatmap_peaks_outputs(
    const at::Tensor& heatmaps, const at::Tensor& tags, int64_t k) {
  const auto n = heatmaps.size(0), j = heatmaps.size(1), t = tags.size(4);
  return allocate_for_k(heatmaps, tags, k, [&] {
    auto values = at::full({n, j, k}, -std::numeric_limits<double>::infinity(), heatmaps.options());
    auto x = at::full({n, j, k}, -1, heatmaps.options().dtype(at::kLong));
    auto y = at::full({n, j, k}, -1, heatmaps.options().dtype(at::kLong));
    auto peak_tags = at::zeros({n, j, k, t}, tags.options());
    return std::make_tuple(values, x, y, peak_tags);
  });
}

}  // namespace higherpose
