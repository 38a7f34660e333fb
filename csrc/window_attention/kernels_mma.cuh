// The "mma" window-attention kernels (see window_attention_launch.cuh): tensor cores,
// FlashAttention-2 style, windows of up to 64 positions and head_dim up to 64.
#pragma once
#include <cstring>

#include "window_attention/kernels_common.cuh"  // first: it brings the emulator's CUDA keywords
#include "window_attention/mma.cuh"

namespace higherpose {
namespace {

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
  // x = big + small, both TF32. A non-finite x (inf, NaN) is all big: its small part is 0 (not
  // inf - inf = NaN), and its big part takes no part in the cross terms (`cross` is 0 for it),
  // where it would meet the other operand's small part (often exactly 0: 0 * inf = NaN). So an
  // infinite or NaN entry reaches the sum through big * big alone, as through the one product of
  // the reference.
  static __device__ __forceinline__ void split(float x, uint32_t& big, uint32_t& small, uint32_t& cross) {
    big = to_tf32(x);
    const float rest = x - decode(big);
    const bool finite = rest - rest == 0.f;  // exactly when x (and so rest) is finite
    small = to_tf32(finite ? rest : 0.f);
    cross = finite ? big : 0u;
  }
  // Three TF32 products, small terms first: A_small B_big + A_big B_small + A_big B_big.
  static __device__ __forceinline__ void mma(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    uint32_t a_big[4], a_small[4], a_cross[4], b_big[2], b_small[2], b_cross[2];
#pragma unroll
    for (int i = 0; i < 4; ++i) split(decode(a[i]), a_big[i], a_small[i], a_cross[i]);
#pragma unroll
    for (int i = 0; i < 2; ++i) split(decode(b[i]), b_big[i], b_small[i], b_cross[i]);
    mma_1688_tf32(acc, a_small, b_cross, acc);
    mma_1688_tf32(acc, a_cross, b_small, acc);
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

}  // namespace
}  // namespace higherpose
