// ae_group on the CPU: one task per image (at::parallel_for), each doing upstream's matching,
// adjust, scores and refine. Semantics: higherpose/ops/reference/group.py.
//
// Refine computes, per person and *missing* joint only, the first row-major maximum of
// det - round(||tag - person tag||) in float32, without materialising the score map. Since
// round(dist) >= 0, a pixel whose det is below the best score so far cannot win, so the scan
// is seeded with that joint's peaks and the person's bounding box (where the maximum usually
// is) and only evaluates the distance where det reaches the current best. Ties keep the lowest
// flat index, so the result is the same as a plain row-major argmax.
#include <ATen/Parallel.h>

#include <cmath>
#include <limits>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "group/group.h"
#include "registration.h"

namespace higherpose {
namespace {

// det - round(||tag - person_tag||) at flat index `idx` (float32, upstream's operation order).
inline float refine_score(const float* det, const float* tag, int64_t idx, const float* person_tag,
                          int64_t T) {
  const float* tg = tag + idx * T;
  float d = tg[0] - person_tag[0];
  float sq = d * d;
  for (int64_t t = 1; t < T; ++t) {
    d = tg[t] - person_tag[t];
    sq = sq + d * d;
  }
  return det[idx] - round_half_even(std::sqrt(sq));
}

constexpr int64_t kChunk = 64;  // refine skips runs of this many pixels (flat index) at once

// Maximum of det over every run of kChunk pixels (NaN ignored): one pass over a map, shared by
// all refine tasks of that joint type.
void chunk_maxima(const float* det, int64_t HW, std::vector<float>& out) {
  const int64_t chunks = (HW + kChunk - 1) / kChunk;
  out.resize(chunks);
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk, end = std::min(begin + kChunk, HW);
    float m = -std::numeric_limits<float>::infinity();
    int64_t i = begin;
#if defined(__SSE2__)
    if (end - begin == kChunk) {
      // Four independent accumulators; maxps(v, acc) returns acc when v is NaN (NaN loses).
      __m128 a0 = _mm_set1_ps(m), a1 = a0, a2 = a0, a3 = a0;
      for (; i < end; i += 16) {
        a0 = _mm_max_ps(_mm_loadu_ps(det + i), a0);
        a1 = _mm_max_ps(_mm_loadu_ps(det + i + 4), a1);
        a2 = _mm_max_ps(_mm_loadu_ps(det + i + 8), a2);
        a3 = _mm_max_ps(_mm_loadu_ps(det + i + 12), a3);
      }
      alignas(16) float lanes[4];
      _mm_store_ps(lanes, _mm_max_ps(_mm_max_ps(a0, a1), _mm_max_ps(a2, a3)));
      m = std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
    }
#endif
    for (; i < end; ++i) m = det[i] > m ? det[i] : m;
    out[c] = m;
  }
}

// First row-major argmax of the refine score over one H x W map (NaN scores never win; if no
// score is above -inf the answer is pixel 0, like numpy's argmax after NaN -> -inf).
//
// The order of evaluation does not change the answer (ties go to the lower index), so the scan
// first evaluates where the maximum usually is -- the joint's peaks and the person's bounding
// box -- to get a high `best` early, then visits only the runs of pixels whose maximum det
// reaches `best`, and in them only the pixels with det >= best.
int64_t refine_argmax(const float* det, const float* tag, int64_t H, int64_t W, int64_t T,
                      const float* person_tag, const int64_t* seed_x, const int64_t* seed_y,
                      int64_t num_seeds, const int64_t box[4], const std::vector<float>& chunk_max) {
  const int64_t HW = H * W;
  float best = -std::numeric_limits<float>::infinity();
  int64_t best_idx = 0;
  auto consider = [&](int64_t idx) {
    if (!(det[idx] >= best)) return;  // score <= det < best: cannot win (also skips NaN det)
    const float s = refine_score(det, tag, idx, person_tag, T);
    if (s > best || (s == best && idx < best_idx)) {
      best = s;
      best_idx = idx;
    }
  };
  for (int64_t k = 0; k < num_seeds; ++k) {
    if (seed_x[k] >= 0 && seed_x[k] < W && seed_y[k] >= 0 && seed_y[k] < H)
      consider(seed_y[k] * W + seed_x[k]);
  }
  for (int64_t y = box[1]; y <= box[3]; ++y)
    for (int64_t x = box[0]; x <= box[2]; ++x) consider(y * W + x);
  const int64_t chunks = static_cast<int64_t>(chunk_max.size());
  for (int64_t c = 0; c < chunks; ++c) {
    if (!(chunk_max[c] >= best)) continue;
    const int64_t end = std::min((c + 1) * kChunk, HW);
    for (int64_t idx = c * kChunk; idx < end; ++idx) consider(idx);
  }
  // Pixel 0 when every score is -inf or NaN (a chunk of only NaN/-inf never reaches -inf best).
  return best_idx;
}

struct ImageResult {
  ImageGroups groups;
  std::vector<float> scores;
};

void group_one_image(const float* values, const int64_t* xs, const int64_t* ys, const float* ptags,
                     const float* det, const float* tag, int64_t J, int64_t K, int64_t T, int64_t H,
                     int64_t W, const GroupSettings& s, int64_t image, AssignmentSolver& solver,
                     ImageResult& res) {
  ImageGroups& g = res.groups;
  match_image(values, xs, ys, ptags, J, K, T, H, W, s, image, solver, g);
  const int64_t row_len = 3 + T, HW = H * W;
  if (s.adjust) {
    for (int64_t p = 0; p < g.count; ++p) {
      for (int64_t j = 0; j < J; ++j) {
        float* row = g.poses.data() + (p * J + j) * row_len;
        if (!(row[2] > 0.0f)) continue;
        const int64_t x = static_cast<int64_t>(row[0]), y = static_cast<int64_t>(row[1]);
        const float* m = det + j * HW;
        row[0] = (row[0] + quarter_step_x(m, x, y, W)) + 0.5f;
        row[1] = (row[1] + quarter_step_y(m, x, y, H, W)) + 0.5f;
      }
    }
  }
  res.scores.resize(g.count);
  for (int64_t p = 0; p < g.count; ++p) {
    res.scores[p] = numpy_float32_mean(g.poses.data() + p * J * row_len + 2, J, row_len);
  }
  if (!s.refine) return;
  std::vector<float> person_tag(T);
  std::vector<double> tag_sum(T);
  std::vector<std::vector<float>> chunk_max(J);  // per joint type, computed on first use
  for (int64_t p = 0; p < g.count; ++p) {
    float* pose = g.poses.data() + p * J * row_len;
    int64_t present = 0;
    std::fill(tag_sum.begin(), tag_sum.end(), 0.0);
    for (int64_t j = 0; j < J; ++j) {
      const float* row = pose + j * row_len;
      if (!(row[2] > 0.0f)) continue;
      const int64_t x = static_cast<int32_t>(row[0]), y = static_cast<int32_t>(row[1]);
      const float* tg = tag + ((j * H + y) * W + x) * T;
      for (int64_t t = 0; t < T; ++t) tag_sum[t] = tag_sum[t] + static_cast<double>(tg[t]);
      ++present;
    }
    if (present == 0) continue;
    bool finite = true;
    for (int64_t t = 0; t < T; ++t) {
      person_tag[t] = static_cast<float>(tag_sum[t] / static_cast<double>(present));
      finite = finite && std::isfinite(person_tag[t]);
    }
    if (!finite) continue;
    // Bounding box of the person's joints, 2 pixels wider: where its missing joints usually are.
    int64_t box[4] = {W, H, -1, -1};
    for (int64_t j = 0; j < J; ++j) {
      const float* row = pose + j * row_len;
      if (!(row[2] > 0.0f)) continue;
      const int64_t x = static_cast<int32_t>(row[0]), y = static_cast<int32_t>(row[1]);
      box[0] = std::min(box[0], std::max<int64_t>(x - 2, 0));
      box[1] = std::min(box[1], std::max<int64_t>(y - 2, 0));
      box[2] = std::max(box[2], std::min(x + 2, W - 1));
      box[3] = std::max(box[3], std::min(y + 2, H - 1));
    }
    for (int64_t j = 0; j < J; ++j) {
      float* row = pose + j * row_len;
      if (row[2] != 0.0f) continue;  // only missing joints are filled
      const float* m = det + j * HW;
      if (chunk_max[j].empty()) chunk_maxima(m, HW, chunk_max[j]);
      const int64_t idx = refine_argmax(m, tag + j * HW * T, H, W, T, person_tag.data(), xs + j * K,
                                        ys + j * K, K, box, chunk_max[j]);
      const float val = m[idx];
      if (!(val > 0.0f)) continue;
      const int64_t y = idx / W, x = idx % W;
      row[0] = (static_cast<float>(x) + 0.5f) + quarter_step_x(m, x, y, W);
      row[1] = (static_cast<float>(y) + 0.5f) + quarter_step_y(m, x, y, H, W);
      row[2] = val;
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ae_group_cpu(
    const at::Tensor& heatmaps, const at::Tensor& tags, const at::Tensor& peak_values,
    const at::Tensor& peak_x, const at::Tensor& peak_y, const at::Tensor& peak_tags,
    at::IntArrayRef joint_order, double detection_threshold, double tag_threshold,
    bool use_detection_val, bool ignore_too_much, int64_t max_people, bool adjust, bool refine) {
  GroupSettings s{joint_order.vec(), detection_threshold, tag_threshold, use_detection_val,
                  ignore_too_much, max_people, adjust, refine};
  check_ae_group_args(heatmaps, tags, peak_values, peak_x, peak_y, peak_tags, s);
  const int64_t N = heatmaps.size(0), J = heatmaps.size(1), H = heatmaps.size(2),
                W = heatmaps.size(3), T = tags.size(4), K = peak_values.size(2);
  // Everything is computed in float32 (upstream's dtype); other dtypes are converted once.
  const auto det = heatmaps.to(at::kFloat).contiguous();
  const auto tag = tags.to(at::kFloat).contiguous();
  const auto values = peak_values.to(at::kFloat).contiguous();
  const auto xs = peak_x.contiguous(), ys = peak_y.contiguous();
  const auto ptags = peak_tags.to(at::kFloat).contiguous();
  const float* det_p = det.const_data_ptr<float>();
  const float* tag_p = tag.const_data_ptr<float>();
  const float* val_p = values.const_data_ptr<float>();
  const int64_t* x_p = xs.const_data_ptr<int64_t>();
  const int64_t* y_p = ys.const_data_ptr<int64_t>();
  const float* ptag_p = ptags.const_data_ptr<float>();

  std::vector<ImageResult> results(N);
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    AssignmentSolver solver;
    for (int64_t n = begin; n < end; ++n) {
      group_one_image(val_p + n * J * K, x_p + n * J * K, y_p + n * J * K, ptag_p + n * J * K * T,
                      det_p + n * J * H * W, tag_p + n * J * H * W * T, J, K, T, H, W, s, n, solver,
                      results[n]);
    }
  });

  int64_t P = 0;
  for (const auto& r : results) P = std::max(P, r.groups.count);
  auto poses = at::zeros({N, P, J, 3 + T}, heatmaps.options().dtype(at::kFloat));
  auto scores = at::zeros({N, P}, heatmaps.options().dtype(at::kFloat));
  auto counts = at::empty({N}, heatmaps.options().dtype(at::kLong));
  float* poses_p = poses.mutable_data_ptr<float>();
  float* scores_p = scores.mutable_data_ptr<float>();
  int64_t* counts_p = counts.mutable_data_ptr<int64_t>();
  for (int64_t n = 0; n < N; ++n) {
    const auto& r = results[n];
    counts_p[n] = r.groups.count;
    std::copy(r.groups.poses.begin(), r.groups.poses.end(), poses_p + n * P * J * (3 + T));
    std::copy(r.scores.begin(), r.scores.end(), scores_p + n * P);
  }
  return {poses, scores, counts};
}

// scipy.optimize.linear_sum_assignment's interface over the solver, for tests and other code.
std::tuple<at::Tensor, at::Tensor> linear_sum_assignment_cpu(const at::Tensor& cost) {
  TORCH_CHECK(cost.dim() == 2, "linear_sum_assignment: cost must be 2-D, got ", cost.dim(),
              " dimensions");
  TORCH_CHECK(at::isFloatingType(cost.scalar_type()),
              "linear_sum_assignment: cost must be a floating dtype, got ", cost.scalar_type());
  const auto c = cost.to(at::kDouble).contiguous();
  const int64_t rows = c.size(0), cols = c.size(1);
  std::vector<int64_t> col_for_row(rows);
  AssignmentSolver solver;
  const auto status = solver.solve(rows, cols, c.const_data_ptr<double>(), col_for_row.data());
  TORCH_CHECK(status != AssignmentStatus::kInvalidEntry,
              "linear_sum_assignment: cost contains NaN or -inf entries");
  TORCH_CHECK(status != AssignmentStatus::kInfeasible, "linear_sum_assignment: cost matrix is infeasible");
  std::vector<int64_t> r_ind, c_ind;
  for (int64_t r = 0; r < rows; ++r) {
    if (col_for_row[r] >= 0) {
      r_ind.push_back(r);
      c_ind.push_back(col_for_row[r]);
    }
  }
  const int64_t m = static_cast<int64_t>(r_ind.size());
  auto opts = cost.options().dtype(at::kLong);
  return {at::from_blob(r_ind.data(), {m}, at::kLong).clone().to(opts.device()),
          at::from_blob(c_ind.data(), {m}, at::kLong).clone().to(opts.device())};
}

}  // namespace

HIGHERPOSE_LIBRARY_IMPL(CPU, m) {
  m.impl("ae_group", &ae_group_cpu);
  m.impl("linear_sum_assignment", &linear_sum_assignment_cpu);
}

}  // namespace higherpose
