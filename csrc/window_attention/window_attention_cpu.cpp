// Local-window multi-head attention on the CPU: forward (out + per-query log-sum-exp) and
// backward, one task per (image, window, head), run in parallel.
//
// Each task gathers its window's keys and values straight from the image layout into small
// fp32 (fp64 for double) scratch tiles -- padded positions read k_pad / v_pad in "zeros" mode and
// are left out in "mask" mode -- and computes only the queries that lie inside the image (the
// outputs of padded queries would be cropped away). The backward recomputes the attention
// weights from the saved log-sum-exp. Gradients of q, k, v are written per window (windows do
// not overlap); those of k_pad, v_pad and the bias table are reductions, summed into per-thread
// partial buffers and added up at the end (no races).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <utility>
#include <vector>

#include "registration.h"
#include "window_attention/window_attention.h"

namespace higherpose {
namespace {

// The arithmetic of a (window, head) tile is a few small matrix products and a row-wise exp.
// The float versions carry attributes that let GCC vectorise them (the build uses -O2) and pick
// an AVX2/FMA clone at load time where the CPU has it; float64 (gradcheck) uses plain loops.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#if __GNUC__ >= 12
// x86-64-v3 = AVX2 + FMA; the resolver tests CPU features (not the CPU model, as "arch=haswell").
#define HP_HOT __attribute__((optimize("O3", "no-trapping-math"), target_clones("arch=x86-64-v3", "default")))
#else
#define HP_HOT __attribute__((optimize("O3", "no-trapping-math"), target_clones("avx2", "default")))
#endif
#else
#define HP_HOT
#endif

// C[M, N] (+)= A[M, K] @ B[K, N] (row-major, leading dimensions lda, ldb, ldc; C is overwritten
// unless `accumulate`). The float version
// needs N % 16 == 0 (the tiles pad their rows to 16) and keeps a 4 x 16 block of C in vector
// registers while it runs over K. The float and double versions are spelled out separately so
// that the float loops are compiled inside the attributed (vectorised, cloned) function.
constexpr int64_t kColumnBlock = 16;
#if defined(__GNUC__)
// 8 floats as one GCC vector (AVX in the haswell clone, two SSE registers otherwise).
typedef float float8 __attribute__((vector_size(32)));
inline float8 load8(const float* p) {
  float8 x;
  std::memcpy(&x, p, sizeof(x));
  return x;
}
inline void store8(float* p, float8 x) { std::memcpy(p, &x, sizeof(x)); }

HP_HOT void matmul_acc(int64_t M, int64_t N, int64_t K, const float* __restrict A, int64_t lda,
                       const float* __restrict B, int64_t ldb, float* __restrict C, int64_t ldc,
                       bool accumulate) {
  const float8 zero = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= M; i += 4) {
    for (int64_t j0 = 0; j0 < N; j0 += kColumnBlock) {
      float8 acc[4][2];
      for (int r = 0; r < 4; ++r) {
        acc[r][0] = accumulate ? load8(C + (i + r) * ldc + j0) : zero;
        acc[r][1] = accumulate ? load8(C + (i + r) * ldc + j0 + 8) : zero;
      }
      for (int64_t kk = 0; kk < K; ++kk) {
        const float8 b0 = load8(B + kk * ldb + j0), b1 = load8(B + kk * ldb + j0 + 8);
        for (int r = 0; r < 4; ++r) {
          const float a = A[(i + r) * lda + kk];
          acc[r][0] += a * b0;
          acc[r][1] += a * b1;
        }
      }
      for (int r = 0; r < 4; ++r) {
        store8(C + (i + r) * ldc + j0, acc[r][0]);
        store8(C + (i + r) * ldc + j0 + 8, acc[r][1]);
      }
    }
  }
  for (; i < M; ++i) {
    for (int64_t j0 = 0; j0 < N; j0 += kColumnBlock) {
      float8 acc0 = accumulate ? load8(C + i * ldc + j0) : zero;
      float8 acc1 = accumulate ? load8(C + i * ldc + j0 + 8) : zero;
      for (int64_t kk = 0; kk < K; ++kk) {
        const float a = A[i * lda + kk];
        acc0 += a * load8(B + kk * ldb + j0);
        acc1 += a * load8(B + kk * ldb + j0 + 8);
      }
      store8(C + i * ldc + j0, acc0);
      store8(C + i * ldc + j0 + 8, acc1);
    }
  }
}
#else
void matmul_acc(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  if (!accumulate)
    for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, 0.0f);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t kk = 0; kk < K; ++kk)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] += A[i * lda + kk] * B[kk * ldb + j];
}
#endif
void matmul_acc(int64_t M, int64_t N, int64_t K, const double* A, int64_t lda, const double* B,
                int64_t ldb, double* C, int64_t ldc, bool accumulate) {
  if (!accumulate)
    for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t kk = 0; kk < K; ++kk)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] += A[i * lda + kk] * B[kk * ldb + j];
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Whether the first n columns of the rows x n tile s (row stride ld) hold a NaN or an infinity
// (exponent bits all ones). A tile that does takes the exact exp below, so that special values
// reach the output as they do in the reference, while the vectorised exp stays free of
// per-element special cases. Checked once per tile, as an integer OR over the bits (vectorises).
HP_HOT bool has_nan_or_inf(int64_t rows, int64_t n, int64_t ld, const float* __restrict s) {
  uint32_t any = 0;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      uint32_t bits;
      std::memcpy(&bits, s + i * ld + j, sizeof(bits));
      any |= (bits & 0x7f800000u) == 0x7f800000u;
    }
  }
  return any != 0;
}
// float64 always takes std::exp.
bool has_nan_or_inf(int64_t /*rows*/, int64_t /*n*/, int64_t /*ld*/, const double* /*s*/) { return false; }

// s[0:n] = exp(s[0:n] - shift); returns the sum. exp in plain arithmetic that vectorises:
// exp(x) = 2^m * poly(r), x = m ln2 + r, |r| <= ln2 / 2, relative error ~2e-7 (float round-off
// level); x is clamped to [-87, 88] (exp(-87) ~ 1e-38 stands for anything smaller). `exact`
// (a row with NaN or infinities, or a non-finite shift) uses std::exp instead: exp(-inf) = 0
// exactly (0 * inf = NaN as in the reference, not a tiny weight times inf), NaN stays NaN.
// Written inline in the loop (a helper would not be inlined into the attributed function).
HP_HOT float exp_shifted(int64_t n, float shift, float* __restrict s, bool exact) {
  if (exact || !std::isfinite(shift)) {
    float sum = 0;
    for (int64_t j = 0; j < n; ++j) {
      s[j] = std::exp(s[j] - shift);
      sum += s[j];
    }
    return sum;
  }
  for (int64_t j = 0; j < n; ++j) {
    float x = s[j] - shift;
    x = x > -87.0f ? x : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    // Round to nearest by adding and removing 1.5 * 2^23 (vectorises, unlike nearbyint).
    const float m = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (x - m * 0.693145751953125f) - m * 1.428606765330187e-06f;
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(m) + 127) << 23;
    float two_m;
    std::memcpy(&two_m, &bits, sizeof(float));
    s[j] = p * two_m;
  }
  float sum = 0;  // a separate loop, so that the exp loop has no ordered reduction
  for (int64_t j = 0; j < n; ++j) sum += s[j];
  return sum;
}
double exp_shifted(int64_t n, double shift, double* s, bool /*exact: always*/) {
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - shift);
    sum += s[j];
  }
  return sum;
}

// Strides (in elements) of a [B, H, W, C] tensor and the address of (b, y, x, channel c0).
struct Strides4 {
  int64_t b, y, x, c;
  explicit Strides4(const at::Tensor& t)
      : b(t.stride(0)), y(t.stride(1)), x(t.stride(2)), c(t.stride(3)) {}
  int64_t at(int64_t bb, int64_t yy, int64_t xx, int64_t cc) const {
    return bb * b + yy * y + xx * x + cc * c;
  }
};

// Positions of one window: which window cells are inside the image, and where.
struct WindowCells {
  std::vector<int64_t> y, x;     // image row / column of the listed positions (-1: padding)
  std::vector<int64_t> rel;      // r * (2ww - 1) + c of the cell (r, c): bias row = rel_q - rel_k + centre

  // Lists the cells inside the image (real_only) or all cells (padding marked with y = -1).
  void build(const WindowGeometry& g, int64_t wi, int64_t wj, bool real_only) {
    y.clear();
    x.clear();
    rel.clear();
    for (int64_t r = 0; r < g.wh; ++r) {
      const int64_t yy = wi * g.wh + r - g.top;
      for (int64_t c = 0; c < g.ww; ++c) {
        const int64_t xx = wj * g.ww + c - g.left;
        const bool inside = yy >= 0 && yy < g.H && xx >= 0 && xx < g.W;
        if (!inside && real_only) continue;
        y.push_back(inside ? yy : -1);
        x.push_back(inside ? xx : -1);
        rel.push_back(r * (2 * g.ww - 1) + c);
      }
    }
  }
  int64_t size() const { return static_cast<int64_t>(y.size()); }
  bool is_pad(int64_t j) const { return y[j] < 0; }
};

// Row of the bias table of (query dy, dx) = (0, 0) (Swin's relative position index):
// row(query p, key s) = rel[p] - rel[s] + bias_centre.
inline int64_t bias_centre(const WindowGeometry& g) { return (g.wh - 1) * (2 * g.ww - 1) + g.ww - 1; }

// Everything a task reads, typed.
template <typename scalar_t>
struct Inputs {
  const scalar_t *q, *k, *v, *k_pad, *v_pad, *bias;
  Strides4 sq, sk, sv;
  int64_t k_pad_stride, v_pad_stride, bias_s0, bias_s1;
};

template <typename scalar_t>
Inputs<scalar_t> make_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const c10::optional<at::Tensor>& k_pad,
                             const c10::optional<at::Tensor>& v_pad,
                             const c10::optional<at::Tensor>& rel_bias) {
  return Inputs<scalar_t>{q.const_data_ptr<scalar_t>(),
                          k.const_data_ptr<scalar_t>(),
                          v.const_data_ptr<scalar_t>(),
                          has(k_pad) ? k_pad->const_data_ptr<scalar_t>() : nullptr,
                          has(v_pad) ? v_pad->const_data_ptr<scalar_t>() : nullptr,
                          has(rel_bias) ? rel_bias->const_data_ptr<scalar_t>() : nullptr,
                          Strides4(q), Strides4(k), Strides4(v),
                          has(k_pad) ? k_pad->stride(0) : 0,
                          has(v_pad) ? v_pad->stride(0) : 0,
                          has(rel_bias) ? rel_bias->stride(0) : 0,
                          has(rel_bias) ? rel_bias->stride(1) : 0};
}

// Scratch tiles of one (window, head) task, reused across the tasks of a thread.
// Lq = queries inside the image, Lk = keys (all cells in "zeros" mode, real ones in "mask").
// Rows are padded with zeros to dp = round_up(d, 16) and kp = round_up(Lk, 16) columns so the
// matrix products run on whole 16-wide blocks.
template <typename acc_t>
struct Tiles {
  int64_t dp = 0, kp = 0;
  std::vector<acc_t> q;      // [Lq, dp] queries, times `scale`
  std::vector<acc_t> kt;     // [d, kp] keys, transposed
  std::vector<acc_t> k;      // [Lk, dp] keys (backward)
  std::vector<acc_t> v;      // [Lk, dp] values
  std::vector<acc_t> vt;     // [d, kp] values, transposed (backward)
  std::vector<acc_t> s;      // [Lq, kp] logits, then probabilities
  std::vector<acc_t> o;      // [Lq, dp] outputs (forward)
  std::vector<acc_t> go;     // [Lq, dp] output gradients (backward)
  std::vector<acc_t> ds;     // [Lq, kp] probability gradients, then logit gradients
  std::vector<acc_t> t;      // [Lk, Lq] a transposed [Lq, Lk] tile
  std::vector<acc_t> gq;     // [Lq, dp] query gradients
  std::vector<acc_t> gk;     // [Lk, dp] key gradients
  std::vector<acc_t> gv;     // [Lk, dp] value gradients
  std::vector<acc_t> delta;  // [Lq] forward: 1 / softmax sums; backward: dO_i . O_i
};

// Loads the keys and values of the listed cells for head h (pad cells read k_pad / v_pad, or 0).
template <typename scalar_t, typename acc_t>
void gather_keys_values(const Inputs<scalar_t>& in, const WindowGeometry& g,
                        const WindowCells& keys, int64_t b, int64_t h, bool backward,
                        Tiles<acc_t>& t) {
  const int64_t Lk = keys.size(), d = g.d, c0 = h * d;
  t.dp = round_up(d, kColumnBlock);
  t.kp = round_up(Lk, kColumnBlock);
  const int64_t dp = t.dp, kp = t.kp;
  t.kt.resize(d * kp);
  t.k.resize(Lk * dp);
  t.v.resize(Lk * dp);
  if (backward) t.vt.resize(d * kp);
  for (int64_t c = 0; c < d; ++c) {  // zero padding columns
    std::fill(t.kt.begin() + c * kp + Lk, t.kt.begin() + (c + 1) * kp, acc_t(0));
    if (backward) std::fill(t.vt.begin() + c * kp + Lk, t.vt.begin() + (c + 1) * kp, acc_t(0));
  }
  for (int64_t j = 0; j < Lk; ++j) {
    acc_t* krow = t.k.data() + j * dp;
    acc_t* vrow = t.v.data() + j * dp;
    std::fill(krow + d, krow + dp, acc_t(0));
    std::fill(vrow + d, vrow + dp, acc_t(0));
    if (keys.is_pad(j)) {
      for (int64_t c = 0; c < d; ++c) {
        krow[c] = in.k_pad ? static_cast<acc_t>(in.k_pad[(c0 + c) * in.k_pad_stride]) : acc_t(0);
        vrow[c] = in.v_pad ? static_cast<acc_t>(in.v_pad[(c0 + c) * in.v_pad_stride]) : acc_t(0);
      }
    } else {
      const scalar_t* kptr = in.k + in.sk.at(b, keys.y[j], keys.x[j], c0);
      const scalar_t* vptr = in.v + in.sv.at(b, keys.y[j], keys.x[j], c0);
      for (int64_t c = 0; c < d; ++c) {
        krow[c] = static_cast<acc_t>(kptr[c * in.sk.c]);
        vrow[c] = static_cast<acc_t>(vptr[c * in.sv.c]);
      }
    }
    for (int64_t c = 0; c < d; ++c) t.kt[c * kp + j] = krow[c];
    if (backward)
      for (int64_t c = 0; c < d; ++c) t.vt[c * kp + j] = vrow[c];
  }
}

// Loads the queries of the listed cells for head h, times `scale`: t.q [Lq, dp].
template <typename scalar_t, typename acc_t>
void gather_queries(const Inputs<scalar_t>& in, const WindowGeometry& g, const WindowCells& queries,
                    int64_t b, int64_t h, acc_t scale, Tiles<acc_t>& t) {
  const int64_t Lq = queries.size(), d = g.d, dp = t.dp;
  t.q.resize(Lq * dp);
  for (int64_t i = 0; i < Lq; ++i) {
    std::fill(t.q.begin() + i * dp + d, t.q.begin() + (i + 1) * dp, acc_t(0));
    const scalar_t* qptr = in.q + in.sq.at(b, queries.y[i], queries.x[i], h * d);
    for (int64_t c = 0; c < d; ++c) t.q[i * dp + c] = static_cast<acc_t>(qptr[c * in.sq.c]) * scale;
  }
}

// t.s [Lq, kp] = bias + t.q @ t.kt (padded columns 0).
template <typename scalar_t, typename acc_t>
void logits_tile(const Inputs<scalar_t>& in, const WindowGeometry& g, const WindowCells& queries,
                 const WindowCells& keys, int64_t h, Tiles<acc_t>& t) {
  const int64_t Lq = queries.size(), Lk = keys.size(), kp = t.kp;
  t.s.resize(Lq * kp);
  if (in.bias) {
    const scalar_t* bias = in.bias + h * in.bias_s1;
    const int64_t centre = bias_centre(g);
    for (int64_t i = 0; i < Lq; ++i) {
      const int64_t row = queries.rel[i] + centre;
      for (int64_t j = 0; j < Lk; ++j)
        t.s[i * kp + j] = static_cast<acc_t>(bias[(row - keys.rel[j]) * in.bias_s0]);
      std::fill(t.s.begin() + i * kp + Lk, t.s.begin() + (i + 1) * kp, acc_t(0));
    }
  }
  matmul_acc(Lq, kp, g.d, t.q.data(), t.dp, t.kt.data(), kp, t.s.data(), kp, /*accumulate=*/in.bias != nullptr);
}

// dst [cols, rows] = the first `cols` columns of src [rows, ld], transposed.
template <typename acc_t>
void transpose(int64_t rows, int64_t cols, const acc_t* src, int64_t ld, std::vector<acc_t>& dst) {
  dst.resize(rows * cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) dst[j * rows + i] = src[i * ld + j];
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
                    const c10::optional<at::Tensor>& rel_bias, double scale,
                    const WindowGeometry& g, at::Tensor& out, at::Tensor& lse) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto in = make_inputs<scalar_t>(q, k, v, k_pad, v_pad, rel_bias);
  scalar_t* out_p = out.mutable_data_ptr<scalar_t>();
  acc_t* lse_p = lse.mutable_data_ptr<acc_t>();
  const Strides4 so(out);
  const int64_t d = g.d;
  const int64_t tasks = g.B * g.nh * g.nw * g.heads;
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    Tiles<acc_t> t;
    WindowCells queries, keys;
    int64_t last_window = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task % g.heads, window = task / g.heads;
      const int64_t wj = window % g.nw, wi = (window / g.nw) % g.nh, b = window / (g.nw * g.nh);
      if (window != last_window) {
        queries.build(g, wi, wj, /*real_only=*/true);
        keys.build(g, wi, wj, /*real_only=*/!g.zeros_mode);
        last_window = window;
      }
      const int64_t Lq = queries.size(), Lk = keys.size();
      gather_keys_values(in, g, keys, b, h, /*backward=*/false, t);
      gather_queries(in, g, queries, b, h, static_cast<acc_t>(scale), t);
      logits_tile(in, g, queries, keys, h, t);
      const int64_t dp = t.dp, kp = t.kp;
      t.o.resize(Lq * dp);
      t.delta.resize(Lq);  // here: 1 / softmax sums
      const bool special = has_nan_or_inf(Lq, Lk, kp, t.s.data());
      for (int64_t i = 0; i < Lq; ++i) {
        acc_t* s = t.s.data() + i * kp;
        const acc_t m = *std::max_element(s, s + Lk);
        const acc_t sum = exp_shifted(Lk, m, s, special);
        t.delta[i] = acc_t(1) / sum;
        lse_p[((b * g.heads + h) * g.H + queries.y[i]) * g.W + queries.x[i]] = m + std::log(sum);
      }
      matmul_acc(Lq, dp, Lk, t.s.data(), kp, t.v.data(), dp, t.o.data(), dp, false);
      for (int64_t i = 0; i < Lq; ++i) {
        scalar_t* op = out_p + so.at(b, queries.y[i], queries.x[i], h * d);
        const acc_t inv = t.delta[i];
        for (int64_t c = 0; c < d; ++c) op[c * so.c] = static_cast<scalar_t>(t.o[i * dp + c] * inv);
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k,
                     const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                     const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
                     const c10::optional<at::Tensor>& rel_bias, double scale,
                     const WindowGeometry& g, at::Tensor& grad_q, at::Tensor& grad_k,
                     at::Tensor& grad_v, at::Tensor& grad_k_pad, at::Tensor& grad_v_pad,
                     at::Tensor& grad_bias) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto in = make_inputs<scalar_t>(q, k, v, k_pad, v_pad, rel_bias);
  const scalar_t* go_p = grad_out.const_data_ptr<scalar_t>();
  const scalar_t* out_p = out.const_data_ptr<scalar_t>();
  const acc_t* lse_p = lse.const_data_ptr<acc_t>();
  const Strides4 sgo(grad_out), sout(out), sgq(grad_q), sgk(grad_k), sgv(grad_v);
  const int64_t lse_s[4] = {lse.stride(0), lse.stride(1), lse.stride(2), lse.stride(3)};
  scalar_t* gq_p = grad_q.mutable_data_ptr<scalar_t>();
  scalar_t* gk_p = grad_k.mutable_data_ptr<scalar_t>();
  scalar_t* gv_p = grad_v.mutable_data_ptr<scalar_t>();
  const int64_t d = g.d;
  const bool with_bias = in.bias != nullptr;
  const acc_t sc = static_cast<acc_t>(scale);

  // Partial sums of the reductions, one per parallel chunk, keyed by the chunk's first task so
  // that the final sum has a fixed order: [k_pad C | v_pad C | bias table x heads].
  const int64_t red = 2 * g.C + (with_bias ? g.table * g.heads : 0);
  std::mutex partial_mutex;
  std::vector<std::pair<int64_t, std::vector<acc_t>>> partials;

  const int64_t tasks = g.B * g.nh * g.nw * g.heads;
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> partial(red, acc_t(0));
    acc_t* part = partial.data();
    Tiles<acc_t> t;
    WindowCells queries, keys;
    int64_t last_window = -1;
    const int64_t centre = bias_centre(g);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task % g.heads, window = task / g.heads;
      const int64_t wj = window % g.nw, wi = (window / g.nw) % g.nh, b = window / (g.nw * g.nh);
      if (window != last_window) {
        queries.build(g, wi, wj, /*real_only=*/true);
        keys.build(g, wi, wj, /*real_only=*/!g.zeros_mode);
        last_window = window;
      }
      const int64_t Lq = queries.size(), Lk = keys.size(), c0 = h * d;
      gather_keys_values(in, g, keys, b, h, /*backward=*/true, t);
      gather_queries(in, g, queries, b, h, sc, t);
      const int64_t dp = t.dp, kp = t.kp;
      // Output gradients and D_i = dO_i . O_i.
      t.go.resize(Lq * dp);
      t.delta.resize(Lq);
      for (int64_t i = 0; i < Lq; ++i) {
        std::fill(t.go.begin() + i * dp + d, t.go.begin() + (i + 1) * dp, acc_t(0));
        const scalar_t* gop = go_p + sgo.at(b, queries.y[i], queries.x[i], c0);
        const scalar_t* op = out_p + sout.at(b, queries.y[i], queries.x[i], c0);
        acc_t delta = 0;
        for (int64_t c = 0; c < d; ++c) {
          t.go[i * dp + c] = static_cast<acc_t>(gop[c * sgo.c]);
          delta += t.go[i * dp + c] * static_cast<acc_t>(op[c * sout.c]);
        }
        t.delta[i] = delta;
      }
      // P = exp(logits - lse), recomputed.
      logits_tile(in, g, queries, keys, h, t);
      const bool special = has_nan_or_inf(Lq, Lk, kp, t.s.data());
      for (int64_t i = 0; i < Lq; ++i) {
        const acc_t l = lse_p[b * lse_s[0] + h * lse_s[1] + queries.y[i] * lse_s[2] + queries.x[i] * lse_s[3]];
        exp_shifted(Lk, l, t.s.data() + i * kp, special);
      }
      // dP = dO @ V^T, then dS = P * (dP - D) (scaled by `scale` for dQ and dK below).
      t.ds.resize(Lq * kp);
      matmul_acc(Lq, kp, d, t.go.data(), dp, t.vt.data(), kp, t.ds.data(), kp, false);
      for (int64_t i = 0; i < Lq; ++i)
        for (int64_t j = 0; j < Lk; ++j) {
          const int64_t ij = i * kp + j;
          t.ds[ij] = t.s[ij] * (t.ds[ij] - t.delta[i]);
        }
      if (with_bias) {
        acc_t* gb = part + 2 * g.C;
        for (int64_t i = 0; i < Lq; ++i) {
          const int64_t row = queries.rel[i] + centre;
          for (int64_t j = 0; j < Lk; ++j) gb[(row - keys.rel[j]) * g.heads + h] += t.ds[i * kp + j];
        }
      }
      // dQ = scale dS @ K (t.q holds scale * q, so dK = dS^T @ (scale q) needs no extra factor).
      t.gq.resize(Lq * dp);
      matmul_acc(Lq, dp, Lk, t.ds.data(), kp, t.k.data(), dp, t.gq.data(), dp, false);
      t.gk.resize(Lk * dp);
      transpose(Lq, Lk, t.ds.data(), kp, t.t);
      matmul_acc(Lk, dp, Lq, t.t.data(), Lq, t.q.data(), dp, t.gk.data(), dp, false);
      t.gv.resize(Lk * dp);
      transpose(Lq, Lk, t.s.data(), kp, t.t);
      matmul_acc(Lk, dp, Lq, t.t.data(), Lq, t.go.data(), dp, t.gv.data(), dp, false);
      for (int64_t i = 0; i < Lq; ++i) {
        scalar_t* gqp = gq_p + sgq.at(b, queries.y[i], queries.x[i], c0);
        for (int64_t c = 0; c < d; ++c) gqp[c * sgq.c] = static_cast<scalar_t>(t.gq[i * dp + c] * sc);
      }
      // Keys inside the image: write (every position is in exactly one window); pad keys: sum.
      for (int64_t j = 0; j < Lk; ++j) {
        const acc_t* gk = t.gk.data() + j * dp;
        const acc_t* gv = t.gv.data() + j * dp;
        if (keys.is_pad(j)) {
          for (int64_t c = 0; c < d; ++c) {
            part[c0 + c] += gk[c];
            part[g.C + c0 + c] += gv[c];
          }
        } else {
          scalar_t* gkp = gk_p + sgk.at(b, keys.y[j], keys.x[j], c0);
          scalar_t* gvp = gv_p + sgv.at(b, keys.y[j], keys.x[j], c0);
          for (int64_t c = 0; c < d; ++c) {
            gkp[c * sgk.c] = static_cast<scalar_t>(gk[c]);
            gvp[c * sgv.c] = static_cast<scalar_t>(gv[c]);
          }
        }
      }
    }
    std::lock_guard<std::mutex> lock(partial_mutex);
    partials.emplace_back(begin, std::move(partial));
  });

  std::sort(partials.begin(), partials.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<acc_t> total(red, acc_t(0));
  for (const auto& chunk : partials)
    for (int64_t i = 0; i < red; ++i) total[i] += chunk.second[i];
  scalar_t* gkpad = grad_k_pad.mutable_data_ptr<scalar_t>();
  scalar_t* gvpad = grad_v_pad.mutable_data_ptr<scalar_t>();
  for (int64_t c = 0; c < g.C; ++c) {
    gkpad[c] = static_cast<scalar_t>(total[c]);
    gvpad[c] = static_cast<scalar_t>(total[g.C + c]);
  }
  if (with_bias) {
    scalar_t* gb = grad_bias.mutable_data_ptr<scalar_t>();
    for (int64_t i = 0; i < g.table * g.heads; ++i) gb[i] = static_cast<scalar_t>(total[2 * g.C + i]);
  }
}

void check_cpu(const at::Tensor& q) {
  TORCH_CHECK(q.device().is_cpu(), "window_attention: the CPU kernel got q on ", q.device());
}

std::tuple<at::Tensor, at::Tensor> window_attention_forward_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::IntArrayRef window,
    int64_t num_heads, double scale, at::IntArrayRef offset, c10::string_view pad_mode,
    const c10::optional<at::Tensor>& k_pad, const c10::optional<at::Tensor>& v_pad,
    const c10::optional<at::Tensor>& rel_bias) {
  const WindowGeometry g =
      check_window_attention_args(q, k, v, window, num_heads, scale, offset, pad_mode, k_pad, v_pad, rel_bias);
  check_cpu(q);
  auto out = at::empty(q.sizes(), q.options().memory_format(at::MemoryFormat::Contiguous));
  auto lse = at::empty({g.B, g.heads, g.H, g.W}, q.options().dtype(lse_dtype(q.scalar_type())));
  if (q.numel() == 0) return {out, lse};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "window_attention_forward_cpu", [&] {
    forward_kernel<scalar_t>(q, k, v, k_pad, v_pad, rel_bias, scale, g, out, lse);
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
window_attention_backward_cpu(const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k,
                              const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                              at::IntArrayRef window, int64_t num_heads, double scale,
                              at::IntArrayRef offset, c10::string_view pad_mode,
                              const c10::optional<at::Tensor>& k_pad,
                              const c10::optional<at::Tensor>& v_pad,
                              const c10::optional<at::Tensor>& rel_bias) {
  const WindowGeometry g = check_window_attention_backward_args(
      grad_out, q, k, v, out, lse, window, num_heads, scale, offset, pad_mode, k_pad, v_pad, rel_bias);
  check_cpu(q);
  auto grad_q = at::empty(q.sizes(), q.options().memory_format(at::MemoryFormat::Contiguous));
  auto grad_k = at::empty_like(grad_q);
  auto grad_v = at::empty_like(grad_q);
  auto grad_k_pad = at::zeros({g.C}, q.options());
  auto grad_v_pad = at::zeros({g.C}, q.options());
  auto grad_bias = has(rel_bias) ? at::zeros({g.table, g.heads}, q.options()) : at::zeros({0}, q.options());
  if (q.numel() == 0) return {grad_q, grad_k, grad_v, grad_k_pad, grad_v_pad, grad_bias};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "window_attention_backward_cpu", [&] {
    backward_kernel<scalar_t>(grad_out, q, k, v, out, lse, k_pad, v_pad, rel_bias, scale, g, grad_q, grad_k,
                              grad_v, grad_k_pad, grad_v_pad, grad_bias);
  });
  return {grad_q, grad_k, grad_v, grad_k_pad, grad_v_pad, grad_bias};
}

}  // namespace

HIGHERPOSE_LIBRARY_IMPL(CPU, m) {
  m.impl("window_attention_forward", &window_attention_forward_cpu);
  m.impl("window_attention_backward", &window_attention_backward_cpu);
}

}  // namespace higherpose
