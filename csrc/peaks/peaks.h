// Shared argument checks and output allocation of the heatmap-peaks op (CPU and CUDA).
#pragma once
#include <ATen/ATen.h>

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

// values (heatmaps' dtype, filled with -inf), x and y (int64, filled with -1), peak tags (zeros).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> allocate_heatmap_peaks_outputs(
    const at::Tensor& heatmaps, const at::Tensor& tags, int64_t k) {
  const auto n = heatmaps.size(0), j = heatmaps.size(1), t = tags.size(4);
  auto values = at::full({n, j, k}, -std::numeric_limits<double>::infinity(), heatmaps.options());
  auto x = at::full({n, j, k}, -1, heatmaps.options().dtype(at::kLong));
  auto y = at::full({n, j, k}, -1, heatmaps.options().dtype(at::kLong));
  auto peak_tags = at::zeros({n, j, k, t}, tags.options());
  return {values, x, y, peak_tags};
}

}  // namespace higherpose
