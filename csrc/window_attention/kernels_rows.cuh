// The "rows" window-attention kernels (see window_attention_launch.cuh): a group of G lanes per
// window row, online softmax in the forward, flash-style backward with P / dS in shared memory.
#pragma once
#include "window_attention/kernels_common.cuh"

namespace higherpose {
namespace {

constexpr int kMaxThreads = 256;  // threads per block (a multiple of 32, hence of G)

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
      // A -inf logit weighs 0 even before any finite one came (-inf - -inf would be NaN); a NaN
      // logit stays NaN and reaches the output, as in the reference.
      const float e = s == -INFINITY ? 0.f : expf(s - m);
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

}  // namespace
}  // namespace higherpose
