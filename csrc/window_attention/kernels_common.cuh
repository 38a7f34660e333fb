// What every window-attention CUDA kernel family shares: the launch parameters, the window cells
// of a block's tile, the block prologue / epilogue, warp reductions and strided reads. Part of
// window_attention_launch.cuh (compiled by nvcc and by the host emulator).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

#if defined(__CUDACC__)
// The block's dynamic shared memory as an array of `type`.
#define HP_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#else
// Compiled as host C++ only by the test-only CUDA block emulator (tests/csrc/emulation), which
// maps CUDA's keywords and built-ins, HP_DYNAMIC_SHARED and the mma forms onto fibers.
#include "emulation/cuda_on_host.h"
#endif

namespace higherpose {
namespace {

struct Params {
  int64_t B, C;
  int H, W, heads, d, wh, ww, top, left, nh, nw, L, table;
  bool zeros_mode;
  int64_t sq[4], sk[4], sv[4], so[4], sgo[4];  // strides of q, k, v, out, grad_out
  int64_t k_pad_stride, v_pad_stride, bias_s0, bias_s1;
  double scale;
};

// Per-cell information of the block's window, in shared memory:
//   cy[j], cx[j]: image row / column of cell j, cy[j] = -1 when the cell is padding;
//   krel[j]: r * (2ww - 1) + c (the bias row of query i and key j is krel[i] - krel[j] + centre),
//            or -1 when key j is left out ("mask" mode padding).
__device__ void fill_cells(const Params& p, int wi, int wj, int* cy, int* cx, int* krel) {
  for (int j = threadIdx.x; j < p.L; j += blockDim.x) {
    const int r = j / p.ww, c = j - r * p.ww;
    const int y = wi * p.wh + r - p.top, x = wj * p.ww + c - p.left;
    const bool inside = y >= 0 && y < p.H && x >= 0 && x < p.W;
    cy[j] = inside ? y : -1;
    cx[j] = x;
    krel[j] = (p.zeros_mode || inside) ? r * (2 * p.ww - 1) + c : -1;
  }
}

// Copies column h of the bias table [table, heads] into shared memory (fp32).
template <typename scalar_t>
__device__ void load_bias_column(const Params& p, const scalar_t* __restrict__ bias, int h, float* dst) {
  for (int r = threadIdx.x; r < p.table; r += blockDim.x)
    dst[r] = static_cast<float>(bias[r * p.bias_s0 + h * p.bias_s1]);
}

// The tile (image b, window (wi, wj), head h) of this block, its first channel c0, the bias-table
// row `centre` of a zero offset, and the logit scale.
struct Tile {
  int64_t b, c0;
  int wi, wj, h, centre;
  float scale;
};

// Every kernel's prologue: the tile, its cells (fill_cells), this head's bias column (when bias),
// and zeroed block partial sums of the bias / pad gradients (when bias_acc / pad_acc; backward).
// Ends with a barrier.
template <typename scalar_t>
__device__ Tile begin_tile(const Params& p, const scalar_t* __restrict__ bias, int* cy, int* cx, int* krel,
                           float* bias_s, float* bias_acc, float* pad_acc) {
  const int64_t task = blockIdx.x;
  Tile t;
  t.h = static_cast<int>(task % p.heads);
  const int64_t window = task / p.heads;
  t.wj = static_cast<int>(window % p.nw);
  t.wi = static_cast<int>((window / p.nw) % p.nh);
  t.b = window / (static_cast<int64_t>(p.nw) * p.nh);
  t.c0 = static_cast<int64_t>(t.h) * p.d;
  t.centre = (p.wh - 1) * (2 * p.ww - 1) + p.ww - 1;
  t.scale = static_cast<float>(p.scale);
  fill_cells(p, t.wi, t.wj, cy, cx, krel);
  if (bias != nullptr) {
    load_bias_column(p, bias, t.h, bias_s);
    if (bias_acc != nullptr)
      for (int idx = threadIdx.x; idx < p.table; idx += blockDim.x) bias_acc[idx] = 0.f;
  }
  if (pad_acc != nullptr)
    for (int idx = threadIdx.x; idx < 2 * p.d; idx += blockDim.x) pad_acc[idx] = 0.f;
  __syncthreads();
  return t;
}

// Every backward kernel's epilogue (after a barrier): one global atomic per reduction entry and
// block, from the partial sums pad_acc [2, d] and bias_acc [table].
__device__ __forceinline__ void flush_reductions(const Params& p, const Tile& t, bool has_bias,
                                                 const float* pad_acc, const float* bias_acc,
                                                 float* __restrict__ grad_k_pad, float* __restrict__ grad_v_pad,
                                                 float* __restrict__ grad_bias) {
  if (p.zeros_mode)
    for (int c = threadIdx.x; c < p.d; c += blockDim.x) {
      atomicAdd(grad_k_pad + t.c0 + c, pad_acc[c]);
      atomicAdd(grad_v_pad + t.c0 + c, pad_acc[p.d + c]);
    }
  if (has_bias)
    for (int r = threadIdx.x; r < p.table; r += blockDim.x)
      atomicAdd(grad_bias + static_cast<int64_t>(r) * p.heads + t.h, bias_acc[r]);
}

// Sum / maximum over the 32 lanes of a warp (every lane gets the result).
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o, 32);
  return x;
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o, 32));
  return x;
}

template <typename scalar_t>
__device__ __forceinline__ float read_cell(const scalar_t* __restrict__ src, const int64_t* s, int64_t b,
                                           int y, int x, int64_t ch) {
  return static_cast<float>(src[b * s[0] + y * s[1] + x * s[2] + ch * s[3]]);
}

// Loads kept in flight per thread or warp by the loaders of the tiles and mma kernels.
constexpr int kLoadUnroll = 4;

}  // namespace
}  // namespace higherpose
