// Local-window multi-head attention on CUDA: one thread block per (image, window, head) tile.
//
// Forward: the block gathers its window's keys and values straight from the image layout into
// shared memory (fp32; padded positions read k_pad / v_pad in "zeros"
// mode and are skipped in "mask" mode); each thread owns one query, keeps it and its output
// accumulator in registers, runs an online softmax over the window's keys and writes the output
// and the log-sum-exp of its query in image layout. Queries outside the image are skipped (their
// outputs would be cropped away).
// Backward (flash-style): the block recomputes the attention weights of its tile from the saved
// log-sum-exp; query-owned gradients (dQ) are summed in registers, key-owned ones (dK, dV) after
// one pass through shared memory; the reductions (k_pad, v_pad, bias table) are summed per block
// in shared memory and then added to fp32 buffers with one atomic per entry and block.
// Every image position lies in exactly one window, so the writes of out / dQ / dK / dV never
// overlap. All launches go to the current stream.
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

struct Params {
  int64_t B, H, W, C, heads, d, wh, ww, top, left, nh, nw, L, table;
  bool zeros_mode;
  int64_t sq[4], sk[4], sv[4], so[4], sgo[4];  // strides of q, k, v, out, grad_out
  int64_t k_pad_stride, v_pad_stride, bias_s0, bias_s1;
  double scale;
};

// Where window cell p of window (wi, wj) lies in the image; false when it is padding.
struct Cell {
  int64_t y, x;
  int rel;  // r * (2ww - 1) + c: bias row of (query p, key s) = rel_p - rel_s + centre
  bool inside;
};

__device__ __forceinline__ Cell cell_of(const Params& p, int64_t wi, int64_t wj, int64_t cell) {
  const int64_t r = cell / p.ww, c = cell % p.ww;
  Cell out;
  out.y = wi * p.wh + r - p.top;
  out.x = wj * p.ww + c - p.left;
  out.rel = static_cast<int>(r * (2 * p.ww - 1) + c);
  out.inside = out.y >= 0 && out.y < p.H && out.x >= 0 && out.x < p.W;
  return out;
}

__device__ __forceinline__ int64_t offset4(const int64_t* s, int64_t b, int64_t y, int64_t x, int64_t c) {
  return b * s[0] + y * s[1] + x * s[2] + c * s[3];
}

// Shared-memory tiles hold float rows padded with zeros to `ds` = round_up(d, 4) columns, so the
// inner loops read them four at a time (one 16-byte load feeds four FMAs). Register rows are
// float[DMAX] (DMAX a multiple of 4, >= d; the columns >= d stay 0).
__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }

// Loads keys and values of every window cell of head h into shared memory [L, ds]; padded
// cells read k_pad / v_pad (zeros when absent). In "mask" mode padded cells are never read later.
template <typename scalar_t>
__device__ void load_keys_values(const Params& p, const scalar_t* __restrict__ k,
                                 const scalar_t* __restrict__ v, const scalar_t* __restrict__ k_pad,
                                 const scalar_t* __restrict__ v_pad, int64_t b, int64_t wi,
                                 int64_t wj, int64_t h, int64_t ds, float* ks, float* vs) {
  const int64_t d = p.d, c0 = h * d;
  for (int64_t idx = threadIdx.x; idx < p.L * ds; idx += blockDim.x) {
    const int64_t j = idx / ds, c = idx % ds;
    float kv = 0, vv = 0;
    if (c < d) {
      const Cell cell = cell_of(p, wi, wj, j);
      if (cell.inside) {
        kv = static_cast<float>(k[offset4(p.sk, b, cell.y, cell.x, c0 + c)]);
        vv = static_cast<float>(v[offset4(p.sv, b, cell.y, cell.x, c0 + c)]);
      } else {
        if (k_pad != nullptr) kv = static_cast<float>(k_pad[(c0 + c) * p.k_pad_stride]);
        if (v_pad != nullptr) vv = static_cast<float>(v_pad[(c0 + c) * p.v_pad_stride]);
      }
    }
    ks[idx] = kv;
    vs[idx] = vv;
  }
}

inline __host__ __device__ int64_t padded_dim(int64_t d) { return (d + 3) / 4 * 4; }

// krel[j] = the bias-row term of key cell j, or -1 when the key is left out ("mask" mode
// padding); filled once per block so the key loops do no index arithmetic.
__device__ void fill_key_info(const Params& p, int64_t wi, int64_t wj, int* krel) {
  for (int64_t j = threadIdx.x; j < p.L; j += blockDim.x) {
    const Cell kc = cell_of(p, wi, wj, j);
    krel[j] = (p.zeros_mode || kc.inside) ? kc.rel : -1;
  }
}

template <typename scalar_t, int DMAX>
__global__ void window_attention_forward_kernel(Params p, const scalar_t* __restrict__ q,
                                                const scalar_t* __restrict__ k,
                                                const scalar_t* __restrict__ v,
                                                const scalar_t* __restrict__ k_pad,
                                                const scalar_t* __restrict__ v_pad,
                                                const scalar_t* __restrict__ bias,
                                                scalar_t* __restrict__ out, float* __restrict__ lse) {
  extern __shared__ float4 smem4[];
  const int64_t d = p.d, ds = padded_dim(d);
  float* ks = reinterpret_cast<float*>(smem4);  // [L, ds]
  float* vs = ks + p.L * ds;                    // [L, ds]
  int* krel = reinterpret_cast<int*>(vs + p.L * ds);  // [L]

  const int64_t task = blockIdx.x;
  const int64_t h = task % p.heads, window = task / p.heads;
  const int64_t wj = window % p.nw, wi = (window / p.nw) % p.nh, b = window / (p.nw * p.nh);
  const int64_t c0 = h * d;
  const int centre = static_cast<int>((p.wh - 1) * (2 * p.ww - 1) + p.ww - 1);
  load_keys_values(p, k, v, k_pad, v_pad, b, wi, wj, h, ds, ks, vs);
  fill_key_info(p, wi, wj, krel);
  __syncthreads();

  const float scale = static_cast<float>(p.scale);
  for (int64_t i = threadIdx.x; i < p.L; i += blockDim.x) {
    const Cell qc = cell_of(p, wi, wj, i);
    if (!qc.inside) continue;  // a padded query's output is cropped away
    float qr[DMAX], acc[DMAX];
    const scalar_t* qp = q + offset4(p.sq, b, qc.y, qc.x, c0);
#pragma unroll
    for (int c = 0; c < DMAX; ++c) {
      qr[c] = c < d ? static_cast<float>(qp[c * p.sq[3]]) * scale : 0.f;
      acc[c] = 0;
    }
    float m = -INFINITY, l = 0;
    for (int j = 0; j < static_cast<int>(p.L); ++j) {
      const int kr_rel = krel[j];
      if (kr_rel < 0) continue;
      const float* kr = ks + j * ds;
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // four independent chains for ILP
#pragma unroll
      for (int c = 0; c < DMAX; c += 4)
        if (c < d) {
          const float4 k4 = load4(kr + c);
          s0 += qr[c] * k4.x;
          s1 += qr[c + 1] * k4.y;
          s2 += qr[c + 2] * k4.z;
          s3 += qr[c + 3] * k4.w;
        }
      float s = (s0 + s1) + (s2 + s3);
      if (bias != nullptr)
        s += static_cast<float>(bias[(qc.rel - kr_rel + centre) * p.bias_s0 + h * p.bias_s1]);
      if (s > m) {  // online softmax: rescale what was summed so far
        const float f = expf(m - s);
        l *= f;
#pragma unroll
        for (int c = 0; c < DMAX; ++c) acc[c] *= f;
        m = s;
      }
      const float e = expf(s - m);
      l += e;
      const float* vr = vs + j * ds;
#pragma unroll
      for (int c = 0; c < DMAX; c += 4)
        if (c < d) {
          const float4 v4 = load4(vr + c);
          acc[c] += e * v4.x;
          acc[c + 1] += e * v4.y;
          acc[c + 2] += e * v4.z;
          acc[c + 3] += e * v4.w;
        }
    }
    const float inv = 1.f / l;
    scalar_t* op = out + offset4(p.so, b, qc.y, qc.x, c0);
#pragma unroll
    for (int c = 0; c < DMAX; ++c)
      if (c < d) op[c * p.so[3]] = static_cast<scalar_t>(acc[c] * inv);
    lse[((b * p.heads + h) * p.H + qc.y) * p.W + qc.x] = m + logf(l);
  }
}

template <typename scalar_t, int DMAX>
__global__ void window_attention_backward_kernel(
    Params p, const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ q,
    const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
    const scalar_t* __restrict__ out, const float* __restrict__ lse,
    const scalar_t* __restrict__ k_pad, const scalar_t* __restrict__ v_pad,
    const scalar_t* __restrict__ bias, scalar_t* __restrict__ grad_q,
    scalar_t* __restrict__ grad_k, scalar_t* __restrict__ grad_v,
    float* __restrict__ grad_k_pad, float* __restrict__ grad_v_pad, float* __restrict__ grad_bias) {
  extern __shared__ float4 smem4[];
  const int64_t L = p.L, d = p.d, ds = padded_dim(d);
  float* ks = reinterpret_cast<float*>(smem4);  // [L, ds] keys
  float* vs = ks + L * ds;                      // [L, ds] values
  float* qs = vs + L * ds;                      // [L, ds] queries times scale (0 for padding)
  float* gos = qs + L * ds;                     // [L, ds] output gradients (0 for padding)
  float* ps = gos + L * ds;                     // [L, L] attention weights P
  float* dss = ps + L * L;                      // [L, L] logit gradients dS
  float* bias_acc = dss + L * L;                // [table] bias-gradient partial sums
  float* pad_acc = bias_acc + p.table;          // [2, d] k_pad / v_pad gradient partial sums
  int* krel = reinterpret_cast<int*>(pad_acc + 2 * d);  // [L] see fill_key_info

  const int64_t task = blockIdx.x;
  const int64_t h = task % p.heads, window = task / p.heads;
  const int64_t wj = window % p.nw, wi = (window / p.nw) % p.nh, b = window / (p.nw * p.nh);
  const int64_t c0 = h * d;
  const int centre = static_cast<int>((p.wh - 1) * (2 * p.ww - 1) + p.ww - 1);
  const float scale = static_cast<float>(p.scale);

  load_keys_values(p, k, v, k_pad, v_pad, b, wi, wj, h, ds, ks, vs);
  for (int64_t idx = threadIdx.x; idx < L * ds; idx += blockDim.x) {
    const int64_t i = idx / ds, c = idx % ds;
    const Cell qc = cell_of(p, wi, wj, i);
    const bool real = qc.inside && c < d;
    qs[idx] = real ? static_cast<float>(q[offset4(p.sq, b, qc.y, qc.x, c0 + c)]) * scale : 0.f;
    gos[idx] = real ? static_cast<float>(grad_out[offset4(p.sgo, b, qc.y, qc.x, c0 + c)]) : 0.f;
  }
  if (bias != nullptr)
    for (int64_t idx = threadIdx.x; idx < p.table; idx += blockDim.x) bias_acc[idx] = 0;
  for (int64_t idx = threadIdx.x; idx < 2 * d; idx += blockDim.x) pad_acc[idx] = 0;
  fill_key_info(p, wi, wj, krel);
  __syncthreads();

  // Query-owned part: P, dS and dQ for every query of the tile.
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) {
    const Cell qc = cell_of(p, wi, wj, i);
    float* prow = ps + i * L;
    float* dsrow = dss + i * L;
    if (!qc.inside) {
      for (int64_t j = 0; j < L; ++j) prow[j] = dsrow[j] = 0;
      continue;
    }
    float qr[DMAX], gor[DMAX], gq[DMAX];
    const scalar_t* op = out + offset4(p.so, b, qc.y, qc.x, c0);
    float delta = 0;  // D_i = dO_i . O_i
#pragma unroll
    for (int c = 0; c < DMAX; ++c) {
      qr[c] = c < ds ? qs[i * ds + c] : 0.f;
      gor[c] = c < ds ? gos[i * ds + c] : 0.f;
      if (c < d) delta += gor[c] * static_cast<float>(op[c * p.so[3]]);
      gq[c] = 0;
    }
    const float l = lse[((b * p.heads + h) * p.H + qc.y) * p.W + qc.x];
    for (int j = 0; j < static_cast<int>(L); ++j) {
      const int kr_rel = krel[j];
      if (kr_rel < 0) {
        prow[j] = dsrow[j] = 0;
        continue;
      }
      const float* kr = ks + j * ds;
      const float* vr = vs + j * ds;
      float s0 = 0, s1 = 0, dp0 = 0, dp1 = 0;  // independent chains for ILP
#pragma unroll
      for (int c = 0; c < DMAX; c += 4)
        if (c < d) {
          const float4 k4 = load4(kr + c), v4 = load4(vr + c);
          s0 += qr[c] * k4.x + qr[c + 1] * k4.y;
          s1 += qr[c + 2] * k4.z + qr[c + 3] * k4.w;
          dp0 += gor[c] * v4.x + gor[c + 1] * v4.y;
          dp1 += gor[c + 2] * v4.z + gor[c + 3] * v4.w;
        }
      float s = s0 + s1;
      const float dp = dp0 + dp1;
      const int row = qc.rel - kr_rel + centre;
      if (bias != nullptr) s += static_cast<float>(bias[row * p.bias_s0 + h * p.bias_s1]);
      const float pr = expf(s - l);
      const float dsv = pr * (dp - delta);
      prow[j] = pr;
      dsrow[j] = dsv;
      if (bias != nullptr) atomicAdd(bias_acc + row, dsv);
#pragma unroll
      for (int c = 0; c < DMAX; c += 4)
        if (c < d) {
          const float4 k4 = load4(kr + c);
          gq[c] += dsv * k4.x;
          gq[c + 1] += dsv * k4.y;
          gq[c + 2] += dsv * k4.z;
          gq[c + 3] += dsv * k4.w;
        }
    }
    scalar_t* gqp = grad_q + ((b * p.H + qc.y) * p.W + qc.x) * p.C + c0;  // contiguous
#pragma unroll
    for (int c = 0; c < DMAX; ++c)
      if (c < d) gqp[c] = static_cast<scalar_t>(gq[c] * scale);
  }
  __syncthreads();

  // Key-owned part: dK_j = sum_i dS_ij (scale q_i), dV_j = sum_i P_ij dO_i.
  for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
    const Cell kc = cell_of(p, wi, wj, j);
    if (!p.zeros_mode && !kc.inside) continue;
    float gk[DMAX], gv[DMAX];
#pragma unroll
    for (int c = 0; c < DMAX; ++c) gk[c] = gv[c] = 0;
    for (int64_t i = 0; i < L; ++i) {
      const float dsv = dss[i * L + j], pr = ps[i * L + j];
      const float* qr = qs + i * ds;
      const float* gor = gos + i * ds;
#pragma unroll
      for (int c = 0; c < DMAX; c += 4)
        if (c < d) {
          const float4 q4 = load4(qr + c), g4 = load4(gor + c);
          gk[c] += dsv * q4.x;
          gk[c + 1] += dsv * q4.y;
          gk[c + 2] += dsv * q4.z;
          gk[c + 3] += dsv * q4.w;
          gv[c] += pr * g4.x;
          gv[c + 1] += pr * g4.y;
          gv[c + 2] += pr * g4.z;
          gv[c + 3] += pr * g4.w;
        }
    }
    if (kc.inside) {
      const int64_t base = ((b * p.H + kc.y) * p.W + kc.x) * p.C + c0;  // contiguous
#pragma unroll
      for (int c = 0; c < DMAX; ++c)
        if (c < d) {
          grad_k[base + c] = static_cast<scalar_t>(gk[c]);
          grad_v[base + c] = static_cast<scalar_t>(gv[c]);
        }
    } else {
#pragma unroll
      for (int c = 0; c < DMAX; ++c)
        if (c < d) {
          atomicAdd(pad_acc + c, gk[c]);
          atomicAdd(pad_acc + d + c, gv[c]);
        }
    }
  }
  __syncthreads();

  // One global atomic per reduction entry and block.
  if (p.zeros_mode)
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
      atomicAdd(grad_k_pad + c0 + c, pad_acc[c]);
      atomicAdd(grad_v_pad + c0 + c, pad_acc[d + c]);
    }
  if (bias != nullptr)
    for (int64_t r = threadIdx.x; r < p.table; r += blockDim.x)
      atomicAdd(grad_bias + r * p.heads + h, bias_acc[r]);
}

Params make_params(const WindowGeometry& g, double scale, const at::Tensor& q, const at::Tensor& k,
                   const at::Tensor& v, const at::Tensor& out, const at::Tensor* grad_out,
                   const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
                   const c10::optional<at::Tensor>& rel_bias) {
  Params p;
  p.B = g.B;
  p.H = g.H;
  p.W = g.W;
  p.C = g.C;
  p.heads = g.heads;
  p.d = g.d;
  p.wh = g.wh;
  p.ww = g.ww;
  p.top = g.top;
  p.left = g.left;
  p.nh = g.nh;
  p.nw = g.nw;
  p.L = g.L;
  p.table = g.table;
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

int threads_for(int64_t L) {
  const int64_t rounded = (L + 31) / 32 * 32;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(rounded, 32), 256));
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
      const size_t smem = sizeof(float) * 2 * g.L * padded_dim(g.d) + sizeof(int) * g.L;
      set_shared_memory(kernel, smem, "forward");
      kernel<<<static_cast<unsigned>(blocks), threads_for(g.L), smem, stream>>>(
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
        const size_t smem =
            sizeof(float) * (4 * g.L * padded_dim(g.d) + 2 * g.L * g.L + g.table + 2 * g.d) +
            sizeof(int) * g.L;
        set_shared_memory(kernel, smem, "backward");
        kernel<<<static_cast<unsigned>(blocks), threads_for(g.L), smem, stream>>>(
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
