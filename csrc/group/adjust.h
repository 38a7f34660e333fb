// The quarter-pixel adjustment of a grouped joint (upstream's adjust, and refine's placement of a
// filled-in joint), written once for the CPU and CUDA kernels of ae_group.
#pragma once
#include <cstdint>

#include "host_device.h"

namespace higherpose {

// Quarter-pixel step toward the larger neighbour (ties and NaN: -0.25).
HIGHERPOSE_HOST_DEVICE float quarter_step(float after, float before) { return after > before ? 0.25f : -0.25f; }

// The steps along x and y at pixel (x, y) of an H x W joint map, the neighbours clamped to the map.
HIGHERPOSE_HOST_DEVICE float quarter_step_x(const float* map, int64_t x, int64_t y, int64_t W) {
  const int64_t right = x + 1 < W ? x + 1 : W - 1, left = x - 1 > 0 ? x - 1 : 0;
  return quarter_step(map[y * W + right], map[y * W + left]);
}

HIGHERPOSE_HOST_DEVICE float quarter_step_y(const float* map, int64_t x, int64_t y, int64_t H, int64_t W) {
  const int64_t down = y + 1 < H ? y + 1 : H - 1, up = y - 1 > 0 ? y - 1 : 0;
  return quarter_step(map[down * W + x], map[up * W + x]);
}

}  // namespace higherpose
