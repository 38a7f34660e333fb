// Heatmap peaks on CUDA: local-maximum test and per-(image, joint) top-k, without a pooled copy.
//
// Same contract as the CPU kernel (csrc/peaks/peaks_cpu.cpp): a pixel is a peak iff it is not NaN
// and no pixel of its kernel x kernel neighbourhood inside the map is greater; peaks are ranked by
// value, ties by the lower flat index y * W + x; unfilled slots hold -inf, x = y = -1, zero tags.
//
// Precision: float16 / bfloat16 values are widened to float32 for the comparisons. The widening
// is exact and order-preserving, so every comparison gives the same answer as in the input's own
// precision (and as the CPU kernel). The returned values are the original input elements.
// float64 is not supported on CUDA (the CPU kernel handles it).
//
// Kernels on the current stream (after one small fill that zeroes the per-map counters):
//  1. find_peaks: one block per (map, tile). The tile plus a halo of kernel // 2 is staged in
//     shared memory (out-of-map positions read as -inf, so they never win; NaN stays NaN and loses
//     every comparison, so it never suppresses). Each thread owns 4 columns x 8 rows: horizontal
//     window maxima come from registers, vertical maxima from a small register ring, so no pooled
//     map is ever written. Peaks are appended as 64-bit sort keys (value bits, then inverted flat
//     index) to a per-map candidate buffer: peaks are first gathered in shared memory, then one
//     global atomic per block reserves their slots. The buffer holds H * W keys per map, the
//     worst case, so it cannot overflow.
//     For k <= 32 (the usual max-people count) the last tile of each map to finish selects the
//     map's top k right there (registers and warp shuffles), so the op is a single launch.
//  2. select_top_k, otherwise: one block per map sorts its candidates by key (descending = value
//     descending, then flat index ascending) and writes values, x, y, tags and the fill. Up to
//     kSortCapacity candidates are sorted in shared memory at once; more are handled in chunks,
//     each chunk's bound found by an exact radix select over the keys in global memory.
// Kernels larger than 9 use a plain one-thread-per-pixel scan instead of kernel 1.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/Dispatch.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "peaks/peaks.h"
#include "registration.h"

namespace higherpose {
namespace {

using sort_key_t = unsigned long long;
constexpr unsigned kFullMask = 0xffffffffu;

// Tiled peak finder geometry: a block of 128 threads covers 32 columns x 128 rows of one map.
constexpr int kFindThreads = 128;
constexpr int kColsPerThread = 4;
constexpr int kRowsPerThread = 8;
constexpr int kTileW = 32;                                              // 8 threads across
constexpr int kThreadsAcross = kTileW / kColsPerThread;                 // 8
constexpr int kTileH = (kFindThreads / kThreadsAcross) * kRowsPerThread;  // 16 strips x 8 = 128
constexpr int kMaxTiledRadius = 4;                                      // kernel <= 9
constexpr int kPadLeft = 4;                                             // >= kMaxTiledRadius
constexpr int kSharedW = kTileW + 2 * kPadLeft;                         // 40 floats per row
static_assert(kTileH * kTileW <= 65536, "tile-local positions must fit 16 bits");
static_assert(kPadLeft >= kMaxTiledRadius && kPadLeft + kColsPerThread + kMaxTiledRadius <= 12,
              "a thread's 12 staged columns must hold its pixels and their halo");

// Selection geometry.
constexpr int kSelectThreads = 512;
constexpr int kSortCapacity = 4096;  // keys sorted in shared memory at once (32 KiB)

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

// Sort key: order-preserving bits of the value (high word), inverted flat index (low word), so a
// larger key means a larger value, or an equal value at a lower index. -0.0 is folded into +0.0
// (they compare equal). Every real key is > 0, so 0 can pad a sort.
__device__ __forceinline__ sort_key_t make_key(float v, uint32_t flat_index) {
  const uint32_t bits = __float_as_uint(v + 0.0f);
  const uint32_t ordered = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<sort_key_t>(ordered) << 32) | static_cast<sort_key_t>(0xffffffffu - flat_index);
}

__device__ __forceinline__ uint32_t key_index(sort_key_t key) {
  return 0xffffffffu - static_cast<uint32_t>(key & 0xffffffffull);
}

struct MapGeometry {
  int64_t H, W, J;
  int64_t hs0, hs1, hs2, hs3;  // heatmap strides
};

__device__ __forceinline__ const void* map_base(const void* hm, size_t elem, const MapGeometry& g,
                                                int64_t map) {
  const int64_t n = map / g.J, j = map % g.J;
  return static_cast<const char*>(hm) + (n * g.hs0 + j * g.hs1) * static_cast<int64_t>(elem);
}

// Appends the tile-local positions of the lanes with `is_peak` to the block's shared list: one
// shared atomic per warp. Every lane of the warp must call it.
__device__ __forceinline__ void warp_append_local(bool is_peak, unsigned short local, int* count,
                                                  unsigned short* list) {
  const unsigned ballot = __ballot_sync(kFullMask, is_peak);
  if (ballot == 0) return;
  const int lane = threadIdx.x & 31;
  const int leader = __ffs(ballot) - 1;
  int base = 0;
  if (lane == leader) base = atomicAdd(count, __popc(ballot));
  base = __shfl_sync(kFullMask, base, leader);
  if (is_peak) list[base + __popc(ballot & ((1u << lane) - 1u))] = local;
}

// Warp-register top-32 helpers: lane i holds the i-th key of a 32-key list.
__device__ __forceinline__ sort_key_t keep_max_or_min(sort_key_t mine, sort_key_t other, bool keep_max) {
  return keep_max ? (mine > other ? mine : other) : (mine < other ? mine : other);
}

// Sorts the warp's 32 keys descending (bitonic network over shuffles).
__device__ __forceinline__ sort_key_t warp_sort_desc(sort_key_t v) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int size = 2; size <= 32; size <<= 1) {
#pragma unroll
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      const sort_key_t other = __shfl_xor_sync(kFullMask, v, stride);
      const bool descending_run = (lane & size) == 0;  // size == 32: the whole warp descends
      const bool lower = (lane & stride) == 0;
      v = keep_max_or_min(v, other, lower == descending_run);
    }
  }
  return v;
}

// best and incoming are sorted descending; returns the 32 largest of both, sorted descending.
__device__ __forceinline__ sort_key_t warp_merge_top32(sort_key_t best, sort_key_t incoming) {
  const int lane = threadIdx.x & 31;
  // Max of a descending and a reversed (ascending) list: a bitonic list holding the top 32.
  sort_key_t v = __shfl_sync(kFullMask, incoming, 31 - lane);
  v = best > v ? best : v;
#pragma unroll
  for (int stride = 16; stride > 0; stride >>= 1) {
    const sort_key_t other = __shfl_xor_sync(kFullMask, v, stride);
    v = keep_max_or_min(v, other, (lane & stride) == 0);
  }
  return v;
}

// Where the results go: output pointers, the tag maps and k (all slots are written by the kernels).
template <typename scalar_t>
struct PeakOutputs {
  const scalar_t* tags;
  int64_t ts0, ts1, ts2, ts3, ts4, T, k;
  scalar_t* values;
  int64_t* x;
  int64_t* y;
  scalar_t* peak_tags;
};

// Writes output slot `slot` of map `map` from a candidate key: the original value, x, y, tags.
template <typename scalar_t>
__device__ __forceinline__ void write_peak(int64_t map, int64_t slot, sort_key_t key, const scalar_t* m,
                                           const MapGeometry& g, const PeakOutputs<scalar_t>& out) {
  const int64_t n = map / g.J, j = map % g.J;
  const uint32_t flat = key_index(key);
  const int64_t py = flat / g.W, px = flat % g.W;
  const int64_t o = map * out.k + slot;
  out.values[o] = m[py * g.hs2 + px * g.hs3];
  out.x[o] = px;
  out.y[o] = py;
  const scalar_t* tag = out.tags + n * out.ts0 + j * out.ts1 + py * out.ts2 + px * out.ts3;
  for (int64_t t = 0; t < out.T; ++t) out.peak_tags[o * out.T + t] = tag[t * out.ts4];
}

// Fills the slots want .. k - 1 of a map (fewer peaks than k): -inf, x = y = -1, zero tags.
template <typename scalar_t>
__device__ void fill_unused(int64_t map, int64_t want, const PeakOutputs<scalar_t>& out) {
  for (int64_t i = want + threadIdx.x; i < out.k; i += blockDim.x) {
    const int64_t o = map * out.k + i;
    out.values[o] = static_cast<scalar_t>(neg_inf());
    out.x[o] = -1;
    out.y[o] = -1;
    for (int64_t t = 0; t < out.T; ++t) out.peak_tags[o * out.T + t] = static_cast<scalar_t>(0.0f);
  }
}

// Top-k for k <= 32 by one block (any size, a multiple of 32): every warp keeps a running top 32
// of its share of the candidates in registers, then the warps' lists are merged pairwise.
// `lists` is shared memory for blockDim.x / 32 lists. Keys are read with ld.global.cg (L2), as
// they may have been written by other blocks of the same grid. All threads must call it.
template <typename scalar_t>
__device__ void select_top32_block(int64_t map, int count, const sort_key_t* map_keys,
                                   const scalar_t* m, const MapGeometry& g,
                                   const PeakOutputs<scalar_t>& out, sort_key_t (*lists)[32]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int64_t want = count < out.k ? count : out.k;
  fill_unused(map, want, out);
  sort_key_t best = 0ull;
  for (int start = warp * 32; start < count; start += blockDim.x) {  // warp-uniform bounds
    const int i = start + lane;
    const sort_key_t key = i < count ? __ldcg(map_keys + i) : 0ull;
    // Skip the sort and merge when no key of this chunk beats the current 32nd best.
    sort_key_t chunk_max = key;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const sort_key_t other = __shfl_xor_sync(kFullMask, chunk_max, off);
      chunk_max = chunk_max > other ? chunk_max : other;
    }
    const sort_key_t worst_best = __shfl_sync(kFullMask, best, 31);
    if (chunk_max <= worst_best) continue;  // warp-uniform
    best = warp_merge_top32(best, warp_sort_desc(key));
  }
  lists[warp][lane] = best;
  __syncthreads();
  for (int width = 1; width < warps; width <<= 1) {
    if (warp % (2 * width) == 0 && warp + width < warps) {
      best = warp_merge_top32(best, lists[warp + width][lane]);
      lists[warp][lane] = best;
    }
    __syncthreads();
  }
  if (warp == 0 && lane < want) write_peak(map, lane, best, m, g, out);
}

// Kernel 1 (tiled): grid = maps * tiles_y * tiles_x blocks of kFindThreads threads.
template <typename scalar_t, int RADIUS>
__global__ void __launch_bounds__(kFindThreads)
find_peaks_tiled(const scalar_t* __restrict__ heatmaps, MapGeometry g, int64_t tiles_x,
                 int64_t tiles_per_map, int* __restrict__ counters, sort_key_t* __restrict__ keys,
                 int* __restrict__ tiles_done, bool fused_select, PeakOutputs<scalar_t> out) {
  constexpr int kRows = kTileH + 2 * RADIUS;
  __shared__ __align__(16) float tile[kRows][kSharedW];
  __shared__ unsigned short peak_list[kTileH * kTileW];  // tile-local positions row * 32 + col
  __shared__ int peak_count;
  __shared__ int peak_base;
  __shared__ bool last_tile;
  __shared__ sort_key_t lists[kFindThreads / 32][32];

  const int64_t map = blockIdx.x / tiles_per_map;
  const int64_t t = blockIdx.x % tiles_per_map;
  const int64_t y0 = (t / tiles_x) * kTileH, x0 = (t % tiles_x) * kTileW;
  const scalar_t* m = static_cast<const scalar_t*>(map_base(heatmaps, sizeof(scalar_t), g, map));

  // Stage tile + halo: shared (r, c) holds map (y0 + r - RADIUS, x0 + c - kPadLeft). All loads
  // are issued before any store so that their latencies overlap.
  constexpr int kLoads = (kRows * kSharedW + kFindThreads - 1) / kFindThreads;
  float staged[kLoads];
#pragma unroll
  for (int l = 0; l < kLoads; ++l) {
    const int i = threadIdx.x + l * kFindThreads;
    const int r = i / kSharedW, c = i % kSharedW;
    const int64_t gy = y0 + r - RADIUS, gx = x0 + c - kPadLeft;
    staged[l] = neg_inf();
    if (i < kRows * kSharedW && gy >= 0 && gy < g.H && gx >= 0 && gx < g.W) {
      staged[l] = static_cast<float>(m[gy * g.hs2 + gx * g.hs3]);
    }
  }
#pragma unroll
  for (int l = 0; l < kLoads; ++l) {
    const int i = threadIdx.x + l * kFindThreads;
    if (i < kRows * kSharedW) tile[i / kSharedW][i % kSharedW] = staged[l];
  }
  if (threadIdx.x == 0) peak_count = 0;
  __syncthreads();

  const int col0 = (threadIdx.x % kThreadsAcross) * kColsPerThread;  // tile column of my first pixel
  const int row0 = (threadIdx.x / kThreadsAcross) * kRowsPerThread;  // tile row of my first pixel
  float ring[2 * RADIUS + 1][kColsPerThread];  // horizontal maxima of the last 2R+1 rows
#pragma unroll
  for (int q = 0; q <= 2 * RADIUS; ++q) {
#pragma unroll
    for (int c = 0; c < kColsPerThread; ++c) ring[q][c] = neg_inf();
  }
#pragma unroll
  for (int s = 0; s < kRowsPerThread + 2 * RADIUS; ++s) {
    // Shared row row0 + s is map row y0 + row0 + s - RADIUS. Columns col0 .. col0 + 11 (stored)
    // cover map columns x0 + col0 - 4 .. x0 + col0 + 7: my 4 pixels and a halo of up to 4.
    const float4* src = reinterpret_cast<const float4*>(&tile[row0 + s][col0]);
    float a[12];
    const float4 p0 = src[0], p1 = src[1], p2 = src[2];
    a[0] = p0.x; a[1] = p0.y; a[2] = p0.z; a[3] = p0.w;
    a[4] = p1.x; a[5] = p1.y; a[6] = p1.z; a[7] = p1.w;
    a[8] = p2.x; a[9] = p2.y; a[10] = p2.z; a[11] = p2.w;
#pragma unroll
    for (int q = 0; q < 2 * RADIUS; ++q) {
#pragma unroll
      for (int c = 0; c < kColsPerThread; ++c) ring[q][c] = ring[q + 1][c];
    }
#pragma unroll
    for (int c = 0; c < kColsPerThread; ++c) {
      float h = a[kPadLeft + c];
#pragma unroll
      for (int d = 1; d <= RADIUS; ++d) h = fmaxf(h, fmaxf(a[kPadLeft + c - d], a[kPadLeft + c + d]));
      ring[2 * RADIUS][c] = h;  // fmaxf ignores NaN: the max of the non-NaN neighbours
    }
    if (s < 2 * RADIUS) continue;  // warp-uniform: every thread runs the same s

    // The ring now spans rows s - 2R .. s: the neighbourhood of shared row row0 + s - RADIUS.
    const int out_row = row0 + s - 2 * RADIUS;  // tile row of the pixels tested now
    const float4 centre = *reinterpret_cast<const float4*>(&tile[out_row + RADIUS][col0 + kPadLeft]);
    const float cv[4] = {centre.x, centre.y, centre.z, centre.w};
    const int64_t gy = y0 + out_row;
#pragma unroll
    for (int c = 0; c < kColsPerThread; ++c) {
      float nmax = ring[0][c];
#pragma unroll
      for (int q = 1; q <= 2 * RADIUS; ++q) nmax = fmaxf(nmax, ring[q][c]);
      const int64_t gx = x0 + col0 + c;
      const float v = cv[c];
      // v is not NaN here, so nmax >= v, and "no neighbour greater" is nmax <= v.
      const bool is_peak = gy < g.H && gx < g.W && !(v != v) && !(nmax > v);
      warp_append_local(is_peak, static_cast<unsigned short>(out_row * kTileW + col0 + c), &peak_count,
                        peak_list);
    }
  }

  // One global atomic per block reserves the tile's slots in the map's candidate list.
  __syncthreads();
  const int count = peak_count;
  sort_key_t* map_keys = keys + map * g.H * g.W;
  if (count > 0) {  // block-uniform
    if (threadIdx.x == 0) peak_base = atomicAdd(counters + map, count);
    __syncthreads();
    for (int i = threadIdx.x; i < count; i += kFindThreads) {
      const int r = peak_list[i] / kTileW, c = peak_list[i] % kTileW;
      const float v = tile[r + RADIUS][c + kPadLeft];
      map_keys[peak_base + i] = make_key(v, static_cast<uint32_t>((y0 + r) * g.W + x0 + c));
    }
  }
  if (!fused_select) return;

  // The last tile of a map to finish selects the map's top k (k <= 32), saving a launch: the
  // classic threadfence-reduction pattern (publish keys, fence, count finished tiles).
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last_tile = atomicAdd(tiles_done + map, 1) == tiles_per_map - 1;
  __syncthreads();
  if (!last_tile) return;  // block-uniform
  __threadfence();
  const int total = __ldcg(counters + map);
  select_top32_block(map, total, map_keys, m, g, out, lists);
}

// Kernel 1 (any kernel size): one thread per pixel, scanning its neighbourhood in global memory.
template <typename scalar_t>
__global__ void find_peaks_generic(const scalar_t* __restrict__ heatmaps, MapGeometry g,
                                   int64_t radius, int64_t total, int* __restrict__ counters,
                                   sort_key_t* __restrict__ keys) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t hw = g.H * g.W;
  const int64_t map = i / hw, flat = i % hw, yy = flat / g.W, xx = flat % g.W;
  const scalar_t* m = static_cast<const scalar_t*>(map_base(heatmaps, sizeof(scalar_t), g, map));
  const float v = static_cast<float>(m[yy * g.hs2 + xx * g.hs3]);
  if (v != v) return;
  const int64_t ya = yy > radius ? yy - radius : 0, yb = yy + radius < g.H ? yy + radius : g.H - 1;
  const int64_t xa = xx > radius ? xx - radius : 0, xb = xx + radius < g.W ? xx + radius : g.W - 1;
  for (int64_t ny = ya; ny <= yb; ++ny) {
    for (int64_t nx = xa; nx <= xb; ++nx) {
      if (static_cast<float>(m[ny * g.hs2 + nx * g.hs3]) > v) return;
    }
  }
  const int slot = atomicAdd(counters + map, 1);
  keys[map * hw + slot] = make_key(v, static_cast<uint32_t>(flat));
}

// Sorts s[0, n) descending; n is a power of two. All threads of the block must call it.
__device__ void bitonic_sort_desc(sort_key_t* s, int n) {
  for (int size = 2; size <= n; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < (n >> 1); i += blockDim.x) {
        const int lo = 2 * stride * (i / stride) + (i % stride), hi = lo + stride;
        const bool desc = (lo & size) == 0;
        const sort_key_t a = s[lo], b = s[hi];
        if ((a < b) == desc) {
          s[lo] = b;
          s[hi] = a;
        }
      }
      __syncthreads();
    }
  }
}

__device__ __forceinline__ int next_pow2(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

// The rank-th largest (rank >= 1, <= count) of keys[0, count): exact MSB-first radix select with
// 8-bit digits. Keys are unique. All threads of the block must call it; returns to all of them.
__device__ sort_key_t radix_select(const sort_key_t* keys, int count, int rank, int* hist,
                                   int* shared_int) {
  sort_key_t prefix = 0, mask = 0;
  int remaining = rank;  // rank of the answer among keys that match prefix under mask
  const int lane = threadIdx.x & 31;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
    __syncthreads();
    // Warp-uniform trip count so that __match_any_sync sees every lane.
    for (int base = 0; base < count; base += blockDim.x) {
      const int i = base + threadIdx.x;
      int digit = 256;  // "no digit": outside the list or not matching the prefix
      if (i < count) {
        const sort_key_t key = keys[i];
        if ((key & mask) == prefix) digit = static_cast<int>((key >> shift) & 0xff);
      }
      const unsigned same = __match_any_sync(kFullMask, digit);
      if (digit < 256 && lane == __ffs(same) - 1) atomicAdd(&hist[digit], __popc(same));
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      // Lane l owns digits 8l .. 8l + 7; count the keys at or above each lane's digits.
      int own = 0;
#pragma unroll
      for (int d = 0; d < 8; ++d) own += hist[8 * lane + d];
      int at_or_above = own;  // inclusive suffix sum over lanes l .. 31
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        const int other = __shfl_down_sync(kFullMask, at_or_above, off);
        if (lane + off < 32) at_or_above += other;
      }
      const unsigned enough = __ballot_sync(kFullMask, at_or_above >= remaining);
      const int owner = 31 - __clz(enough);  // highest lane whose digits reach the rank
      if (lane == owner) {
        int above = at_or_above - own;  // keys with a digit above this lane's digits
        int digit = 8 * lane + 7;
        while (above + hist[digit] < remaining) above += hist[digit--];
        shared_int[0] = digit;
        shared_int[1] = remaining - above;
      }
    }
    __syncthreads();
    prefix |= static_cast<sort_key_t>(shared_int[0]) << shift;
    mask |= 0xffull << shift;
    remaining = shared_int[1];
    __syncthreads();  // shared_int and hist are reused by the next digit
  }
  return prefix;
}

// Kernel 2: one block per map (when kernel 1 did not select already).
template <typename scalar_t>
__global__ void __launch_bounds__(kSelectThreads)
select_top_k(const scalar_t* __restrict__ heatmaps, MapGeometry g, const int* __restrict__ counters,
             const sort_key_t* __restrict__ keys, PeakOutputs<scalar_t> out) {
  __shared__ sort_key_t sorted[kSortCapacity];
  __shared__ int hist[256];
  __shared__ int shared_int[2];
  __shared__ int collected;
  __shared__ sort_key_t lists[kSelectThreads / 32][32];

  const int64_t map = blockIdx.x;
  const int count = counters[map];
  const sort_key_t* map_keys = keys + map * g.H * g.W;
  const scalar_t* m = static_cast<const scalar_t*>(map_base(heatmaps, sizeof(scalar_t), g, map));
  if (out.k <= 32) {
    select_top32_block(map, count, map_keys, m, g, out, lists);
    return;
  }
  const int64_t want = count < out.k ? count : out.k;
  fill_unused(map, want, out);

  int64_t written = 0;
  sort_key_t upper = ~0ull;  // keys of this chunk are below it (no real key reaches ~0)
  while (written < want) {
    const int chunk = static_cast<int>(want - written < kSortCapacity ? want - written : kSortCapacity);
    if (threadIdx.x == 0) collected = 0;
    __syncthreads();
    if (count <= kSortCapacity) {
      // Everything fits: one sort of all candidates (this loop then runs once).
      for (int i = threadIdx.x; i < count; i += blockDim.x) sorted[i] = map_keys[i];
      if (threadIdx.x == 0) collected = count;
    } else {
      // The chunk is the keys of ranks written + 1 .. written + chunk: at or above the
      // (written + chunk)-th largest key and below the previous chunk's smallest.
      const sort_key_t lower = radix_select(map_keys, count, static_cast<int>(written) + chunk, hist,
                                            shared_int);
      for (int i = threadIdx.x; i < count; i += blockDim.x) {
        const sort_key_t key = map_keys[i];
        if (key >= lower && key < upper) {
          const int slot = atomicAdd(&collected, 1);
          if (slot < kSortCapacity) sorted[slot] = key;  // exactly `chunk` keys qualify
        }
      }
      upper = lower;
    }
    __syncthreads();
    const int have = collected < kSortCapacity ? collected : kSortCapacity;
    const int padded = next_pow2(have);
    for (int i = have + threadIdx.x; i < padded; i += blockDim.x) sorted[i] = 0ull;
    __syncthreads();
    bitonic_sort_desc(sorted, padded);

    for (int i = threadIdx.x; i < chunk; i += blockDim.x) {
      write_peak(map, written + i, sorted[i], m, g, out);
    }
    written += chunk;
    __syncthreads();  // `sorted` and `collected` are reused by the next chunk
  }
}

template <typename scalar_t, int RADIUS>
void launch_find_tiled(const at::Tensor& heatmaps, const MapGeometry& g, int64_t maps,
                       int* counters, sort_key_t* keys, int* tiles_done,
                       const PeakOutputs<scalar_t>& out, cudaStream_t stream) {
  const int64_t tiles_x = (g.W + kTileW - 1) / kTileW, tiles_y = (g.H + kTileH - 1) / kTileH;
  const int64_t blocks = maps * tiles_x * tiles_y;
  TORCH_CHECK(blocks <= std::numeric_limits<int32_t>::max(),
              "heatmap_peaks: heatmaps are too large for one launch (", blocks, " tiles)");
  find_peaks_tiled<scalar_t, RADIUS><<<static_cast<unsigned>(blocks), kFindThreads, 0, stream>>>(
      heatmaps.const_data_ptr<scalar_t>(), g, tiles_x, tiles_x * tiles_y, counters, keys, tiles_done,
      /*fused_select=*/out.k <= 32, out);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> heatmap_peaks_cuda(
    const at::Tensor& heatmaps, const at::Tensor& tags, int64_t kernel, int64_t k) {
  check_heatmap_peaks_args(heatmaps, tags, kernel, k);
  TORCH_CHECK(heatmaps.is_cuda(), "heatmap_peaks: heatmaps must be a CUDA tensor here, got ",
              heatmaps.device());
  const auto dtype = heatmaps.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16,
              "heatmap_peaks: heatmaps on CUDA must be float32, float16 or bfloat16, got ", dtype,
              " (float64 is supported on the CPU)");
  const c10::cuda::CUDAGuard guard(heatmaps.device());

  const int64_t N = heatmaps.size(0), J = heatmaps.size(1), H = heatmaps.size(2),
                W = heatmaps.size(3), T = tags.size(4);
  const int64_t maps = N * J, hw = H * W;
  if (maps == 0 || hw == 0) return allocate_heatmap_peaks_outputs(heatmaps, tags, k);
  TORCH_CHECK(hw <= std::numeric_limits<int32_t>::max(),
              "heatmap_peaks: maps of ", H, " x ", W, " pixels are too large (at most 2^31 - 1 pixels)");
  TORCH_CHECK(maps <= std::numeric_limits<int32_t>::max(), "heatmap_peaks: too many maps (", maps, ")");

  // The kernels write every output slot, fill included: no initialisation needed.
  at::Tensor values, xs, ys, peak_tags;  // not a structured binding: lambdas below capture them (C++17)
  std::tie(values, xs, ys, peak_tags) = allocate_for_k(heatmaps, tags, k, [&] {
    return std::make_tuple(at::empty({N, J, k}, heatmaps.options()),
                           at::empty({N, J, k}, heatmaps.options().dtype(at::kLong)),
                           at::empty({N, J, k}, heatmaps.options().dtype(at::kLong)),
                           at::empty({N, J, k, T}, tags.options()));
  });
  // Per map: the candidate count and the number of finished tiles, zeroed in one fill.
  auto counters = at::zeros({2 * maps}, heatmaps.options().dtype(at::kInt));
  auto keys = at::empty({maps * hw}, heatmaps.options().dtype(at::kLong));  // worst case: all peaks

  const MapGeometry g{H, W, J, heatmaps.stride(0), heatmaps.stride(1), heatmaps.stride(2),
                      heatmaps.stride(3)};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(heatmaps.device().index()).stream();
  int* counter_ptr = counters.mutable_data_ptr<int>();
  int* tiles_done_ptr = counter_ptr + maps;
  sort_key_t* key_ptr = reinterpret_cast<sort_key_t*>(keys.mutable_data_ptr<int64_t>());
  const int64_t radius = kernel / 2;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "heatmap_peaks_cuda", [&] {
    if constexpr (std::is_same_v<scalar_t, double>) {
      TORCH_CHECK(false, "heatmap_peaks: float64 is not supported on CUDA");
    } else {
      const PeakOutputs<scalar_t> out{tags.const_data_ptr<scalar_t>(), tags.stride(0), tags.stride(1),
                                      tags.stride(2), tags.stride(3), tags.stride(4), T, k,
                                      values.mutable_data_ptr<scalar_t>(), xs.mutable_data_ptr<int64_t>(),
                                      ys.mutable_data_ptr<int64_t>(), peak_tags.mutable_data_ptr<scalar_t>()};
      // The tiled kernel selects the top k itself when k <= 32.
      const bool selected = radius <= kMaxTiledRadius && k <= 32;
      switch (radius) {
        case 0: launch_find_tiled<scalar_t, 0>(heatmaps, g, maps, counter_ptr, key_ptr, tiles_done_ptr, out, stream); break;
        case 1: launch_find_tiled<scalar_t, 1>(heatmaps, g, maps, counter_ptr, key_ptr, tiles_done_ptr, out, stream); break;
        case 2: launch_find_tiled<scalar_t, 2>(heatmaps, g, maps, counter_ptr, key_ptr, tiles_done_ptr, out, stream); break;
        case 3: launch_find_tiled<scalar_t, 3>(heatmaps, g, maps, counter_ptr, key_ptr, tiles_done_ptr, out, stream); break;
        case 4: launch_find_tiled<scalar_t, 4>(heatmaps, g, maps, counter_ptr, key_ptr, tiles_done_ptr, out, stream); break;
        default: {
          const int64_t total = maps * hw;
          const int64_t blocks = (total + 255) / 256;
          TORCH_CHECK(blocks <= std::numeric_limits<int32_t>::max(),
                      "heatmap_peaks: heatmaps are too large for one launch");
          find_peaks_generic<scalar_t><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
              heatmaps.const_data_ptr<scalar_t>(), g, radius, total, counter_ptr, key_ptr);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      }
      if (!selected) {
        select_top_k<scalar_t><<<static_cast<unsigned>(maps), kSelectThreads, 0, stream>>>(
            heatmaps.const_data_ptr<scalar_t>(), g, counter_ptr, key_ptr, out);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    }
  });
  return {values, xs, ys, peak_tags};
}

}  // namespace

HIGHERPOSE_LIBRARY_IMPL(CUDA, m) { m.impl("heatmap_peaks", &heatmap_peaks_cuda); }

}  // namespace higherpose
