// Associative-embedding grouping (HigherHRNet's parser): argument checks and the host-side
// matching shared by the CPU and CUDA kernels. Semantics: higherpose/ops/reference/group.py.
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "group/adjust.h"
#include "group/hungarian.h"

namespace higherpose {

struct GroupSettings {
  std::vector<int64_t> joint_order;
  double detection_threshold;
  double tag_threshold;
  bool use_detection_val;
  bool ignore_too_much;
  int64_t max_people;
  bool adjust;
  bool refine;
};

// Checks every argument of ae_group; errors name the argument that is wrong.
void check_ae_group_args(const at::Tensor& heatmaps, const at::Tensor& tags,
                         const at::Tensor& peak_values, const at::Tensor& peak_x,
                         const at::Tensor& peak_y, const at::Tensor& peak_tags,
                         const GroupSettings& settings);

// The persons of one image, in creation order. poses: count x J x (3 + T) rows
// (x, y, value, tags), zeros for missing joints; slot: count x J index of the peak slot (within
// the joint's k peaks) each joint came from, -1 where missing.
struct ImageGroups {
  int64_t count = 0;
  std::vector<float> poses;
  std::vector<int32_t> slot;
};

// Groups one image's peaks (float32 values [J, K], int64 x, y [J, K], float32 tags [J, K, T],
// contiguous) into persons with integer peak coordinates. Checks that every candidate (value >
// detection threshold) is finite and lies inside the H x W map.
void match_image(const float* values, const int64_t* xs, const int64_t* ys, const float* tags,
                 int64_t J, int64_t K, int64_t T, int64_t H, int64_t W,
                 const GroupSettings& settings, int64_t image_index, AssignmentSolver& solver,
                 ImageGroups& out);

// numpy's float32 mean of n values spaced `stride` apart (pairwise summation in blocks of 8,
// then a float64 division rounded to float32), so that scores equal upstream's `.mean()`.
float numpy_float32_mean(const float* a, int64_t n, int64_t stride);

// Half-to-even rounding of a float (numpy's np.round) without a libm call; exact for every
// float, NaN stays NaN.
inline float round_half_even(float v) {
  const float big = 8388608.0f;  // 2^23: above it every float is an integer
  if (std::fabs(v) < big) {
    const float shifted = v >= 0.0f ? (v + big) - big : (v - big) + big;
    return shifted;
  }
  return v;
}

}  // namespace higherpose
