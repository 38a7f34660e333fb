// Heatmap peaks on the CPU: one task per (image, joint) map, run in parallel.
//
// A pixel is a peak iff it is not NaN and no pixel of its kernel x kernel neighbourhood (inside
// the map) is greater. NaN pixels are never peaks and never suppress a neighbour (a comparison
// with NaN is false). Peaks are ranked by value, ties by the lower flat index y * W + x; slots
// beyond the number of peaks keep the fill value (-inf, x = y = -1, zero tags).
//
// The scan visits pixels in flat-index order and leaves a neighbourhood at the first greater
// neighbour, so a smooth map costs a few comparisons per pixel and no pooled copy is made.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <vector>

#include "peaks/peaks.h"
#include "registration.h"

namespace higherpose {
namespace {

template <typename scalar_t>
void peaks_one_map(const scalar_t* map, int64_t H, int64_t W, int64_t sh, int64_t sw, int64_t radius,
                   int64_t k, std::vector<scalar_t>& best_val, std::vector<int64_t>& best_idx) {
  int64_t count = 0;  // number of peaks kept so far (<= k), sorted best first
  for (int64_t yy = 0; yy < H; ++yy) {
    const int64_t y0 = std::max<int64_t>(0, yy - radius), y1 = std::min<int64_t>(H - 1, yy + radius);
    for (int64_t xx = 0; xx < W; ++xx) {
      const scalar_t v = map[yy * sh + xx * sw];
      if (v != v) continue;  // NaN is never a peak
      // A candidate that cannot enter a full list needs no neighbourhood test.
      if (count == k && !(v > best_val[k - 1])) continue;
      const int64_t x0 = std::max<int64_t>(0, xx - radius), x1 = std::min<int64_t>(W - 1, xx + radius);
      bool peak = true;
      for (int64_t ny = y0; ny <= y1 && peak; ++ny) {
        const scalar_t* row = map + ny * sh;
        for (int64_t nx = x0; nx <= x1; ++nx) {
          if (row[nx * sw] > v) {
            peak = false;
            break;
          }
        }
      }
      if (!peak) continue;
      // Insert after every kept peak of greater or equal value: scanning in flat-index order,
      // an equal earlier peak has the lower index and ranks first.
      int64_t pos = count < k ? count : k - 1;
      while (pos > 0 && v > best_val[pos - 1]) {
        best_val[pos] = best_val[pos - 1];
        best_idx[pos] = best_idx[pos - 1];
        --pos;
      }
      best_val[pos] = v;
      best_idx[pos] = yy * W + xx;
      if (count < k) ++count;
    }
  }
  best_idx.resize(count);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> heatmap_peaks_cpu(
    const at::Tensor& heatmaps, const at::Tensor& tags, int64_t kernel, int64_t k) {
  check_heatmap_peaks_args(heatmaps, tags, kernel, k);
  auto [values, xs, ys, peak_tags] = allocate_heatmap_peaks_outputs(heatmaps, tags, k);
  const int64_t N = heatmaps.size(0), J = heatmaps.size(1), H = heatmaps.size(2),
                W = heatmaps.size(3), T = tags.size(4);
  if (N * J == 0 || H * W == 0) return {values, xs, ys, peak_tags};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, heatmaps.scalar_type(),
                                  "heatmap_peaks_cpu", [&] {
    const scalar_t* hm = heatmaps.const_data_ptr<scalar_t>();
    const scalar_t* tg = tags.const_data_ptr<scalar_t>();
    scalar_t* out_val = values.mutable_data_ptr<scalar_t>();
    int64_t* out_x = xs.mutable_data_ptr<int64_t>();
    int64_t* out_y = ys.mutable_data_ptr<int64_t>();
    scalar_t* out_tag = peak_tags.mutable_data_ptr<scalar_t>();
    const auto hs = heatmaps.strides();
    const auto ts = tags.strides();
    at::parallel_for(0, N * J, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> best_val(k);
      std::vector<int64_t> best_idx;
      for (int64_t nj = begin; nj < end; ++nj) {
        const int64_t n = nj / J, j = nj % J;
        best_idx.assign(k, -1);
        peaks_one_map<scalar_t>(hm + n * hs[0] + j * hs[1], H, W, hs[2], hs[3], kernel / 2, k,
                                best_val, best_idx);
        for (int64_t i = 0; i < static_cast<int64_t>(best_idx.size()); ++i) {
          const int64_t idx = best_idx[i], py = idx / W, px = idx % W;
          const int64_t o = nj * k + i;
          out_val[o] = best_val[i];
          out_x[o] = px;
          out_y[o] = py;
          const scalar_t* tag = tg + n * ts[0] + j * ts[1] + py * ts[2] + px * ts[3];
          for (int64_t t = 0; t < T; ++t) out_tag[o * T + t] = tag[t * ts[4]];
        }
      }
    });
  });
  return {values, xs, ys, peak_tags};
}

}  // namespace

HIGHERPOSE_LIBRARY_IMPL(CPU, m) { m.impl("heatmap_peaks", &heatmap_peaks_cpu); }

}  // namespace higherpose
