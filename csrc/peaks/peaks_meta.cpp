// The Meta (fake) kernel of heatmap_peaks: the same argument checks as the CPU and CUDA kernels,
// then outputs of the right shapes and dtypes without data. torch.compile / FakeTensor / torch.export
// trace through it, also in a process that loaded only the CMake library.
#include <ATen/ATen.h>

#include "peaks/peaks.h"
#include "registration.h"

namespace higherpose {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> heatmap_peaks_meta(const at::Tensor& heatmaps,
                                                                              const at::Tensor& tags,
                                                                              int64_t kernel, int64_t k) {
  check_heatmap_peaks_args(heatmaps, tags, kernel, k);
  const c10::SymInt n = heatmaps.sym_size(0), j = heatmaps.sym_size(1), t = tags.sym_size(4);
  return {at::empty_symint({n, j, k}, heatmaps.options()),
          at::empty_symint({n, j, k}, heatmaps.options().dtype(at::kLong)),
          at::empty_symint({n, j, k}, heatmaps.options().dtype(at::kLong)),
          at::empty_symint({n, j, k, t}, tags.options())};
}

}  // namespace

HIGHERPOSE_LIBRARY_IMPL(Meta, m) { m.impl("heatmap_peaks", &heatmap_peaks_meta); }

}  // namespace higherpose
