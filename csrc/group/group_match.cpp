// Host-side part of ae_group shared by the CPU and CUDA kernels: argument checks, the per-image
// tag matching (upstream's match_by_tag) and numpy-exact score means.
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "group/group.h"

namespace higherpose {

void check_ae_group_args(const at::Tensor& heatmaps, const at::Tensor& tags,
                         const at::Tensor& peak_values, const at::Tensor& peak_x,
                         const at::Tensor& peak_y, const at::Tensor& peak_tags,
                         const GroupSettings& s) {
  TORCH_CHECK(heatmaps.dim() == 4, "ae_group: heatmaps must be [N, J, H, W], got ", heatmaps.dim(),
              " dimensions");
  TORCH_CHECK(tags.dim() == 5, "ae_group: tags must be [N, J, H, W, T], got ", tags.dim(),
              " dimensions");
  for (int d = 0; d < 4; ++d) {
    TORCH_CHECK(tags.size(d) == heatmaps.size(d), "ae_group: tags ", tags.sizes(),
                " do not match heatmaps ", heatmaps.sizes(), " in dimension ", d);
  }
  TORCH_CHECK(tags.size(4) >= 1, "ae_group: tags need at least one tag map (T >= 1)");
  TORCH_CHECK(at::isFloatingType(heatmaps.scalar_type()),
              "ae_group: heatmaps must be a floating dtype, got ", heatmaps.scalar_type());
  TORCH_CHECK(tags.scalar_type() == heatmaps.scalar_type(), "ae_group: tags dtype ",
              tags.scalar_type(), " differs from heatmaps dtype ", heatmaps.scalar_type());
  const auto n = heatmaps.size(0), j = heatmaps.size(1), t = tags.size(4);
  TORCH_CHECK(peak_values.dim() == 3 && peak_values.size(0) == n && peak_values.size(1) == j,
              "ae_group: peak_values must be [N, J, k] = [", n, ", ", j, ", k], got ",
              peak_values.sizes());
  const auto k = peak_values.size(2);
  TORCH_CHECK(at::isFloatingType(peak_values.scalar_type()),
              "ae_group: peak_values must be a floating dtype, got ", peak_values.scalar_type());
  TORCH_CHECK(peak_x.sizes() == peak_values.sizes(), "ae_group: peak_x ", peak_x.sizes(),
              " must match peak_values ", peak_values.sizes());
  TORCH_CHECK(peak_y.sizes() == peak_values.sizes(), "ae_group: peak_y ", peak_y.sizes(),
              " must match peak_values ", peak_values.sizes());
  TORCH_CHECK(peak_x.scalar_type() == at::kLong && peak_y.scalar_type() == at::kLong,
              "ae_group: peak_x and peak_y must be int64, got ", peak_x.scalar_type(), " and ",
              peak_y.scalar_type());
  TORCH_CHECK(peak_tags.dim() == 4 && peak_tags.size(0) == n && peak_tags.size(1) == j &&
                  peak_tags.size(2) == k && peak_tags.size(3) == t,
              "ae_group: peak_tags must be [N, J, k, T] = [", n, ", ", j, ", ", k, ", ", t,
              "], got ", peak_tags.sizes());
  TORCH_CHECK(at::isFloatingType(peak_tags.scalar_type()),
              "ae_group: peak_tags must be a floating dtype, got ", peak_tags.scalar_type());
  for (const at::Tensor* other : {&tags, &peak_values, &peak_x, &peak_y, &peak_tags}) {
    TORCH_CHECK(other->device() == heatmaps.device(), "ae_group: every input must be on ",
                heatmaps.device(), " like heatmaps; one is on ", other->device());
  }
  TORCH_CHECK(static_cast<int64_t>(s.joint_order.size()) == j, "ae_group: joint_order has ",
              s.joint_order.size(), " entries but there are ", j, " joints");
  std::vector<char> seen(j, 0);
  for (int64_t v : s.joint_order) {
    TORCH_CHECK(v >= 0 && v < j && !seen[v], "ae_group: joint_order must be a permutation of 0..",
                j - 1, "; entry ", v, " is out of range or repeated");
    seen[v] = 1;
  }
  TORCH_CHECK(std::isfinite(s.detection_threshold), "ae_group: detection_threshold must be finite, got ",
              s.detection_threshold);
  TORCH_CHECK(std::isfinite(s.tag_threshold), "ae_group: tag_threshold must be finite, got ",
              s.tag_threshold);
  TORCH_CHECK(s.max_people >= 1, "ae_group: max_people must be at least 1, got ", s.max_people);
}

namespace {

// One person during matching: its pose rows, peak slots, and the float64 running sum of its tags.
struct Person {
  std::vector<float> pose;
  std::vector<int32_t> slot;
  std::vector<double> tag_sum;
  int64_t count = 0;
};

// Persons are keyed by the first tag component of the candidate that started them (upstream's
// dict); -0.0 and 0.0 are the same key, as for Python floats.
inline float person_key(float v) { return v == 0.0f ? 0.0f : v; }

}  // namespace

void match_image(const float* values, const int64_t* xs, const int64_t* ys, const float* tags,
                 int64_t J, int64_t K, int64_t T, int64_t H, int64_t W, const GroupSettings& s,
                 int64_t image, AssignmentSolver& solver, ImageGroups& out) {
  const int64_t row_len = 3 + T;
  std::vector<Person> persons;
  std::unordered_map<float, int64_t> by_key;
  std::vector<int64_t> cand;  // slots of this joint's candidates
  std::vector<double> means, dist, cost;
  std::vector<int64_t> col_for_row;

  for (size_t step = 0; step < s.joint_order.size(); ++step) {
    const int64_t j = s.joint_order[step];
    const float* val_j = values + j * K;
    cand.clear();
    for (int64_t slot = 0; slot < K; ++slot) {
      if (static_cast<double>(val_j[slot]) > s.detection_threshold) cand.push_back(slot);
    }
    if (cand.empty()) continue;
    for (int64_t slot : cand) {
      const int64_t x = xs[j * K + slot], y = ys[j * K + slot];
      TORCH_CHECK(std::isfinite(val_j[slot]), "ae_group: a peak value above the detection threshold "
                  "is not finite (image ", image, ", joint ", j, ")");
      for (int64_t t = 0; t < T; ++t) {
        TORCH_CHECK(std::isfinite(tags[(j * K + slot) * T + t]), "ae_group: the tag of a peak above "
                    "the detection threshold is NaN or infinite (image ", image, ", joint ", j, ")");
      }
      TORCH_CHECK(x >= 0 && x < W && y >= 0 && y < H, "ae_group: peak (x=", x, ", y=", y,
                  ") of image ", image, ", joint ", j, " lies outside the ", H, "x", W, " map");
    }
    auto write_joint = [&](Person& p, int64_t slot) {
      float* row = p.pose.data() + j * row_len;
      row[0] = static_cast<float>(xs[j * K + slot]);
      row[1] = static_cast<float>(ys[j * K + slot]);
      row[2] = val_j[slot];
      for (int64_t t = 0; t < T; ++t) row[3 + t] = tags[(j * K + slot) * T + t];
      p.slot[j] = static_cast<int32_t>(slot);
    };
    // A "new" person; upstream's key collision writes into the existing person instead and
    // restarts its tag list.
    auto start_person = [&](int64_t slot) {
      const float* tag = tags + (j * K + slot) * T;
      auto found = by_key.find(person_key(tag[0]));
      int64_t index;
      if (found == by_key.end()) {
        index = static_cast<int64_t>(persons.size());
        by_key.emplace(person_key(tag[0]), index);
        persons.emplace_back();
        persons.back().pose.assign(J * row_len, 0.0f);
        persons.back().slot.assign(J, -1);
      } else {
        index = found->second;
      }
      Person& p = persons[index];
      write_joint(p, slot);
      p.tag_sum.assign(tag, tag + T);
      p.count = 1;
    };

    if (step == 0 || persons.empty()) {
      for (int64_t slot : cand) start_person(slot);
      continue;
    }
    const int64_t grouped = std::min<int64_t>(s.max_people, persons.size());
    if (s.ignore_too_much && grouped == s.max_people) continue;
    const int64_t rows = static_cast<int64_t>(cand.size());
    means.resize(grouped * T);
    for (int64_t g = 0; g < grouped; ++g)
      for (int64_t t = 0; t < T; ++t)
        means[g * T + t] = persons[g].tag_sum[t] / static_cast<double>(persons[g].count);
    const int64_t cols = std::max(rows, grouped);
    dist.resize(rows * grouped);
    cost.assign(rows * cols, 1e10);  // padding columns when candidates outnumber persons
    for (int64_t r = 0; r < rows; ++r) {
      const float* tag = tags + (j * K + cand[r]) * T;
      for (int64_t g = 0; g < grouped; ++g) {
        double d = static_cast<double>(tag[0]) - means[g * T];
        double sq = d * d;
        for (int64_t t = 1; t < T; ++t) {
          d = static_cast<double>(tag[t]) - means[g * T + t];
          sq = sq + d * d;
        }
        const double dd = std::sqrt(sq);
        dist[r * grouped + g] = dd;
        cost[r * cols + g] = s.use_detection_val
                                 ? std::nearbyint(dd) * 100.0 - static_cast<double>(val_j[cand[r]])
                                 : dd;
      }
    }
    col_for_row.resize(rows);
    const auto status = solver.solve(rows, cols, cost.data(), col_for_row.data());
    TORCH_CHECK(status == AssignmentStatus::kOk, "ae_group: the assignment failed (image ", image,
                ", joint ", j, ")");
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t g = col_for_row[r];
      if (g >= 0 && g < grouped && dist[r * grouped + g] < s.tag_threshold) {
        Person& p = persons[g];
        write_joint(p, cand[r]);
        const float* tag = tags + (j * K + cand[r]) * T;
        for (int64_t t = 0; t < T; ++t) p.tag_sum[t] = p.tag_sum[t] + static_cast<double>(tag[t]);
        p.count += 1;
      } else {
        start_person(cand[r]);
      }
    }
  }

  out.count = static_cast<int64_t>(persons.size());
  out.poses.resize(out.count * J * row_len);
  out.slot.resize(out.count * J);
  for (int64_t p = 0; p < out.count; ++p) {
    std::copy(persons[p].pose.begin(), persons[p].pose.end(), out.poses.begin() + p * J * row_len);
    std::copy(persons[p].slot.begin(), persons[p].slot.end(), out.slot.begin() + p * J);
  }
}

namespace {
float pairwise_sum(const float* a, int64_t n, int64_t stride) {
  if (n < 8) {
    float res = -0.0f;
    for (int64_t i = 0; i < n; ++i) res += a[i * stride];
    return res;
  }
  if (n <= 128) {
    float r[8];
    for (int k = 0; k < 8; ++k) r[k] = a[k * stride];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int k = 0; k < 8; ++k) r[k] += a[(i + k) * stride];
    float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i * stride];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2, stride) + pairwise_sum(a + n2 * stride, n - n2, stride);
}
}  // namespace

float numpy_float32_mean(const float* a, int64_t n, int64_t stride) {
  const float sum = 0.0f + pairwise_sum(a, n, stride);
  return static_cast<float>(static_cast<double>(sum) / static_cast<double>(n));
}

}  // namespace higherpose
