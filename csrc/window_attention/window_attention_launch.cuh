// The host-side launch logic of the window-attention CUDA kernels (kernels_*.cuh): the launch
// parameters, shared-memory sizes, thread counts and the per-family launches, shared by the CUDA
// build (window_attention_cuda.cu) and the test-only host emulator
// (tests/csrc/window_attention_emulated.cpp, which runs the same kernels on the CPU so CI without a
// GPU tests their logic). Which family a call gets is decided in kernel_family.h.
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

#include "window_attention/kernels_common.cuh"  // first: it brings the emulator's CUDA keywords on the host
#include "window_attention/kernels_mma.cuh"
#include "window_attention/kernels_rows.cuh"
#include "window_attention/kernels_tiles.cuh"
#include "window_attention/kernel_family.h"
#include "window_attention/window_attention.h"

namespace higherpose {
namespace {

// Host side (compiled by nvcc for the CUDA build and by the C++ compiler for the emulator): the
// kernels of the three families are in kernels_rows.cuh, kernels_tiles.cuh and kernels_mma.cuh.

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

// The family that can run a call asked of `requested`: mma takes windows of up to 64 positions and
// head_dim up to 64, tiles windows of up to 64 positions; anything else falls back
// (mma -> tiles -> rows).
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
