// The window-attention CUDA kernels and their host-side launch logic, shared by the CUDA build
// (window_attention_cuda.cu) and the host emulator (window_attention_emulated.cpp, which runs the
// same kernels on the CPU through csrc/emulation so CI without a GPU tests their logic).
//
// Three kernel families, one thread block per (image, window, head) tile in each:
//
// "rows" (the kernels measured on an H100, see BENCHMARKS.md). Every window row (a query in the
// query-owned loops, a key in the key-owned loop) is handled by a group of G consecutive lanes of
// a warp (G = 4, or 8 for head_dim > 64): lane g owns the channel quads g, g + G, g + 2G, ... of
// the row, and the row's dot products are finished with log2(G) shuffles inside the group.
// Forward: the tile's Q (times scale), K and V are copied into shared memory; each query group
// runs an online softmax over the window's keys and writes the output and the log-sum-exp of its
// query. Backward (flash-style): P and dS of the tile are recomputed from the saved log-sum-exp
// into shared memory; dQ is summed in registers by query groups, dK and dV in a second pass by
// key groups.
//
// "tiles" (windows of up to 64 positions). Every product of the tile (QK^T, PV, dO V^T, dS K,
// dS^T Q, P^T dO) is computed by threads that each own a 4 x 4 block of the result, with their
// rows and columns spaced evenly (row tm + NI r, column tn + NN c) so that the lanes of a warp read
// distinct shared-memory banks (the shared tiles have odd row strides); 16 independent
// accumulators per thread and no shuffles in the inner loops. The softmax is one warp per row.
// Loads and stores go one warp per window row, consecutive lanes on consecutive channels.
//
// "mma" (windows of up to 64 positions, head_dim up to 64): the products on tensor cores,
// FlashAttention-2 style; float32 as three TF32 products (see the section below).
//
// Common to all: padded cells read k_pad / v_pad ("zeros" mode) or are left out ("mask");
// queries outside the image are skipped (their outputs would be cropped away); the reductions
// (k_pad, v_pad, bias table) are summed per block in shared memory, then added to fp32 buffers
// with one atomic per entry and block. Every image position lies in exactly one window, so the
// writes of out / dQ / dK / dV never overlap. Index arithmetic inside a tile is 32-bit (the host
// checks the sizes); global offsets are 64-bit.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <type_traits>

#include "emulation/cuda_on_host.h"
#include "emulation/mma.h"
#include "window_attention/window_attention.h"

namespace higherpose {
namespace {

constexpr int kMaxThreads = 256;  // threads per block (a multiple of 32, hence of G)

struct Params {
  int64_t B, C;
  int H, W, heads, d, wh, ww, top, left, nh, nw, L, table;
  bool zeros_mode;
  int64_t sq[4], sk[4], sv[4], so[4], sgo[4];  // strides of q, k, v, out, grad_out
  int64_t k_pad_stride, v_pad_stride, bias_s0, bias_s1;
  double scale;
};

// Lanes per window row and channel quads per lane for a head_dim bound DMAX.
template <int DMAX>
struct RowSplit {
  static constexpr int G = DMAX > 64 ? 8 : 4;
  static constexpr int QUADS = DMAX / (4 * G);
  static_assert(QUADS * 4 * G == DMAX, "DMAX must be a multiple of 4 * G");
};

// Mask of the G lanes of the calling thread's group (groups are aligned within the warp).
template <int G>
__device__ __forceinline__ unsigned group_mask() {
  return ((1u << G) - 1u) << ((threadIdx.x & 31u) & ~static_cast<unsigned>(G - 1));
}

// Sum over the G lanes of a group; the xor butterfly gives every lane the bitwise same result.
template <int G>
__device__ __forceinline__ float group_sum(float x, unsigned mask) {
#pragma unroll
  for (int o = 1; o < G; o <<= 1) x += __shfl_xor_sync(mask, x, o, G);
  return x;
}

__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }

inline __host__ __device__ int padded_dim(int d) { return (d + 3) / 4 * 4; }

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

// Copies channels [c0, c0 + d) of every window cell of `src` into the shared tile dst [L, ds]
// (fp32, times `mul`, columns >= d zero). Padded cells read `pad` (zeros when null).
// Consecutive threads take consecutive channels of a cell, so the global reads coalesce.
template <typename scalar_t>
__device__ void load_tile(const Params& p, const scalar_t* __restrict__ src, const int64_t* s,
                          const scalar_t* __restrict__ pad, int64_t pad_stride, int64_t b,
                          int64_t c0, float mul, const int* cy, const int* cx, float* dst) {
  const int d = p.d, ds = padded_dim(d), n = p.L * ds;
  const int64_t base = b * s[0] + c0 * s[3];
  for (int idx = threadIdx.x; idx < n; idx += blockDim.x) {
    const int j = idx / ds, c = idx - j * ds;
    float val = 0.f;
    if (c < d) {
      const int y = cy[j];
      if (y >= 0)
        val = static_cast<float>(src[base + y * s[1] + cx[j] * s[2] + c * s[3]]) * mul;
      else if (pad != nullptr)
        val = static_cast<float>(pad[(c0 + c) * pad_stride]) * mul;
    }
    dst[idx] = val;
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

template <typename scalar_t, int DMAX>
__global__ void __launch_bounds__(kMaxThreads)
    window_attention_forward_kernel(Params p, const scalar_t* __restrict__ q,
                                    const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
                                    const scalar_t* __restrict__ k_pad,
                                    const scalar_t* __restrict__ v_pad,
                                    const scalar_t* __restrict__ bias, scalar_t* __restrict__ out,
                                    float* __restrict__ lse) {
  constexpr int G = RowSplit<DMAX>::G, QUADS = RowSplit<DMAX>::QUADS;
  HP_DYNAMIC_SHARED(float4, smem4);
  const int L = p.L, d = p.d, ds = padded_dim(d);
  float* qs = reinterpret_cast<float*>(smem4);  // [L, ds] queries times scale (0 for padding)
  float* ks = qs + L * ds;                      // [L, ds] keys
  float* vs = ks + L * ds;                      // [L, ds] values
  int* cy = reinterpret_cast<int*>(vs + L * ds);  // [L] see fill_cells
  int* cx = cy + L;                               // [L]
  int* krel = cx + L;                             // [L]
  float* bias_s = reinterpret_cast<float*>(krel + L);  // [table] this head's bias column

  const Tile t = begin_tile(p, bias, cy, cx, krel, bias_s, nullptr, nullptr);
  const int64_t c0 = t.c0;
  const int centre = t.centre;
  const float scale = t.scale;
  load_tile(p, q, p.sq, static_cast<const scalar_t*>(nullptr), 0, t.b, c0, scale, cy, cx, qs);
  load_tile(p, k, p.sk, k_pad, p.k_pad_stride, t.b, c0, 1.f, cy, cx, ks);
  load_tile(p, v, p.sv, v_pad, p.v_pad_stride, t.b, c0, 1.f, cy, cx, vs);
  __syncthreads();

  const int lane = threadIdx.x % G;  // lane within the row's group
  const unsigned gmask = group_mask<G>();
  const int rows_per_pass = blockDim.x / G;
  for (int i = threadIdx.x / G; i < L; i += rows_per_pass) {  // uniform within a group
    const int y = cy[i];
    if (y < 0) continue;  // a padded query's output is cropped away
    const int qrel = krel[i];  // >= 0: the cell is inside the image
    float qr[4 * QUADS], acc[4 * QUADS];
#pragma unroll
    for (int u = 0; u < QUADS; ++u) {
      const int c = 4 * (lane + G * u);
      const float4 q4 = c < d ? load4(qs + i * ds + c) : make_float4(0.f, 0.f, 0.f, 0.f);
      qr[4 * u] = q4.x;
      qr[4 * u + 1] = q4.y;
      qr[4 * u + 2] = q4.z;
      qr[4 * u + 3] = q4.w;
    }
#pragma unroll
    for (int c = 0; c < 4 * QUADS; ++c) acc[c] = 0.f;
    float m = -INFINITY, l = 0.f;
    for (int j = 0; j < L; ++j) {
      const int kr_rel = krel[j];
      if (kr_rel < 0) continue;  // uniform: krel is shared
      const float* kr = ks + j * ds;
      float s0 = 0.f, s1 = 0.f;
#pragma unroll
      for (int u = 0; u < QUADS; ++u) {
        const int c = 4 * (lane + G * u);
        if (c < d) {
          const float4 k4 = load4(kr + c);
          s0 += qr[4 * u] * k4.x + qr[4 * u + 1] * k4.y;
          s1 += qr[4 * u + 2] * k4.z + qr[4 * u + 3] * k4.w;
        }
      }
      float s = group_sum<G>(s0 + s1, gmask);
      if (bias != nullptr) s += bias_s[qrel - kr_rel + centre];
      if (s > m) {  // online softmax: rescale what was summed so far
        const float f = expf(m - s);
        l *= f;
#pragma unroll
        for (int c = 0; c < 4 * QUADS; ++c) acc[c] *= f;
        m = s;
      }
      const float e = expf(s - m);
      l += e;
      const float* vr = vs + j * ds;
#pragma unroll
      for (int u = 0; u < QUADS; ++u) {
        const int c = 4 * (lane + G * u);
        if (c < d) {
          const float4 v4 = load4(vr + c);
          acc[4 * u] += e * v4.x;
          acc[4 * u + 1] += e * v4.y;
          acc[4 * u + 2] += e * v4.z;
          acc[4 * u + 3] += e * v4.w;
        }
      }
    }
    const float inv = 1.f / l;
    scalar_t* op = out + (t.b * p.so[0] + y * p.so[1] + cx[i] * p.so[2] + c0 * p.so[3]);
#pragma unroll
    for (int u = 0; u < QUADS; ++u) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = 4 * (lane + G * u) + e;
        if (c < d) op[c * p.so[3]] = static_cast<scalar_t>(acc[4 * u + e] * inv);
      }
    }
    if (lane == 0) lse[((t.b * p.heads + t.h) * p.H + y) * p.W + cx[i]] = m + logf(l);
  }
}

template <typename scalar_t, int DMAX>
__global__ void __launch_bounds__(kMaxThreads) window_attention_backward_kernel(
    Params p, const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ q,
    const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
    const scalar_t* __restrict__ out, const float* __restrict__ lse,
    const scalar_t* __restrict__ k_pad, const scalar_t* __restrict__ v_pad,
    const scalar_t* __restrict__ bias, scalar_t* __restrict__ grad_q,
    scalar_t* __restrict__ grad_k, scalar_t* __restrict__ grad_v,
    float* __restrict__ grad_k_pad, float* __restrict__ grad_v_pad, float* __restrict__ grad_bias) {
  constexpr int G = RowSplit<DMAX>::G, QUADS = RowSplit<DMAX>::QUADS;
  HP_DYNAMIC_SHARED(float4, smem4);
  const int L = p.L, d = p.d, ds = padded_dim(d);
  float* ks = reinterpret_cast<float*>(smem4);  // [L, ds] keys
  float* vs = ks + L * ds;                      // [L, ds] values
  float* qs = vs + L * ds;                      // [L, ds] queries times scale (0 for padding)
  float* gos = qs + L * ds;                     // [L, ds] output gradients (0 for padding)
  float* ps = gos + L * ds;                     // [L, L] attention weights P
  float* dss = ps + L * L;                      // [L, L] logit gradients dS
  float* bias_acc = dss + L * L;                // [table] bias-gradient partial sums
  float* pad_acc = bias_acc + p.table;          // [2, d] k_pad / v_pad gradient partial sums
  int* cy = reinterpret_cast<int*>(pad_acc + 2 * d);  // [L] see fill_cells
  int* cx = cy + L;                                   // [L]
  int* krel = cx + L;                                 // [L]
  float* bias_s = reinterpret_cast<float*>(krel + L);  // [table] this head's bias column

  const Tile t = begin_tile(p, bias, cy, cx, krel, bias_s, bias_acc, pad_acc);
  const int64_t c0 = t.c0;
  const int centre = t.centre;
  const float scale = t.scale;
  const scalar_t* no_pad = nullptr;
  load_tile(p, k, p.sk, k_pad, p.k_pad_stride, t.b, c0, 1.f, cy, cx, ks);
  load_tile(p, v, p.sv, v_pad, p.v_pad_stride, t.b, c0, 1.f, cy, cx, vs);
  load_tile(p, q, p.sq, no_pad, 0, t.b, c0, scale, cy, cx, qs);
  load_tile(p, grad_out, p.sgo, no_pad, 0, t.b, c0, 1.f, cy, cx, gos);
  __syncthreads();

  const int lane = threadIdx.x % G;  // lane within the row's group
  const unsigned gmask = group_mask<G>();
  const int rows_per_pass = blockDim.x / G;

  // Query-owned part: P, dS and dQ for every query of the tile (one lane group per query).
  for (int i = threadIdx.x / G; i < L; i += rows_per_pass) {
    float* prow = ps + i * L;
    float* dsrow = dss + i * L;
    const int y = cy[i];
    if (y < 0) {  // padded query: no output, so no gradient flows through it
      for (int j = lane; j < L; j += G) prow[j] = dsrow[j] = 0.f;
      continue;
    }
    const int qrel = krel[i];
    float qr[4 * QUADS], gor[4 * QUADS], gq[4 * QUADS];
    const scalar_t* op = out + (t.b * p.so[0] + y * p.so[1] + cx[i] * p.so[2] + c0 * p.so[3]);
    float delta = 0.f;  // D_i = dO_i . O_i, summed over the group below
#pragma unroll
    for (int u = 0; u < QUADS; ++u) {
      const int c = 4 * (lane + G * u);
      const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
      const float4 q4 = c < d ? load4(qs + i * ds + c) : zero;
      const float4 g4 = c < d ? load4(gos + i * ds + c) : zero;
      qr[4 * u] = q4.x;
      qr[4 * u + 1] = q4.y;
      qr[4 * u + 2] = q4.z;
      qr[4 * u + 3] = q4.w;
      gor[4 * u] = g4.x;
      gor[4 * u + 1] = g4.y;
      gor[4 * u + 2] = g4.z;
      gor[4 * u + 3] = g4.w;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        gq[4 * u + e] = 0.f;
        if (c + e < d) delta += gor[4 * u + e] * static_cast<float>(op[(c + e) * p.so[3]]);
      }
    }
    delta = group_sum<G>(delta, gmask);
    const float l = lse[((t.b * p.heads + t.h) * p.H + y) * p.W + cx[i]];
    for (int j = 0; j < L; ++j) {
      const int kr_rel = krel[j];
      if (kr_rel < 0) {  // uniform: krel is shared
        if (lane == 0) prow[j] = dsrow[j] = 0.f;
        continue;
      }
      const float* kr = ks + j * ds;
      const float* vr = vs + j * ds;
      float s_part = 0.f, dp_part = 0.f;
      float4 kq[QUADS];  // this lane's key quads, reused for dQ below
#pragma unroll
      for (int u = 0; u < QUADS; ++u) {
        const int c = 4 * (lane + G * u);
        kq[u] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (c < d) {
          const float4 k4 = load4(kr + c), v4 = load4(vr + c);
          kq[u] = k4;
          s_part += (qr[4 * u] * k4.x + qr[4 * u + 1] * k4.y) + (qr[4 * u + 2] * k4.z + qr[4 * u + 3] * k4.w);
          dp_part += (gor[4 * u] * v4.x + gor[4 * u + 1] * v4.y) + (gor[4 * u + 2] * v4.z + gor[4 * u + 3] * v4.w);
        }
      }
      float s = group_sum<G>(s_part, gmask);
      const float dp = group_sum<G>(dp_part, gmask);
      const int row = qrel - kr_rel + centre;
      if (bias != nullptr) s += bias_s[row];
      const float pr = expf(s - l);
      const float dsv = pr * (dp - delta);
      if (lane == 0) {
        prow[j] = pr;
        dsrow[j] = dsv;
        if (bias != nullptr) atomicAdd(bias_acc + row, dsv);
      }
#pragma unroll
      for (int u = 0; u < QUADS; ++u) {
        const int c = 4 * (lane + G * u);
        if (c < d) {
          const float4 k4 = kq[u];
          gq[4 * u] += dsv * k4.x;
          gq[4 * u + 1] += dsv * k4.y;
          gq[4 * u + 2] += dsv * k4.z;
          gq[4 * u + 3] += dsv * k4.w;
        }
      }
    }
    scalar_t* gqp = grad_q + ((t.b * p.H + y) * p.W + cx[i]) * p.C + c0;  // contiguous
#pragma unroll
    for (int u = 0; u < QUADS; ++u) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = 4 * (lane + G * u) + e;
        if (c < d) gqp[c] = static_cast<scalar_t>(gq[4 * u + e] * scale);
      }
    }
  }
  __syncthreads();

  // Key-owned part: dK_j = sum_i dS_ij (scale q_i), dV_j = sum_i P_ij dO_i (one group per key).
  for (int j = threadIdx.x / G; j < L; j += rows_per_pass) {
    const int y = cy[j];
    if (!p.zeros_mode && y < 0) continue;  // masked key: no gradient
    float gk[4 * QUADS], gv[4 * QUADS];
#pragma unroll
    for (int c = 0; c < 4 * QUADS; ++c) gk[c] = gv[c] = 0.f;
    for (int i = 0; i < L; ++i) {
      if (cy[i] < 0) continue;  // padded query: its P / dS row is zero
      const float dsv = dss[i * L + j], pr = ps[i * L + j];
      const float* qr = qs + i * ds;
      const float* gor = gos + i * ds;
#pragma unroll
      for (int u = 0; u < QUADS; ++u) {
        const int c = 4 * (lane + G * u);
        if (c < d) {
          const float4 q4 = load4(qr + c), g4 = load4(gor + c);
          gk[4 * u] += dsv * q4.x;
          gk[4 * u + 1] += dsv * q4.y;
          gk[4 * u + 2] += dsv * q4.z;
          gk[4 * u + 3] += dsv * q4.w;
          gv[4 * u] += pr * g4.x;
          gv[4 * u + 1] += pr * g4.y;
          gv[4 * u + 2] += pr * g4.z;
          gv[4 * u + 3] += pr * g4.w;
        }
      }
    }
    if (y >= 0) {
      const int64_t base = ((t.b * p.H + y) * p.W + cx[j]) * p.C + c0;  // contiguous
#pragma unroll
      for (int u = 0; u < QUADS; ++u) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = 4 * (lane + G * u) + e;
          if (c < d) {
            grad_k[base + c] = static_cast<scalar_t>(gk[4 * u + e]);
            grad_v[base + c] = static_cast<scalar_t>(gv[4 * u + e]);
          }
        }
      }
    } else {
#pragma unroll
      for (int u = 0; u < QUADS; ++u) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = 4 * (lane + G * u) + e;
          if (c < d) {
            atomicAdd(pad_acc + c, gk[4 * u + e]);
            atomicAdd(pad_acc + d + c, gv[4 * u + e]);
          }
        }
      }
    }
  }
  __syncthreads();

  flush_reductions(p, t, bias != nullptr, pad_acc, bias_acc, grad_k_pad, grad_v_pad, grad_bias);
}


// ---------------------------------------------------------------------------------------------
// "tiles" kernels

constexpr int kTile = 4;              // each thread owns a kTile x kTile block of a product
constexpr int kTilesMaxL = 64;        // window positions the tiles kernels take (7 x 7, 8 x 8)
constexpr int kTilesMaxThreads = 256;

// Shared-memory shape of a tile: L positions padded to Lp = 4 NI rows, d channels padded to
// 4 NC columns; row strides rs (channel tiles) and ps (L x L tiles) are odd, so a warp reading
// one column of distinct rows touches distinct banks.
struct TileShape {
  int Lp, NI, NC, rs, ps;
};

__host__ __device__ inline TileShape tile_shape(int L, int d) {
  TileShape s;
  s.NI = (L + kTile - 1) / kTile;
  s.Lp = s.NI * kTile;
  s.NC = (d + kTile - 1) / kTile;
  s.rs = s.NC * kTile + 1;
  s.ps = s.Lp + 1;
  return s;
}

// acc[r][c] += sum_{k < K} A[(m0 + r m_step) a_m + k a_k] * B[k b_k + (n0 + c n_step) b_n]
// over fp32 shared-memory operands: the thread's 4 x 4 block of the product A B.
__device__ __forceinline__ void tile_product(const float* __restrict__ A, int a_m, int a_k,
                                             const float* __restrict__ B, int b_k, int b_n, int K,
                                             int m0, int m_step, int n0, int n_step,
                                             float (&acc)[kTile][kTile]) {
  const float* a = A + m0 * a_m;
  const float* b = B + n0 * b_n;
  const int a_row = m_step * a_m, b_col = n_step * b_n;
#pragma unroll 2
  for (int k = 0; k < K; ++k) {
    float av[kTile], bv[kTile];
#pragma unroll
    for (int r = 0; r < kTile; ++r) av[r] = a[r * a_row + k * a_k];
#pragma unroll
    for (int c = 0; c < kTile; ++c) bv[c] = b[k * b_k + c * b_col];
#pragma unroll
    for (int r = 0; r < kTile; ++r)
#pragma unroll
      for (int c = 0; c < kTile; ++c) acc[r][c] += av[r] * bv[c];
  }
}

__device__ __forceinline__ void clear(float (&acc)[kTile][kTile]) {
#pragma unroll
  for (int r = 0; r < kTile; ++r)
#pragma unroll
    for (int c = 0; c < kTile; ++c) acc[r][c] = 0.f;
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

// One shared tile to fill: channels [c0, c0 + d) of a [B, H, W, C] tensor (strides), times mul;
// padded cells read pad (zeros when null).
template <typename scalar_t>
struct TileSource {
  const scalar_t* data;
  const int64_t* stride;
  const scalar_t* pad;
  int64_t pad_stride;
  float mul;
  float* dst;  // [Lp, rs] in shared memory
};

// Fills N shared tiles from image layout. Work items are (window row, 32-channel chunk) pairs, one
// per warp with consecutive lanes on consecutive channels; every warp keeps kLoadUnroll items in
// flight, so several independent global loads per lane are outstanding at once. With dot_with,
// also adds sum_c src[N - 1](j, c) * dot_with(j, c) to delta[j] (zeroed before) per window row j.
constexpr int kLoadUnroll = 4;

template <typename scalar_t, int N>
__device__ void load_tiles(const TileSource<scalar_t> (&src)[N], int64_t b, int64_t c0, int L, int d, int rs,
                           const int* cy, const int* cx, const scalar_t* __restrict__ dot_with,
                           const int64_t* dot_stride, float* delta) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  const int chunks = (d + 31) / 32, items = L * chunks;
  for (int first = warp; first < items; first += kLoadUnroll * warps) {
    float val[kLoadUnroll][N], dot[kLoadUnroll];
    int row[kLoadUnroll], col[kLoadUnroll];
#pragma unroll
    for (int u = 0; u < kLoadUnroll; ++u) {  // all loads first ...
      const int item = first + u * warps;
      row[u] = item / chunks;
      col[u] = lane + 32 * (item - row[u] * chunks);
      dot[u] = 0.f;
      const bool live = item < items && col[u] < d;
      const int y = live ? cy[row[u]] : -1, x = live ? cx[row[u]] : 0;
#pragma unroll
      for (int t = 0; t < N; ++t) {
        float value = 0.f;
        if (y >= 0)
          value = read_cell(src[t].data, src[t].stride, b, y, x, c0 + col[u]);
        else if (live && src[t].pad != nullptr)
          value = static_cast<float>(src[t].pad[(c0 + col[u]) * src[t].pad_stride]);
        val[u][t] = value * src[t].mul;
      }
      if (dot_with != nullptr && y >= 0) dot[u] = val[u][N - 1] * read_cell(dot_with, dot_stride, b, y, x, c0 + col[u]);
    }
#pragma unroll
    for (int u = 0; u < kLoadUnroll; ++u) {  // ... then the stores
      if (first + u * warps >= items) continue;  // uniform across the warp
      if (col[u] < d)
#pragma unroll
        for (int t = 0; t < N; ++t) src[t].dst[row[u] * rs + col[u]] = val[u][t];
      if (dot_with != nullptr) {
        const float sum = warp_sum(dot[u]);
        if (lane == 0) atomicAdd(delta + row[u], sum);  // a row's chunks may sit in other warps
      }
    }
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kTilesMaxThreads)
    window_attention_forward_tiles_kernel(Params p, const scalar_t* __restrict__ q,
                                          const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
                                          const scalar_t* __restrict__ k_pad,
                                          const scalar_t* __restrict__ v_pad,
                                          const scalar_t* __restrict__ bias, scalar_t* __restrict__ out,
                                          float* __restrict__ lse) {
  HP_DYNAMIC_SHARED(float4, smem4);
  const int L = p.L, d = p.d;
  const TileShape s = tile_shape(L, d);
  float* qs = reinterpret_cast<float*>(smem4);  // [Lp, rs] queries times scale; later the output
  float* ks = qs + s.Lp * s.rs;                 // [Lp, rs] keys
  float* vs = ks + s.Lp * s.rs;                 // [Lp, rs] values
  float* ps = vs + s.Lp * s.rs;                 // [Lp, ps] logits, then exp(logit - row max)
  float* inv_l = ps + s.Lp * s.ps;              // [Lp] 1 / softmax denominator per query
  int* cy = reinterpret_cast<int*>(inv_l + s.Lp);  // [L] see fill_cells
  int* cx = cy + L;                                // [L]
  int* krel = cx + L;                              // [L]
  float* bias_s = reinterpret_cast<float*>(krel + L);  // [table] this head's bias column

  const Tile t = begin_tile(p, bias, cy, cx, krel, bias_s, nullptr, nullptr);
  const int64_t c0 = t.c0;
  const int centre = t.centre;
  const float scale = t.scale;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;

  // Q (times scale), K, V.
  const TileSource<scalar_t> sources[3] = {{q, p.sq, nullptr, 0, scale, qs},
                                           {k, p.sk, k_pad, p.k_pad_stride, 1.f, ks},
                                           {v, p.sv, v_pad, p.v_pad_stride, 1.f, vs}};
  load_tiles(sources, t.b, c0, L, d, s.rs, cy, cx, static_cast<const scalar_t*>(nullptr), p.so, nullptr);
  __syncthreads();

  // Logits S = (scale Q) K^T + bias; -inf where the pair does not count (masked key, query
  // outside the image, padding rows / columns of the tile).
  for (int task = threadIdx.x; task < s.NI * s.NI; task += blockDim.x) {
    const int tm = task / s.NI, tn = task - tm * s.NI;
    float acc[kTile][kTile];
    clear(acc);
    tile_product(qs, s.rs, 1, ks, 1, s.rs, d, tm, s.NI, tn, s.NI, acc);
#pragma unroll
    for (int r = 0; r < kTile; ++r) {
      const int i = tm + s.NI * r;
      const bool query = i < L && cy[i] >= 0;
#pragma unroll
      for (int c = 0; c < kTile; ++c) {
        const int j = tn + s.NI * c;
        float val = -INFINITY;
        if (query && j < L && krel[j] >= 0) {
          val = acc[r][c];
          if (bias != nullptr) val += bias_s[krel[i] - krel[j] + centre];
        }
        ps[i * s.ps + j] = val;
      }
    }
  }
  __syncthreads();

  // Softmax, one warp per query row: P row = exp(S - max) (unnormalised), 1 / sum, lse.
  for (int i = warp; i < L; i += warps) {
    const int y = cy[i];
    if (y < 0) continue;  // uniform across the warp
    float* row = ps + i * s.ps;
    float m = -INFINITY;
    for (int j = lane; j < L; j += 32) m = fmaxf(m, row[j]);
    m = warp_max(m);
    float l = 0.f;
    for (int j = lane; j < L; j += 32) {
      const float e = expf(row[j] - m);
      row[j] = e;
      l += e;
    }
    l = warp_sum(l);
    if (lane == 0) {
      inv_l[i] = 1.f / l;
      lse[((t.b * p.heads + t.h) * p.H + y) * p.W + cx[i]] = m + logf(l);
    }
  }
  __syncthreads();

  // O = P V / sum, staged in qs (Q is no longer read) for row-wise stores.
  for (int task = threadIdx.x; task < s.NI * s.NC; task += blockDim.x) {
    const int tm = task / s.NC, tn = task - tm * s.NC;
    float acc[kTile][kTile];
    clear(acc);
    tile_product(ps, s.ps, 1, vs, s.rs, 1, L, tm, s.NI, tn, s.NC, acc);
#pragma unroll
    for (int r = 0; r < kTile; ++r) {
      const int i = tm + s.NI * r;
      if (i >= L || cy[i] < 0) continue;
      const float f = inv_l[i];
#pragma unroll
      for (int c = 0; c < kTile; ++c) qs[i * s.rs + tn + s.NC * c] = acc[r][c] * f;
    }
  }
  __syncthreads();

  for (int i = warp; i < L; i += warps) {
    const int y = cy[i];
    if (y < 0) continue;
    scalar_t* op = out + (t.b * p.so[0] + y * p.so[1] + cx[i] * p.so[2] + c0 * p.so[3]);
    for (int c = lane; c < d; c += 32) op[c * p.so[3]] = static_cast<scalar_t>(qs[i * s.rs + c]);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kTilesMaxThreads) window_attention_backward_tiles_kernel(
    Params p, const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ q,
    const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
    const scalar_t* __restrict__ out, const float* __restrict__ lse,
    const scalar_t* __restrict__ k_pad, const scalar_t* __restrict__ v_pad,
    const scalar_t* __restrict__ bias, scalar_t* __restrict__ grad_q,
    scalar_t* __restrict__ grad_k, scalar_t* __restrict__ grad_v,
    float* __restrict__ grad_k_pad, float* __restrict__ grad_v_pad, float* __restrict__ grad_bias) {
  HP_DYNAMIC_SHARED(float4, smem4);
  const int L = p.L, d = p.d;
  const TileShape s = tile_shape(L, d);
  float* qs = reinterpret_cast<float*>(smem4);  // [Lp, rs] queries times scale (0 outside the image)
  float* ks = qs + s.Lp * s.rs;                 // [Lp, rs] keys
  float* vs = ks + s.Lp * s.rs;                 // [Lp, rs] values
  float* gos = vs + s.Lp * s.rs;                // [Lp, rs] output gradients (0 outside the image)
  float* pss = gos + s.Lp * s.rs;               // [Lp, ps] attention weights P
  float* dss = pss + s.Lp * s.ps;               // [Lp, ps] logit gradients dS
  float* delta = dss + s.Lp * s.ps;             // [Lp] D_i = dO_i . O_i
  float* lse_s = delta + s.Lp;                  // [Lp] saved log-sum-exp per query
  float* bias_acc = lse_s + s.Lp;               // [table] bias-gradient partial sums
  float* pad_acc = bias_acc + p.table;          // [2, d] k_pad / v_pad gradient partial sums
  int* cy = reinterpret_cast<int*>(pad_acc + 2 * d);  // [L] see fill_cells
  int* cx = cy + L;                                   // [L]
  int* krel = cx + L;                                 // [L]
  float* bias_s = reinterpret_cast<float*>(krel + L);  // [table] this head's bias column

  for (int j = threadIdx.x; j < L; j += blockDim.x) delta[j] = 0.f;  // before begin_tile's barrier
  const Tile t = begin_tile(p, bias, cy, cx, krel, bias_s, bias_acc, pad_acc);
  const int64_t c0 = t.c0;
  const int centre = t.centre;
  const float scale = t.scale;

  // Q (times scale), K, V, dO, per query D = dO . O, and the saved lse.
  const TileSource<scalar_t> sources[4] = {{q, p.sq, nullptr, 0, scale, qs},
                                           {k, p.sk, k_pad, p.k_pad_stride, 1.f, ks},
                                           {v, p.sv, v_pad, p.v_pad_stride, 1.f, vs},
                                           {grad_out, p.sgo, nullptr, 0, 1.f, gos}};
  load_tiles(sources, t.b, c0, L, d, s.rs, cy, cx, out, p.so, delta);
  for (int j = threadIdx.x; j < L; j += blockDim.x)
    lse_s[j] = cy[j] >= 0 ? lse[((t.b * p.heads + t.h) * p.H + cy[j]) * p.W + cx[j]] : 0.f;
  __syncthreads();

  // P = exp(S - lse) and dS = P (dO V^T - D) per thread block of the L x L tile (0 where the
  // pair does not count); bias-gradient partial sums by relative position.
  for (int task = threadIdx.x; task < s.NI * s.NI; task += blockDim.x) {
    const int tm = task / s.NI, tn = task - tm * s.NI;
    float acc_s[kTile][kTile], acc_dp[kTile][kTile];
    clear(acc_s);
    clear(acc_dp);
    tile_product(qs, s.rs, 1, ks, 1, s.rs, d, tm, s.NI, tn, s.NI, acc_s);
    tile_product(gos, s.rs, 1, vs, 1, s.rs, d, tm, s.NI, tn, s.NI, acc_dp);
#pragma unroll
    for (int r = 0; r < kTile; ++r) {
      const int i = tm + s.NI * r;
      const bool query = i < L && cy[i] >= 0;
#pragma unroll
      for (int c = 0; c < kTile; ++c) {
        const int j = tn + s.NI * c;
        float pr = 0.f, dsv = 0.f;
        if (query && j < L && krel[j] >= 0) {
          float sv = acc_s[r][c];
          const int row = krel[i] - krel[j] + centre;
          if (bias != nullptr) sv += bias_s[row];
          pr = expf(sv - lse_s[i]);
          dsv = pr * (acc_dp[r][c] - delta[i]);
          if (bias != nullptr) atomicAdd(bias_acc + row, dsv);
        }
        pss[i * s.ps + j] = pr;
        dss[i * s.ps + j] = dsv;
      }
    }
  }
  __syncthreads();

  // dQ = scale dS K, dK = dS^T (scale Q), dV = P^T dO: 3 NI NC thread blocks of 4 x 4, all
  // running the same product loop (only the operands differ), so warps do not diverge in it.
  const int per_kind = s.NI * s.NC;
  for (int task = threadIdx.x; task < 3 * per_kind; task += blockDim.x) {
    const int kind = task / per_kind, rest = task - kind * per_kind;
    const int tm = rest / s.NC, tn = rest - tm * s.NC;
    const float* A = kind == 2 ? pss : dss;      // dQ: dS [i, j]; dK: dS^T; dV: P^T
    const int a_m = kind == 0 ? s.ps : 1, a_k = kind == 0 ? 1 : s.ps;
    const float* B = kind == 0 ? ks : (kind == 1 ? qs : gos);
    float acc[kTile][kTile];
    clear(acc);
    tile_product(A, a_m, a_k, B, s.rs, 1, L, tm, s.NI, tn, s.NC, acc);
#pragma unroll
    for (int r = 0; r < kTile; ++r) {
      const int row = tm + s.NI * r;  // a query (dQ) or a key (dK, dV)
      if (row >= L) continue;
      const int y = cy[row];
      if (kind == 0) {
        if (y < 0) continue;  // queries outside the image have no gradient
        scalar_t* dst = grad_q + ((t.b * p.H + y) * p.W + cx[row]) * p.C + c0;  // contiguous
#pragma unroll
        for (int c = 0; c < kTile; ++c) {
          const int ch = tn + s.NC * c;
          if (ch < d) dst[ch] = static_cast<scalar_t>(acc[r][c] * scale);
        }
      } else if (y >= 0) {
        scalar_t* dst = (kind == 1 ? grad_k : grad_v) + ((t.b * p.H + y) * p.W + cx[row]) * p.C + c0;
#pragma unroll
        for (int c = 0; c < kTile; ++c) {
          const int ch = tn + s.NC * c;
          if (ch < d) dst[ch] = static_cast<scalar_t>(acc[r][c]);
        }
      } else if (p.zeros_mode) {  // a padded key: its gradient goes to k_pad / v_pad
#pragma unroll
        for (int c = 0; c < kTile; ++c) {
          const int ch = tn + s.NC * c;
          if (ch < d) atomicAdd(pad_acc + (kind - 1) * d + ch, acc[r][c]);
        }
      }
    }
  }
  __syncthreads();

  flush_reductions(p, t, bias != nullptr, pad_acc, bias_acc, grad_k_pad, grad_v_pad, grad_bias);
}

// ---------------------------------------------------------------------------------------------
// "mma" kernels (windows of up to 64 positions, head_dim up to 64): the products run on tensor
// cores with fp32 accumulation (see emulation/mma.h): float16 / bfloat16 on mma.m16n8k16, float32
// as three TF32 m16n8k8 products per step (big * big + big * small + small * big, where x = big +
// small and both parts are TF32; this keeps about float32 accuracy). A block has LP / 16 warps;
// in the forward and the first backward phase warp w owns queries 16w .. 16w + 15, and its
// logits, softmax, dS and dQ stay in registers (as in FlashAttention-2); in the second backward
// phase warp w owns keys 16w .. 16w + 15 (dK, dV) and reads P^T and dS^T, which the first phase
// left in shared memory. Tiles hold raw 16- or 32-bit values in 32-bit words, zero in every
// padding row and column, so the padded products add nothing. Row strides (in words) are 4 mod 8,
// which makes the fragment loads of a warp hit 32 distinct banks.

constexpr int kMmaMaxL = 64;  // window positions (7 x 7, 8 x 8)
constexpr int kMmaMaxD = 64;  // head_dim
constexpr int kMmaMaxN = 8;   // 8-wide column tiles of a warp's 16-row strip (64 / 8)

struct MmaShape {
  int LP;     // positions padded to a multiple of 16
  int DK;     // channels padded to a multiple of the k-step
  int row_w;  // words per row of a [LP, DK] tile
  int col_w;  // words per row of a [DK, LP] or [LP, LP] tile
  int warps;  // LP / 16
};

// per_word: values per 32-bit word (2 for 16-bit types, 1 for float32); step: k per mma.
__host__ __device__ inline MmaShape mma_shape(int L, int d, int per_word, int step) {
  MmaShape s;
  s.LP = (L + 15) / 16 * 16;
  s.DK = (d + step - 1) / step * step;
  s.row_w = s.DK / per_word + 4;
  s.col_w = s.LP / per_word + 4;
  s.warps = s.LP / 16;
  return s;
}

// Element (row, col) of a tile whose rows are w words long, written as raw bits.
template <typename Bits>
__device__ __forceinline__ void put_element(uint32_t* tile, int w, int row, int col, Bits bits) {
  constexpr int per_word = static_cast<int>(sizeof(uint32_t) / sizeof(Bits));
  reinterpret_cast<Bits*>(tile)[row * w * per_word + col] = bits;
}

// A fragment at rows m0.., k-step kk (words 8 kk ..) of a tile with rows of `w` words.
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const uint32_t* tile, int w, int m0, int kk) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const uint32_t* r0 = tile + (m0 + g) * w + 8 * kk + t;
  const uint32_t* r1 = r0 + 8 * w;
  a[0] = r0[0];
  a[1] = r1[0];
  a[2] = r0[4];
  a[3] = r1[4];
}

// B fragment whose column n is row n0 + n of the tile, k-step kk (words 8 kk ..).
__device__ __forceinline__ void load_b(uint32_t (&b)[2], const uint32_t* tile, int w, int n0, int kk) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const uint32_t* r = tile + (n0 + g) * w + 8 * kk + t;
  b[0] = r[0];
  b[1] = r[4];
}

// How the mma kernels store and multiply scalar_t (float16 / bfloat16 here, float32 below).
template <typename scalar_t>
struct MmaOps {
  static constexpr int kPerWord = 2, kStep = 16;
  using Bits = uint16_t;
  static __device__ __forceinline__ Bits bits(scalar_t x) { return x.x; }
  static __device__ __forceinline__ Bits encode(float x) { return scalar_t(x).x; }
  static __device__ __forceinline__ float decode(Bits b) {
    return static_cast<float>(scalar_t(b, scalar_t::from_bits()));
  }
  static __device__ __forceinline__ void mma(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    mma_16816<scalar_t>(acc, a, b, acc);
  }
  // A fragment of k-step kk (columns 16 kk ..) of a 16-row strip held as accumulators: n-tiles
  // 2 kk and 2 kk + 1, rounded to scalar_t.
  static __device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&acc)[kMmaMaxN][4], int kk) {
    a[0] = pack_pair<scalar_t>(acc[2 * kk][0], acc[2 * kk][1]);
    a[1] = pack_pair<scalar_t>(acc[2 * kk][2], acc[2 * kk][3]);
    a[2] = pack_pair<scalar_t>(acc[2 * kk + 1][0], acc[2 * kk + 1][1]);
    a[3] = pack_pair<scalar_t>(acc[2 * kk + 1][2], acc[2 * kk + 1][3]);
  }
  // The B fragment that pairs with acc_to_a's A (column n of B = row n0 + n of the tile).
  static __device__ __forceinline__ void load_b_acc(uint32_t (&b)[2], const uint32_t* tile, int w, int n0, int kk) {
    load_b(b, tile, w, n0, kk);
  }
};

template <>
struct MmaOps<float> {
  static constexpr int kPerWord = 1, kStep = 8;
  using Bits = uint32_t;
  static __device__ __forceinline__ Bits bits(float x) { return as_bits(x); }
  static __device__ __forceinline__ Bits encode(float x) { return as_bits(x); }
  static __device__ __forceinline__ float decode(Bits b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
  }
  static __device__ __forceinline__ uint32_t as_bits(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    return b;
  }
  // Three TF32 products, small terms first: A_small B_big + A_big B_small + A_big B_big.
  static __device__ __forceinline__ void mma(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    uint32_t a_big[4], a_small[4], b_big[2], b_small[2];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float x = decode(a[i]);
      a_big[i] = to_tf32(x);
      a_small[i] = to_tf32(x - decode(a_big[i]));
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const float x = decode(b[i]);
      b_big[i] = to_tf32(x);
      b_small[i] = to_tf32(x - decode(b_big[i]));
    }
    mma_1688_tf32(acc, a_small, b_big, acc);
    mma_1688_tf32(acc, a_big, b_small, acc);
    mma_1688_tf32(acc, a_big, b_big, acc);
  }
  // k-step kk is n-tile kk of the strip. The lane holds its keys 2t, 2t + 1, which serve as the
  // A slots t and t + 4; load_b_acc puts B's rows in the same order.
  static __device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&acc)[kMmaMaxN][4], int kk) {
    a[0] = as_bits(acc[kk][0]);
    a[1] = as_bits(acc[kk][2]);
    a[2] = as_bits(acc[kk][1]);
    a[3] = as_bits(acc[kk][3]);
  }
  static __device__ __forceinline__ void load_b_acc(uint32_t (&b)[2], const uint32_t* tile, int w, int n0, int kk) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const uint32_t* r = tile + (n0 + g) * w + 8 * kk + 2 * t;
    b[0] = r[0];
    b[1] = r[1];
  }
};

template <typename scalar_t>
__host__ __device__ inline MmaShape mma_shape_of(int L, int d) {
  return mma_shape(L, d, MmaOps<scalar_t>::kPerWord, MmaOps<scalar_t>::kStep);
}

__device__ __forceinline__ void clear(float (&acc)[kMmaMaxN][4]) {
#pragma unroll
  for (int n = 0; n < kMmaMaxN; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[n][e] = 0.f;
}

// acc[n] += A(strip) B(n-tile n) for n < n_tiles, over k_steps steps of 16: A from a tile with
// rows of a_w words starting at row m0, B from a tile whose row n0 + j is column j.
template <typename scalar_t>
__device__ __forceinline__ void strip_product(float (&acc)[kMmaMaxN][4], const uint32_t* a_tile, int a_w, int m0,
                                              const uint32_t* b_tile, int b_w, int k_steps, int n_tiles) {
  for (int kk = 0; kk < k_steps; ++kk) {
    uint32_t a[4];
    load_a(a, a_tile, a_w, m0, kk);
#pragma unroll
    for (int n = 0; n < kMmaMaxN; ++n) {
      if (n < n_tiles) {
        uint32_t b[2];
        load_b(b, b_tile, b_w, 8 * n, kk);
        MmaOps<scalar_t>::mma(acc[n], a, b);
      }
    }
  }
}

// acc[n] += A B(n-tile n) for n < n_tiles over k_steps steps, where A is a 16-row strip held as
// accumulators (a_acc, e.g. P or dS; rounded for the tensor cores) and column j of B is row j of
// b_tile. The k loop is unrolled to its compile-time bound so a_acc stays in registers.
template <typename scalar_t>
__device__ __forceinline__ void registers_times_tile(float (&acc)[kMmaMaxN][4], const float (&a_acc)[kMmaMaxN][4],
                                                     const uint32_t* b_tile, int b_w, int k_steps, int n_tiles) {
  using Ops = MmaOps<scalar_t>;
#pragma unroll
  for (int kk = 0; kk < kMmaMaxL / Ops::kStep; ++kk) {
    if (kk >= k_steps) break;
    uint32_t a[4];
    Ops::acc_to_a(a, a_acc, kk);
#pragma unroll
    for (int n = 0; n < kMmaMaxN; ++n) {
      if (n < n_tiles) {
        uint32_t b[2];
        Ops::load_b_acc(b, b_tile, b_w, 8 * n, kk);
        Ops::mma(acc[n], a, b);
      }
    }
  }
}

// Sum / maximum over the 4 lanes of a quad (the lanes sharing a row of an accumulator tile).
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1, 32);
  return x + __shfl_xor_sync(0xffffffffu, x, 2, 32);
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1, 32));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2, 32));
}

// One tensor to load into mma tiles: dst [LP, DK] (row_w words per row) and / or dst_t [DK, LP]
// (transposed, col_w words per row), raw bits; padded cells read pad (zeros when null).
template <typename scalar_t>
struct MmaSource {
  const scalar_t* data;
  const int64_t* stride;
  const scalar_t* pad;
  int64_t pad_stride;
  uint32_t* dst;
  uint32_t* dst_t;
};

// Fills the tiles of N tensors, zeros in every padding row and column. Work items are (tile row,
// 32-column chunk) pairs, one per warp with consecutive lanes on consecutive channels (coalesced);
// every warp keeps kLoadUnroll items in flight. With dot_with, also adds
// sum_c src[N - 1](j, c) * dot_with(j, c) to delta[j] (zeroed before) for every window row j.
template <typename scalar_t, int N>
__device__ void load_mma_tiles(const MmaShape& s, int L, int d, const MmaSource<scalar_t> (&src)[N], int64_t b,
                               int64_t c0, const int* cy, const int* cx, const scalar_t* __restrict__ dot_with,
                               const int64_t* dot_stride, float* delta) {
  using Ops = MmaOps<scalar_t>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  const int chunks = (s.DK + 31) / 32, items = s.LP * chunks;
  for (int first = warp; first < items; first += kLoadUnroll * warps) {
    typename Ops::Bits bits[kLoadUnroll][N];
    float dot[kLoadUnroll];
    int row[kLoadUnroll], col[kLoadUnroll];
#pragma unroll
    for (int u = 0; u < kLoadUnroll; ++u) {  // all loads first ...
      const int item = first + u * warps;
      row[u] = item / chunks;
      col[u] = lane + 32 * (item - row[u] * chunks);
      const bool live = item < items && row[u] < L && col[u] < d;
      const int y = live ? cy[row[u]] : -1, x = live ? cx[row[u]] : 0;
#pragma unroll
      for (int t = 0; t < N; ++t) {
        typename Ops::Bits value = 0;
        if (y >= 0) {
          const int64_t* st = src[t].stride;
          value = Ops::bits(src[t].data[b * st[0] + y * st[1] + x * st[2] + (c0 + col[u]) * st[3]]);
        } else if (live && src[t].pad != nullptr) {
          value = Ops::bits(src[t].pad[(c0 + col[u]) * src[t].pad_stride]);
        }
        bits[u][t] = value;
      }
      dot[u] = 0.f;
      if (dot_with != nullptr && y >= 0)
        dot[u] = Ops::decode(bits[u][N - 1]) * read_cell(dot_with, dot_stride, b, y, x, c0 + col[u]);
    }
#pragma unroll
    for (int u = 0; u < kLoadUnroll; ++u) {  // ... then the stores
      if (first + u * warps >= items) continue;  // uniform across the warp
      if (col[u] < s.DK)
#pragma unroll
        for (int t = 0; t < N; ++t) {
          if (src[t].dst != nullptr) put_element(src[t].dst, s.row_w, row[u], col[u], bits[u][t]);
          if (src[t].dst_t != nullptr) put_element(src[t].dst_t, s.col_w, col[u], row[u], bits[u][t]);
        }
      if (dot_with != nullptr) {
        const float sum = warp_sum(dot[u]);
        if (lane == 0 && row[u] < L) atomicAdd(delta + row[u], sum);  // a row's chunks may sit in other warps
      }
    }
  }
}

// Words of the backward's first shared area: the Q, K, V, dO row tiles, later P^T and dS^T.
__host__ __device__ inline int mma_backward_area_words(const MmaShape& s) {
  const int rows = 4 * s.LP * s.row_w, pd = 2 * s.LP * s.col_w;
  return rows > pd ? rows : pd;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kMmaMaxL * 2)
    window_attention_forward_mma_kernel(Params p, const scalar_t* __restrict__ q,
                                        const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
                                        const scalar_t* __restrict__ k_pad,
                                        const scalar_t* __restrict__ v_pad,
                                        const scalar_t* __restrict__ bias, scalar_t* __restrict__ out,
                                        float* __restrict__ lse) {
  HP_DYNAMIC_SHARED(float4, smem4);
  const int L = p.L, d = p.d;
  using Ops = MmaOps<scalar_t>;
  const MmaShape s = mma_shape_of<scalar_t>(L, d);
  uint32_t* qs = reinterpret_cast<uint32_t*>(smem4);  // [LP, DK] queries
  uint32_t* ks = qs + s.LP * s.row_w;                 // [LP, DK] keys
  uint32_t* vt = ks + s.LP * s.row_w;                 // [DK, LP] values, transposed
  int* cy = reinterpret_cast<int*>(vt + s.DK * s.col_w);  // [L] see fill_cells
  int* cx = cy + L;                                       // [L]
  int* krel = cx + L;                                     // [L]
  float* bias_s = reinterpret_cast<float*>(krel + L);     // [table] this head's bias column

  const Tile t = begin_tile(p, bias, cy, cx, krel, bias_s, nullptr, nullptr);
  const int64_t c0 = t.c0;
  const int centre = t.centre;
  const float scale = t.scale;
  const MmaSource<scalar_t> sources[3] = {{q, p.sq, nullptr, 0, qs, nullptr},
                                          {k, p.sk, k_pad, p.k_pad_stride, ks, nullptr},
                                          {v, p.sv, v_pad, p.v_pad_stride, nullptr, vt}};
  load_mma_tiles(s, L, d, sources, t.b, c0, cy, cx, static_cast<const scalar_t*>(nullptr), p.so, nullptr);
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
  const int m0 = 16 * warp;
  const int key_tiles = s.LP / 8, channel_tiles = (d + 7) / 8;
  float acc[kMmaMaxN][4];
  clear(acc);
  strip_product<scalar_t>(acc, qs, s.row_w, m0, ks, s.row_w, s.DK / Ops::kStep, key_tiles);

  // Logits (scale, bias, -inf where the pair does not count) and the softmax of the two rows
  // m0 + g and m0 + g + 8 this lane holds part of.
  const int rows[2] = {m0 + g, m0 + g + 8};
  bool query[2];
  float row_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int h = 0; h < 2; ++h) query[h] = rows[h] < L && cy[rows[h]] >= 0;
#pragma unroll
  for (int n = 0; n < kMmaMaxN; ++n) {
    if (n >= key_tiles) break;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int h = e / 2, i = rows[h], j = 8 * n + 2 * tq + (e & 1);
      float val = -INFINITY;
      if (query[h] && j < L && krel[j] >= 0) {
        val = acc[n][e] * scale;
        if (bias != nullptr) val += bias_s[krel[i] - krel[j] + centre];
      }
      acc[n][e] = val;
      row_max[h] = fmaxf(row_max[h], val);
    }
  }
  float row_sum[2] = {0.f, 0.f};
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    row_max[h] = quad_max(row_max[h]);
    if (row_max[h] == -INFINITY) row_max[h] = 0.f;  // a row that does not count: P = 0
  }
#pragma unroll
  for (int n = 0; n < kMmaMaxN; ++n) {
    if (n >= key_tiles) break;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float pr = expf(acc[n][e] - row_max[e / 2]);
      acc[n][e] = pr;
      row_sum[e / 2] += pr;
    }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) row_sum[h] = quad_sum(row_sum[h]);

  // O = P V / sum, P from the registers.
  float o[kMmaMaxN][4];
  clear(o);
  registers_times_tile<scalar_t>(o, acc, vt, s.col_w, s.LP / Ops::kStep, channel_tiles);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (!query[h]) continue;
    const int i = rows[h];
    const float inv = 1.f / row_sum[h];
    scalar_t* op = out + (t.b * p.so[0] + cy[i] * p.so[1] + cx[i] * p.so[2] + c0 * p.so[3]);
#pragma unroll
    for (int n = 0; n < kMmaMaxN; ++n) {
      if (n >= channel_tiles) break;
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int c = 8 * n + 2 * tq + e;
        if (c < d) op[c * p.so[3]] = static_cast<scalar_t>(o[n][2 * h + e] * inv);
      }
    }
    if (tq == 0) lse[((t.b * p.heads + t.h) * p.H + cy[i]) * p.W + cx[i]] = row_max[h] + logf(row_sum[h]);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kMmaMaxL * 2) window_attention_backward_mma_kernel(
    Params p, const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ q,
    const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
    const scalar_t* __restrict__ out, const float* __restrict__ lse,
    const scalar_t* __restrict__ k_pad, const scalar_t* __restrict__ v_pad,
    const scalar_t* __restrict__ bias, scalar_t* __restrict__ grad_q,
    scalar_t* __restrict__ grad_k, scalar_t* __restrict__ grad_v,
    float* __restrict__ grad_k_pad, float* __restrict__ grad_v_pad, float* __restrict__ grad_bias) {
  HP_DYNAMIC_SHARED(float4, smem4);
  const int L = p.L, d = p.d;
  using Ops = MmaOps<scalar_t>;
  const MmaShape s = mma_shape_of<scalar_t>(L, d);
  // Area 1: the row tiles of Q, K, V, dO (read by the logit products), then P^T and dS^T.
  uint32_t* qs = reinterpret_cast<uint32_t*>(smem4);  // [LP, DK] queries
  uint32_t* ks = qs + s.LP * s.row_w;                 // [LP, DK] keys
  uint32_t* vs = ks + s.LP * s.row_w;                 // [LP, DK] values
  uint32_t* gos = vs + s.LP * s.row_w;                // [LP, DK] output gradients
  uint32_t* pt = qs;                                  // [LP, LP] P^T (row = key), after the products
  uint32_t* dst = pt + s.LP * s.col_w;                // [LP, LP] dS^T (row = key)
  // Area 2: transposed tiles.
  uint32_t* qt = qs + mma_backward_area_words(s);     // [DK, LP] queries, transposed
  uint32_t* kt = qt + s.DK * s.col_w;                 // [DK, LP] keys, transposed
  uint32_t* got = kt + s.DK * s.col_w;                // [DK, LP] output gradients, transposed
  float* delta = reinterpret_cast<float*>(got + s.DK * s.col_w);  // [LP] D_i = dO_i . O_i
  float* lse_s = delta + s.LP;                        // [LP] saved log-sum-exp per query
  float* bias_acc = lse_s + s.LP;                     // [table] bias-gradient partial sums
  float* pad_acc = bias_acc + p.table;                // [2, d] k_pad / v_pad gradient partial sums
  int* cy = reinterpret_cast<int*>(pad_acc + 2 * d);  // [L] see fill_cells
  int* cx = cy + L;                                   // [L]
  int* krel = cx + L;                                 // [L]
  float* bias_s = reinterpret_cast<float*>(krel + L);  // [table] this head's bias column

  for (int j = threadIdx.x; j < s.LP; j += blockDim.x) delta[j] = 0.f;  // before begin_tile's barrier
  const Tile t = begin_tile(p, bias, cy, cx, krel, bias_s, bias_acc, pad_acc);
  const int64_t c0 = t.c0;
  const int centre = t.centre;
  const float scale = t.scale;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
  // The tiles, D = dO . O per query and the saved lse.
  const MmaSource<scalar_t> sources[4] = {{q, p.sq, nullptr, 0, qs, qt},
                                          {k, p.sk, k_pad, p.k_pad_stride, ks, kt},
                                          {v, p.sv, v_pad, p.v_pad_stride, vs, nullptr},
                                          {grad_out, p.sgo, nullptr, 0, gos, got}};
  load_mma_tiles(s, L, d, sources, t.b, c0, cy, cx, out, p.so, delta);
  for (int j = threadIdx.x; j < s.LP; j += blockDim.x)
    lse_s[j] = j < L && cy[j] >= 0 ? lse[((t.b * p.heads + t.h) * p.H + cy[j]) * p.W + cx[j]] : 0.f;
  __syncthreads();

  const int key_tiles = s.LP / 8, channel_tiles = (d + 7) / 8, k_steps = s.DK / Ops::kStep;
  {
    // Phase 1, warp w owns queries m0 .. m0 + 15: P, dS, dQ; P^T and dS^T to shared memory.
    // (Every warp of the block runs this block: it holds a __syncthreads.)
    const int m0 = 16 * warp;
    float sc[kMmaMaxN][4], dp[kMmaMaxN][4];
    clear(sc);
    clear(dp);
    strip_product<scalar_t>(sc, qs, s.row_w, m0, ks, s.row_w, k_steps, key_tiles);
    strip_product<scalar_t>(dp, gos, s.row_w, m0, vs, s.row_w, k_steps, key_tiles);
    __syncthreads();  // every warp is done with the row tiles: P^T and dS^T overwrite them
    const int rows[2] = {m0 + g, m0 + g + 8};
    bool query[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) query[h] = rows[h] < L && cy[rows[h]] >= 0;
#pragma unroll
    for (int n = 0; n < kMmaMaxN; ++n) {
      if (n >= key_tiles) break;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int h = e / 2, i = rows[h], j = 8 * n + 2 * tq + (e & 1);
        float pr = 0.f, dsv = 0.f;
        if (query[h] && j < L && krel[j] >= 0) {
          float val = sc[n][e] * scale;
          const int row = krel[i] - krel[j] + centre;
          if (bias != nullptr) val += bias_s[row];
          pr = expf(val - lse_s[i]);
          dsv = pr * (dp[n][e] - delta[i]);
          if (bias != nullptr) atomicAdd(bias_acc + row, dsv);
        }
        sc[n][e] = pr;
        dp[n][e] = dsv;
        put_element(pt, s.col_w, j, i, Ops::encode(pr));
        put_element(dst, s.col_w, j, i, Ops::encode(dsv));
      }
    }
    // dQ = scale dS K (K^T tile: its row c is column c of the product).
    float dq[kMmaMaxN][4];
    clear(dq);
    registers_times_tile<scalar_t>(dq, dp, kt, s.col_w, s.LP / Ops::kStep, channel_tiles);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if (!query[h]) continue;
      const int i = rows[h];
      scalar_t* gq = grad_q + ((t.b * p.H + cy[i]) * p.W + cx[i]) * p.C + c0;  // contiguous
#pragma unroll
      for (int n = 0; n < kMmaMaxN; ++n) {
        if (n >= channel_tiles) break;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = 8 * n + 2 * tq + e;
          if (c < d) gq[c] = static_cast<scalar_t>(dq[n][2 * h + e] * scale);
        }
      }
    }
  }
  __syncthreads();

  {
    // Phase 2, warp w owns keys m0 .. m0 + 15: dV = P^T dO, dK = scale dS^T Q.
    const int m0 = 16 * warp;
    float dv[kMmaMaxN][4], dk[kMmaMaxN][4];
    clear(dv);
    clear(dk);
    strip_product<scalar_t>(dv, pt, s.col_w, m0, got, s.col_w, s.LP / Ops::kStep, channel_tiles);
    strip_product<scalar_t>(dk, dst, s.col_w, m0, qt, s.col_w, s.LP / Ops::kStep, channel_tiles);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int j = m0 + g + 8 * h;
      if (j >= L) continue;
      const int y = cy[j];
      if (y < 0 && !p.zeros_mode) continue;  // a masked key has no gradient
      const int64_t base = ((t.b * p.H + y) * p.W + cx[j]) * p.C + c0;  // contiguous (when y >= 0)
#pragma unroll
      for (int n = 0; n < kMmaMaxN; ++n) {
        if (n >= channel_tiles) break;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = 8 * n + 2 * tq + e;
          if (c >= d) continue;
          const float gk = dk[n][2 * h + e] * scale, gv = dv[n][2 * h + e];
          if (y >= 0) {
            grad_k[base + c] = static_cast<scalar_t>(gk);
            grad_v[base + c] = static_cast<scalar_t>(gv);
          } else {  // a padded key: its gradient goes to k_pad / v_pad
            atomicAdd(pad_acc + c, gk);
            atomicAdd(pad_acc + d + c, gv);
          }
        }
      }
    }
  }
  __syncthreads();

  flush_reductions(p, t, bias != nullptr, pad_acc, bias_acc, grad_k_pad, grad_v_pad, grad_bias);
}

// ---------------------------------------------------------------------------------------------
// Host side (compiled by nvcc for the CUDA build and by the C++ compiler for the emulator)

Params make_params(const WindowGeometry& g, double scale, const at::Tensor& q, const at::Tensor& k,
                   const at::Tensor& v, const at::Tensor& out, const at::Tensor* grad_out,
                   const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
                   const c10::optional<at::Tensor>& rel_bias) {
  Params p;
  // The kernels do tile-local index arithmetic in 32 bits: every size it touches must fit.
  const int64_t limit = int64_t(1) << 30;
  TORCH_CHECK(g.H + g.wh < limit && g.W + g.ww < limit && g.heads < limit && g.d < limit &&
                  g.table < limit && (g.nh + 1) * g.wh < limit && (g.nw + 1) * g.ww < limit,
              "window_attention: image or window too large for the CUDA kernels (H ", g.H, ", W ",
              g.W, ", window ", g.wh, "x", g.ww, ")");
  p.B = g.B;
  p.C = g.C;
  p.H = static_cast<int>(g.H);
  p.W = static_cast<int>(g.W);
  p.heads = static_cast<int>(g.heads);
  p.d = static_cast<int>(g.d);
  p.wh = static_cast<int>(g.wh);
  p.ww = static_cast<int>(g.ww);
  p.top = static_cast<int>(g.top);
  p.left = static_cast<int>(g.left);
  p.nh = static_cast<int>(g.nh);
  p.nw = static_cast<int>(g.nw);
  p.L = static_cast<int>(g.L);
  p.table = static_cast<int>(g.table);
  p.zeros_mode = g.zeros_mode;
  for (int i = 0; i < 4; ++i) {
    p.sq[i] = q.stride(i);
    p.sk[i] = k.stride(i);
    p.sv[i] = v.stride(i);
    p.so[i] = out.stride(i);
    p.sgo[i] = grad_out != nullptr ? grad_out->stride(i) : 0;
  }
  p.k_pad_stride = has(k_pad) ? k_pad->stride(0) : 0;
  p.v_pad_stride = has(v_pad) ? v_pad->stride(0) : 0;
  p.bias_s0 = has(rel_bias) ? rel_bias->stride(0) : 0;
  p.bias_s1 = has(rel_bias) ? rel_bias->stride(1) : 0;
  p.scale = scale;
  return p;
}

template <typename T>
const T* optional_ptr(const c10::optional<at::Tensor>& t) {
  return has(t) ? t->const_data_ptr<T>() : nullptr;
}

// G lanes per window row, rounded up to whole warps, at most kMaxThreads.
inline int threads_for(int64_t L, int G) {
  const int64_t rounded = (L * G + 31) / 32 * 32;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(rounded, 32), kMaxThreads));
}

// Calls f(std::integral_constant<int, DMAX>) for the smallest supported DMAX >= d.
template <typename F>
void dispatch_head_dim(int64_t d, F f) {
  if (d <= 32) {
    f(std::integral_constant<int, 32>());
  } else if (d <= 48) {  // HRFormer-B: 39
    f(std::integral_constant<int, 48>());
  } else if (d <= 64) {
    f(std::integral_constant<int, 64>());
  } else if (d <= 128) {
    f(std::integral_constant<int, 128>());
  } else {
    TORCH_CHECK(false, "window_attention: the CUDA kernels support head_dim up to 128, got ", d);
  }
}

// float32, float16 and bfloat16 (float64 is refused before dispatch).
#define HP_DISPATCH_CUDA_TYPES(TYPE, NAME, ...)                \
  AT_DISPATCH_SWITCH(TYPE, NAME,                               \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)  \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

// Which kernel family runs (see the top of this file).
enum class KernelFamily { kRows, kTiles, kMma };

inline KernelFamily kernel_family(const std::string& name, const char* where) {
  if (name == "rows") return KernelFamily::kRows;
  if (name == "tiles") return KernelFamily::kTiles;
  if (name == "mma") return KernelFamily::kMma;
  TORCH_CHECK(false, "window_attention: ", where, " must be \"rows\", \"tiles\" or \"mma\", got \"", name, "\"");
  return KernelFamily::kRows;
}

// The family that runs a call: mma takes windows of up to 64 positions and head_dim up to 64,
// tiles windows of up to 64 positions; anything else falls back (mma -> tiles -> rows).
inline KernelFamily family_for(KernelFamily requested, const WindowGeometry& g) {
  if (requested == KernelFamily::kMma && g.L <= kMmaMaxL && g.d <= kMmaMaxD) return KernelFamily::kMma;
  if (requested != KernelFamily::kRows && g.L <= kTilesMaxL) return KernelFamily::kTiles;
  return KernelFamily::kRows;
}

inline MmaShape mma_shape_for(const WindowGeometry& g, at::ScalarType dtype) {
  const int L = static_cast<int>(g.L), d = static_cast<int>(g.d);
  return dtype == at::kFloat ? mma_shape_of<float>(L, d) : mma_shape_of<c10::Half>(L, d);
}

inline int tiles_threads(const WindowGeometry& g) {
  const TileShape s = tile_shape(static_cast<int>(g.L), static_cast<int>(g.d));
  const int tasks = s.NI * s.NI;
  return std::min(kTilesMaxThreads, std::max(32, (tasks + 31) / 32 * 32));
}

// Dynamic shared memory of each kernel (the layouts are listed at the top of each kernel).
inline size_t forward_shared_bytes(KernelFamily family, const WindowGeometry& g, at::ScalarType dtype) {
  const int L = static_cast<int>(g.L), d = static_cast<int>(g.d);
  if (family == KernelFamily::kMma) {
    const MmaShape s = mma_shape_for(g, dtype);
    return sizeof(uint32_t) * (2 * s.LP * s.row_w + s.DK * s.col_w) + sizeof(int) * 3 * g.L +
           sizeof(float) * g.table;
  }
  if (family == KernelFamily::kTiles) {
    const TileShape s = tile_shape(L, d);
    return sizeof(float) * (3 * s.Lp * s.rs + s.Lp * s.ps + s.Lp + g.table) + sizeof(int) * 3 * g.L;
  }
  return sizeof(float) * (3 * g.L * padded_dim(d) + g.table) + sizeof(int) * 3 * g.L;
}

inline size_t backward_shared_bytes(KernelFamily family, const WindowGeometry& g, at::ScalarType dtype) {
  const int L = static_cast<int>(g.L), d = static_cast<int>(g.d);
  if (family == KernelFamily::kMma) {
    const MmaShape s = mma_shape_for(g, dtype);
    return sizeof(uint32_t) * (mma_backward_area_words(s) + 3 * s.DK * s.col_w) +
           sizeof(float) * (2 * s.LP + 2 * g.table + 2 * g.d) + sizeof(int) * 3 * g.L;
  }
  if (family == KernelFamily::kTiles) {
    const TileShape s = tile_shape(L, d);
    return sizeof(float) * (4 * s.Lp * s.rs + 2 * s.Lp * s.ps + 2 * s.Lp + 2 * g.table + 2 * g.d) +
           sizeof(int) * 3 * g.L;
  }
  return sizeof(float) * (4 * g.L * padded_dim(d) + 2 * g.L * g.L + 2 * g.table + 2 * g.d) + sizeof(int) * 3 * g.L;
}

inline int64_t tile_count(const WindowGeometry& g) {
  const int64_t blocks = g.B * g.nh * g.nw * g.heads;
  TORCH_CHECK(blocks < (int64_t(1) << 31), "window_attention: too many (image, window, head) tiles: ", blocks);
  return blocks;
}

// The forward on already checked arguments. `launch(kernel, blocks, threads, shared_bytes, what,
// args...)` runs a kernel (on the GPU, or in the emulator).
template <typename Launch>
std::tuple<at::Tensor, at::Tensor> window_attention_forward_impl(
    const Launch& launch, KernelFamily family, const WindowGeometry& g, double scale, const at::Tensor& q,
    const at::Tensor& k, const at::Tensor& v, const c10::optional<at::Tensor>& k_pad,
    const c10::optional<at::Tensor>& v_pad, const c10::optional<at::Tensor>& rel_bias) {
  auto out = at::empty(q.sizes(), q.options().memory_format(at::MemoryFormat::Contiguous));
  auto lse = at::empty({g.B, g.heads, g.H, g.W}, q.options().dtype(lse_dtype(q.scalar_type())));
  if (q.numel() == 0) return {out, lse};
  const int64_t blocks = tile_count(g);
  const Params p = make_params(g, scale, q, k, v, out, nullptr, k_pad, v_pad, rel_bias);
  const KernelFamily runs = family_for(family, g);
  const size_t smem = forward_shared_bytes(runs, g, q.scalar_type());
  HP_DISPATCH_CUDA_TYPES(q.scalar_type(), "window_attention_forward_cuda", [&] {
    const scalar_t* qp = q.const_data_ptr<scalar_t>();
    const scalar_t* kp = k.const_data_ptr<scalar_t>();
    const scalar_t* vp = v.const_data_ptr<scalar_t>();
    const scalar_t* kpad = optional_ptr<scalar_t>(k_pad);
    const scalar_t* vpad = optional_ptr<scalar_t>(v_pad);
    const scalar_t* bias = optional_ptr<scalar_t>(rel_bias);
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    float* lp = lse.mutable_data_ptr<float>();
    if (runs == KernelFamily::kMma) {
      launch(window_attention_forward_mma_kernel<scalar_t>, blocks, 32 * mma_shape_for(g, q.scalar_type()).warps,
             smem, "forward", p, qp, kp, vp, kpad, vpad, bias, op, lp);
      return;
    }
    if (runs == KernelFamily::kTiles) {
      launch(window_attention_forward_tiles_kernel<scalar_t>, blocks, tiles_threads(g), smem, "forward", p, qp, kp,
             vp, kpad, vpad, bias, op, lp);
      return;
    }
    dispatch_head_dim(g.d, [&](auto dmax) {
      constexpr int DMAX = decltype(dmax)::value;
      launch(window_attention_forward_kernel<scalar_t, DMAX>, blocks, threads_for(g.L, RowSplit<DMAX>::G), smem,
             "forward", p, qp, kp, vp, kpad, vpad, bias, op, lp);
    });
  });
  return {out, lse};
}

// The backward on already checked arguments (lse contiguous float32); see the forward.
template <typename Launch>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
window_attention_backward_impl(const Launch& launch, KernelFamily family, const WindowGeometry& g, double scale,
                               const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                               const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
                               const c10::optional<at::Tensor>& rel_bias) {
  // grad_q / grad_k / grad_v are contiguous [B, H, W, C]; the kernels index them as such.
  auto grad_q = at::empty(q.sizes(), q.options().memory_format(at::MemoryFormat::Contiguous));
  auto grad_k = at::empty_like(grad_q);
  auto grad_v = at::empty_like(grad_q);
  // fp32 buffers of the block-wise atomic reductions.
  const auto acc = q.options().dtype(at::kFloat);
  auto gk_pad = at::zeros({g.C}, acc);
  auto gv_pad = at::zeros({g.C}, acc);
  auto g_bias = at::zeros({has(rel_bias) ? g.table : 0, g.heads}, acc);
  if (q.numel() > 0) {
    const int64_t blocks = tile_count(g);
    const Params p = make_params(g, scale, q, k, v, out, &grad_out, k_pad, v_pad, rel_bias);
    const KernelFamily runs = family_for(family, g);
    const size_t smem = backward_shared_bytes(runs, g, q.scalar_type());
    HP_DISPATCH_CUDA_TYPES(q.scalar_type(), "window_attention_backward_cuda", [&] {
      const scalar_t* gop = grad_out.const_data_ptr<scalar_t>();
      const scalar_t* qp = q.const_data_ptr<scalar_t>();
      const scalar_t* kp = k.const_data_ptr<scalar_t>();
      const scalar_t* vp = v.const_data_ptr<scalar_t>();
      const scalar_t* op = out.const_data_ptr<scalar_t>();
      const float* lp = lse.const_data_ptr<float>();
      const scalar_t* kpad = optional_ptr<scalar_t>(k_pad);
      const scalar_t* vpad = optional_ptr<scalar_t>(v_pad);
      const scalar_t* bias = optional_ptr<scalar_t>(rel_bias);
      scalar_t* gq = grad_q.mutable_data_ptr<scalar_t>();
      scalar_t* gk = grad_k.mutable_data_ptr<scalar_t>();
      scalar_t* gv = grad_v.mutable_data_ptr<scalar_t>();
      float* gkp = gk_pad.mutable_data_ptr<float>();
      float* gvp = gv_pad.mutable_data_ptr<float>();
      float* gb = g_bias.mutable_data_ptr<float>();
      if (runs == KernelFamily::kMma) {
        launch(window_attention_backward_mma_kernel<scalar_t>, blocks, 32 * mma_shape_for(g, q.scalar_type()).warps,
               smem, "backward", p, gop, qp, kp, vp, op, lp, kpad, vpad, bias, gq, gk, gv, gkp, gvp, gb);
        return;
      }
      if (runs == KernelFamily::kTiles) {
        launch(window_attention_backward_tiles_kernel<scalar_t>, blocks, tiles_threads(g), smem, "backward", p, gop,
               qp, kp, vp, op, lp, kpad, vpad, bias, gq, gk, gv, gkp, gvp, gb);
        return;
      }
      dispatch_head_dim(g.d, [&](auto dmax) {
        constexpr int DMAX = decltype(dmax)::value;
        launch(window_attention_backward_kernel<scalar_t, DMAX>, blocks, threads_for(g.L, RowSplit<DMAX>::G), smem,
               "backward", p, gop, qp, kp, vp, op, lp, kpad, vpad, bias, gq, gk, gv, gkp, gvp, gb);
      });
    });
  }
  const auto dtype = q.scalar_type();
  auto grad_bias = has(rel_bias) ? g_bias.to(dtype) : at::zeros({0}, q.options());
  return {grad_q, grad_k, grad_v, gk_pad.to(dtype), gv_pad.to(dtype), grad_bias};
}

}  // namespace
}  // namespace higherpose
