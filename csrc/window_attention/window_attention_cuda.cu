// Local-window multi-head attention on CUDA: one thread block per (image, window, head) tile.
//
// Every window row (a query in the query-owned loops, a key in the key-owned loop) is handled by
// a group of G consecutive lanes of a warp (G = 4, or 8 for head_dim > 64): lane g owns the
// channel quads g, g + G, g + 2G, ... of the row, so each lane keeps only DMAX / G accumulators
// in registers and the row's dot products are finished with log2(G) shuffles inside the group.
// This cuts the serial work per thread by G and the register count accordingly, so many more
// warps run per SM than with one thread per row.
//
// Forward: all threads of the block first record where each window cell lies in the image
// (shared memory), then copy the tile's Q (times scale), K and V into shared memory with
// consecutive threads on consecutive channels (coalesced; the head's bias column is staged there
// too; padded cells read k_pad / v_pad in
// "zeros" mode and are skipped in "mask" mode). Each query group runs an online softmax over the
// window's keys and writes the output and the log-sum-exp of its query in image layout. Queries
// outside the image are skipped (their outputs would be cropped away).
// Backward (flash-style): the block recomputes the attention weights P and the logit gradients
// dS of its tile from the saved log-sum-exp into shared memory; query-owned gradients (dQ) are
// summed in registers, key-owned ones (dK, dV) in a second pass over the shared P / dS; the
// reductions (k_pad, v_pad, bias table) are summed per block in shared memory and then added to
// fp32 buffers with one atomic per entry and block.
// Every image position lies in exactly one window, so the writes of out / dQ / dK / dV never
// overlap. All launches go to the current stream. Index arithmetic inside a tile is 32-bit (the
// host checks the sizes); global offsets are 64-bit.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>

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

// The tile (image b, window (wi, wj), head h) of this block.
struct Tile {
  int64_t b;
  int wi, wj, h;
};

__device__ __forceinline__ Tile tile_of(const Params& p) {
  const int64_t task = blockIdx.x;
  Tile t;
  t.h = static_cast<int>(task % p.heads);
  const int64_t window = task / p.heads;
  t.wj = static_cast<int>(window % p.nw);
  t.wi = static_cast<int>((window / p.nw) % p.nh);
  t.b = window / (static_cast<int64_t>(p.nw) * p.nh);
  return t;
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
  extern __shared__ float4 smem4[];
  const int L = p.L, d = p.d, ds = padded_dim(d);
  float* qs = reinterpret_cast<float*>(smem4);  // [L, ds] queries times scale (0 for padding)
  float* ks = qs + L * ds;                      // [L, ds] keys
  float* vs = ks + L * ds;                      // [L, ds] values
  int* cy = reinterpret_cast<int*>(vs + L * ds);  // [L] see fill_cells
  int* cx = cy + L;                               // [L]
  int* krel = cx + L;                             // [L]
  float* bias_s = reinterpret_cast<float*>(krel + L);  // [table] this head's bias column

  const Tile t = tile_of(p);
  const int64_t c0 = static_cast<int64_t>(t.h) * d;
  const int centre = (p.wh - 1) * (2 * p.ww - 1) + p.ww - 1;
  const float scale = static_cast<float>(p.scale);
  fill_cells(p, t.wi, t.wj, cy, cx, krel);
  if (bias != nullptr) load_bias_column(p, bias, t.h, bias_s);
  __syncthreads();
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
  extern __shared__ float4 smem4[];
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

  const Tile t = tile_of(p);
  const int64_t c0 = static_cast<int64_t>(t.h) * d;
  const int centre = (p.wh - 1) * (2 * p.ww - 1) + p.ww - 1;
  const float scale = static_cast<float>(p.scale);

  fill_cells(p, t.wi, t.wj, cy, cx, krel);
  if (bias != nullptr) {
    for (int idx = threadIdx.x; idx < p.table; idx += blockDim.x) bias_acc[idx] = 0.f;
    load_bias_column(p, bias, t.h, bias_s);
  }
  for (int idx = threadIdx.x; idx < 2 * d; idx += blockDim.x) pad_acc[idx] = 0.f;
  __syncthreads();
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

  // One global atomic per reduction entry and block.
  if (p.zeros_mode)
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
      atomicAdd(grad_k_pad + c0 + c, pad_acc[c]);
      atomicAdd(grad_v_pad + c0 + c, pad_acc[d + c]);
    }
  if (bias != nullptr)
    for (int r = threadIdx.x; r < p.table; r += blockDim.x)
      atomicAdd(grad_bias + static_cast<int64_t>(r) * p.heads + t.h, bias_acc[r]);
}

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
int threads_for(int64_t L, int G) {
  const int64_t rounded = (L * G + 31) / 32 * 32;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(rounded, 32), kMaxThreads));
}

// Sets the dynamic shared memory of `kernel` to `bytes`, or fails with a clear message.
template <typename Kernel>
void set_shared_memory(Kernel kernel, size_t bytes, const char* what) {
  int device = 0, optin = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  TORCH_CHECK(bytes <= static_cast<size_t>(optin), "window_attention: the CUDA ", what, " of this window size and head_dim needs ",
              bytes, " bytes of shared memory per block, more than the device's ", optin,
              "; use smaller windows or heads");
  if (bytes > 48 * 1024)
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
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

void check_cuda(const at::Tensor& q, int64_t head_dim) {
  TORCH_CHECK(q.is_cuda(), "window_attention: the CUDA kernel got q on ", q.device());
  // Checked before any dispatch so the error is raised from plain host code.
  TORCH_CHECK(head_dim <= 128, "window_attention: the CUDA kernels support head_dim up to 128, got ", head_dim);
  TORCH_CHECK(q.scalar_type() != at::kDouble,
              "window_attention: float64 is supported on the CPU only (CUDA: float32, float16, bfloat16)");
}

// float32, float16 and bfloat16 (float64 is refused by check_cuda).
#define HP_DISPATCH_CUDA_TYPES(TYPE, NAME, ...)                \
  AT_DISPATCH_SWITCH(TYPE, NAME,                               \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)  \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

std::tuple<at::Tensor, at::Tensor> window_attention_forward_cuda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::IntArrayRef window,
    int64_t num_heads, double scale, at::IntArrayRef offset, c10::string_view pad_mode,
    const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
    const c10::optional<at::Tensor>& rel_bias) {
  const WindowGeometry g = check_window_attention_args(q, k, v, window, num_heads, scale, offset,
                                                       pad_mode, k_pad, v_pad, rel_bias);
  check_cuda(q, g.d);
  c10::cuda::CUDAGuard guard(q.device());
  auto out = at::empty(q.sizes(), q.options().memory_format(at::MemoryFormat::Contiguous));
  auto lse = at::empty({g.B, g.heads, g.H, g.W}, q.options().dtype(lse_dtype(q.scalar_type())));
  if (q.numel() == 0) return {out, lse};
  const int64_t blocks = g.B * g.nh * g.nw * g.heads;
  TORCH_CHECK(blocks < (int64_t(1) << 31), "window_attention: too many (image, window, head) tiles: ", blocks);
  const Params p = make_params(g, scale, q, k, v, out, nullptr, k_pad, v_pad, rel_bias);
  auto stream = c10::cuda::getCurrentCUDAStream();
  HP_DISPATCH_CUDA_TYPES(q.scalar_type(), "window_attention_forward_cuda", [&] {
    dispatch_head_dim(g.d, [&](auto dmax) {
      constexpr int DMAX = decltype(dmax)::value;
      auto kernel = window_attention_forward_kernel<scalar_t, DMAX>;
      // q, k, v tiles [L, ds] fp32 + cy, cx, krel [L] ints + the bias column [table] (see the kernel).
      const size_t smem = sizeof(float) * (3 * g.L * padded_dim(static_cast<int>(g.d)) + g.table) + sizeof(int) * 3 * g.L;
      set_shared_memory(kernel, smem, "forward");
      const int threads = threads_for(g.L, RowSplit<DMAX>::G);
      kernel<<<static_cast<unsigned>(blocks), threads, smem, stream>>>(
          p, q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
          optional_ptr<scalar_t>(k_pad), optional_ptr<scalar_t>(v_pad), optional_ptr<scalar_t>(rel_bias),
          out.mutable_data_ptr<scalar_t>(), lse.mutable_data_ptr<float>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
window_attention_backward_cuda(const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse_in,
                               at::IntArrayRef window, int64_t num_heads, double scale,
                               at::IntArrayRef offset, c10::string_view pad_mode,
                               const c10::optional<at::Tensor>& k_pad,
                               const c10::optional<at::Tensor>& v_pad,
                               const c10::optional<at::Tensor>& rel_bias) {
  const WindowGeometry g = check_window_attention_args(q, k, v, window, num_heads, scale, offset,
                                                       pad_mode, k_pad, v_pad, rel_bias);
  check_cuda(q, g.d);
  check_window_attention_backward_args(grad_out, q, out, lse_in, g);
  TORCH_CHECK(lse_in.scalar_type() == lse_dtype(q.scalar_type()), "window_attention_backward: lse dtype ",
              lse_in.scalar_type(), " does not match q dtype ", q.scalar_type());
  c10::cuda::CUDAGuard guard(q.device());
  const at::Tensor lse = lse_in.contiguous();
  // grad_q / grad_k / grad_v are contiguous [B, H, W, C]; the kernel indexes them as such.
  auto grad_q = at::empty(q.sizes(), q.options().memory_format(at::MemoryFormat::Contiguous));
  auto grad_k = at::empty_like(grad_q);
  auto grad_v = at::empty_like(grad_q);
  const auto acc_type = at::kFloat;
  auto gk_pad = at::zeros({g.C}, q.options().dtype(acc_type));
  auto gv_pad = at::zeros({g.C}, q.options().dtype(acc_type));
  auto g_bias = at::zeros({has(rel_bias) ? g.table : 0, g.heads}, q.options().dtype(acc_type));
  if (q.numel() > 0) {
    const int64_t blocks = g.B * g.nh * g.nw * g.heads;
    TORCH_CHECK(blocks < (int64_t(1) << 31), "window_attention: too many (image, window, head) tiles: ", blocks);
    const Params p = make_params(g, scale, q, k, v, out, &grad_out, k_pad, v_pad, rel_bias);
    auto stream = c10::cuda::getCurrentCUDAStream();
    HP_DISPATCH_CUDA_TYPES(q.scalar_type(), "window_attention_backward_cuda", [&] {
      dispatch_head_dim(g.d, [&](auto dmax) {
        constexpr int DMAX = decltype(dmax)::value;
        auto kernel = window_attention_backward_kernel<scalar_t, DMAX>;
        // k, v, q, dO tiles [L, ds], P and dS [L, L], bias and pad partial sums (fp32) + cy,
        // cx, krel [L] ints + the bias column [table] (see the kernel).
        const size_t smem =
            sizeof(float) * (4 * g.L * padded_dim(static_cast<int>(g.d)) + 2 * g.L * g.L + 2 * g.table + 2 * g.d) +
            sizeof(int) * 3 * g.L;
        set_shared_memory(kernel, smem, "backward");
        const int threads = threads_for(g.L, RowSplit<DMAX>::G);
        kernel<<<static_cast<unsigned>(blocks), threads, smem, stream>>>(
            p, grad_out.const_data_ptr<scalar_t>(), q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(),
            v.const_data_ptr<scalar_t>(), out.const_data_ptr<scalar_t>(), lse.const_data_ptr<float>(),
            optional_ptr<scalar_t>(k_pad), optional_ptr<scalar_t>(v_pad), optional_ptr<scalar_t>(rel_bias),
            grad_q.mutable_data_ptr<scalar_t>(), grad_k.mutable_data_ptr<scalar_t>(),
            grad_v.mutable_data_ptr<scalar_t>(), gk_pad.mutable_data_ptr<float>(),
            gv_pad.mutable_data_ptr<float>(), g_bias.mutable_data_ptr<float>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
  auto grad_bias = has(rel_bias) ? g_bias.to(q.scalar_type()) : at::zeros({0}, q.options());
  return {grad_q, grad_k, grad_v, gk_pad.to(q.scalar_type()), gv_pad.to(q.scalar_type()), grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(higherpose, CUDA, m) {
  m.impl("window_attention_forward", &window_attention_forward_cuda);
  m.impl("window_attention_backward", &window_attention_backward_cuda);
}

}  // namespace higherpose
