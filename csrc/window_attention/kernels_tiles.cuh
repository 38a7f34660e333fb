// The "tiles" window-attention kernels (see window_attention_launch.cuh): register-tiled 4 x 4
// products over shared tiles, windows of up to 64 positions.
#pragma once
#include "window_attention/kernels_common.cuh"

namespace higherpose {
namespace {

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

}  // namespace
}  // namespace higherpose
