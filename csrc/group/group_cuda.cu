// ae_group on CUDA. The heavy, map-sized work stays on the GPU; only the candidate arrays
// (at most N * J * k peak slots) travel to the host, where the per-joint assignment runs:
//   1. pack_candidates: per peak slot, value, raw and adjusted coordinates and tags -> one small
//      buffer, copied to the host in one transfer;
//   2. host: upstream's matching per image (shared with the CPU kernel), adjust from the packed
//      coordinates, person scores; the poses go back to the GPU in one transfer;
//   3. refine_argmax: one task per (image, person, missing joint), split over several blocks;
//      each block reduces (score, -index) to one 64-bit key and merges it with atomicMax, so the
//      winner is the highest score and, among equal scores, the lowest flat index (= a row-major
//      first argmax); refine_write fills the joint when the pixel's value is > 0.
// Float operations use explicit round-to-nearest intrinsics (no FMA contraction) so that scores
// equal the CPU kernel's bit for bit.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "group/group.h"
#include "registration.h"

namespace higherpose {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kPixelsPerBlock = 16384;  // refine splits a map over blocks of this many pixels

// Packed row per peak slot: value, x, y, adjusted x, adjusted y, tags[T].
__global__ void pack_candidates_kernel(const float* __restrict__ det, const float* __restrict__ values,
                                       const int64_t* __restrict__ xs, const int64_t* __restrict__ ys,
                                       const float* __restrict__ ptags, int64_t num_slots, int64_t J,
                                       int64_t K, int64_t T, int64_t H, int64_t W,
                                       float* __restrict__ packed) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= num_slots) return;
  const int64_t nj = i / K;  // image * J + joint
  // Coordinates travel as floats: anything outside [-1, size) becomes `size`, which the host
  // reports as out of range if the slot is a candidate (-1 marks an empty slot).
  const int64_t x = (xs[i] < -1 || xs[i] >= W) ? W : xs[i];
  const int64_t y = (ys[i] < -1 || ys[i] >= H) ? H : ys[i];
  float* row = packed + i * (5 + T);
  const float fx = static_cast<float>(x), fy = static_cast<float>(y);
  float ax = fx, ay = fy;
  if (x >= 0 && x < W && y >= 0 && y < H) {
    const float* m = det + nj * H * W;
    ax = (fx + quarter_step_x(m, x, y, W)) + 0.5f;
    ay = (fy + quarter_step_y(m, x, y, H, W)) + 0.5f;
  }
  row[0] = values[i];
  row[1] = fx;
  row[2] = fy;
  row[3] = ax;
  row[4] = ay;
  for (int64_t t = 0; t < T; ++t) row[5 + t] = ptags[i * T + t];
}

// Order-preserving map of a float (not NaN) to uint32; -0.0 and 0.0 map alike.
__device__ __forceinline__ uint32_t orderable(float s) {
  if (s == 0.0f) s = 0.0f;
  const uint32_t u = __float_as_uint(s);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The person tag of refine: float64 mean of the tag maps at the integer positions of the joints
// with value > 0, rounded to float32. Returns false when there is none or it is not finite.
__device__ bool person_refine_tag(const float* pose, const float* tag_img, int64_t J, int64_t T,
                                  int64_t H, int64_t W, float* out) {
  double sum[8];
  int64_t present = 0;
  for (int64_t t = 0; t < T; ++t) sum[t] = 0.0;
  for (int64_t j = 0; j < J; ++j) {
    const float* row = pose + j * (3 + T);
    if (!(row[2] > 0.0f)) continue;
    const int64_t x = static_cast<int32_t>(row[0]), y = static_cast<int32_t>(row[1]);
    const float* tg = tag_img + ((j * H + y) * W + x) * T;
    for (int64_t t = 0; t < T; ++t) sum[t] = __dadd_rn(sum[t], static_cast<double>(tg[t]));
    ++present;
  }
  if (present == 0) return false;
  bool finite = true;
  for (int64_t t = 0; t < T; ++t) {
    out[t] = static_cast<float>(__ddiv_rn(sum[t], static_cast<double>(present)));
    finite = finite && isfinite(out[t]);
  }
  return finite;
}

// tasks: [num_tasks, 3] (image, person, joint). keys: [num_tasks] uint64, zero-initialised.
__global__ void refine_argmax_kernel(const float* __restrict__ det, const float* __restrict__ tag,
                                     const float* __restrict__ poses, const int32_t* __restrict__ tasks,
                                     int64_t J, int64_t P, int64_t T, int64_t H, int64_t W,
                                     unsigned long long* __restrict__ keys) {
  __shared__ float person_tag[8];
  __shared__ int valid;
  __shared__ unsigned long long warp_best[kThreads / 32];
  const int64_t task = blockIdx.x;
  const int64_t n = tasks[task * 3], p = tasks[task * 3 + 1], j = tasks[task * 3 + 2];
  const int64_t HW = H * W;
  if (threadIdx.x == 0) {
    valid = person_refine_tag(poses + (n * P + p) * J * (3 + T), tag + n * J * HW * T, J, T, H, W,
                              person_tag) ? 1 : 0;
  }
  __syncthreads();
  if (!valid) return;

  const float* m = det + (n * J + j) * HW;
  const float* tg = tag + (n * J + j) * HW * T;
  const int64_t begin = blockIdx.y * kPixelsPerBlock;
  const int64_t end = begin + kPixelsPerBlock < HW ? begin + kPixelsPerBlock : HW;
  unsigned long long best = 0;
  for (int64_t idx = begin + threadIdx.x; idx < end; idx += blockDim.x) {
    const float* tp = tg + idx * T;
    float d = __fsub_rn(tp[0], person_tag[0]);
    float sq = __fmul_rn(d, d);
    for (int64_t t = 1; t < T; ++t) {
      d = __fsub_rn(tp[t], person_tag[t]);
      sq = __fadd_rn(sq, __fmul_rn(d, d));
    }
    float s = __fsub_rn(m[idx], rintf(__fsqrt_rn(sq)));
    if (isnan(s)) s = -INFINITY;
    const unsigned long long key =
        (static_cast<unsigned long long>(orderable(s)) << 32) | (0xFFFFFFFFull - static_cast<uint32_t>(idx));
    best = key > best ? key : best;
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const unsigned long long other = __shfl_down_sync(0xFFFFFFFFu, best, offset);
    best = other > best ? other : best;
  }
  if ((threadIdx.x & 31) == 0) warp_best[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) best = warp_best[w] > best ? warp_best[w] : best;
    best = warp_best[0] > best ? warp_best[0] : best;
    atomicMax(keys + task, best);
  }
}

__global__ void refine_write_kernel(const float* __restrict__ det, const int32_t* __restrict__ tasks,
                                    const unsigned long long* __restrict__ keys, int64_t num_tasks,
                                    int64_t J, int64_t P, int64_t T, int64_t H, int64_t W,
                                    float* __restrict__ poses) {
  const int64_t task = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (task >= num_tasks || keys[task] == 0) return;  // 0: the person had no refine tag
  const int64_t n = tasks[task * 3], p = tasks[task * 3 + 1], j = tasks[task * 3 + 2];
  const int64_t idx = 0xFFFFFFFFll - static_cast<int64_t>(keys[task] & 0xFFFFFFFFull);
  const float* m = det + (n * J + j) * H * W;
  const float val = m[idx];
  if (!(val > 0.0f)) return;
  const int64_t y = idx / W, x = idx % W;
  float* row = poses + ((n * P + p) * J + j) * (3 + T);
  row[0] = (static_cast<float>(x) + 0.5f) + quarter_step_x(m, x, y, W);
  row[1] = (static_cast<float>(y) + 0.5f) + quarter_step_y(m, x, y, H, W);
  row[2] = val;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ae_group_cuda(
    const at::Tensor& heatmaps, const at::Tensor& tags, const at::Tensor& peak_values,
    const at::Tensor& peak_x, const at::Tensor& peak_y, const at::Tensor& peak_tags,
    at::IntArrayRef joint_order, double detection_threshold, double tag_threshold,
    bool use_detection_val, bool ignore_too_much, int64_t max_people, bool adjust, bool refine) {
  GroupSettings s{joint_order.vec(), detection_threshold, tag_threshold, use_detection_val,
                  ignore_too_much, max_people, adjust, refine};
  check_ae_group_args(heatmaps, tags, peak_values, peak_x, peak_y, peak_tags, s);
  c10::cuda::CUDAGuard guard(heatmaps.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t N = heatmaps.size(0), J = heatmaps.size(1), H = heatmaps.size(2),
                W = heatmaps.size(3), T = tags.size(4), K = peak_values.size(2);
  TORCH_CHECK(T <= 8, "ae_group: the CUDA kernel supports at most 8 tag maps, got ", T);
  TORCH_CHECK(H * W < (int64_t{1} << 31), "ae_group: maps of ", H, "x", W, " are too large");
  const auto det = heatmaps.to(at::kFloat).contiguous();
  const auto tag = tags.to(at::kFloat).contiguous();
  const auto values = peak_values.to(at::kFloat).contiguous();
  const auto xs = peak_x.contiguous(), ys = peak_y.contiguous();
  const auto ptags = peak_tags.to(at::kFloat).contiguous();
  const auto f32 = heatmaps.options().dtype(at::kFloat);

  // 1. Candidates (all peak slots) to the host in one transfer.
  const int64_t num_slots = N * J * K, row_len = 5 + T;
  auto packed = at::empty({num_slots, row_len}, f32);
  if (num_slots > 0) {
    const int64_t blocks = (num_slots + kThreads - 1) / kThreads;
    pack_candidates_kernel<<<blocks, kThreads, 0, stream>>>(
        det.const_data_ptr<float>(), values.const_data_ptr<float>(), xs.const_data_ptr<int64_t>(),
        ys.const_data_ptr<int64_t>(), ptags.const_data_ptr<float>(), num_slots, J, K, T, H, W,
        packed.mutable_data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const auto host = packed.to(at::kCPU);  // synchronises with the stream
  const float* hp = host.const_data_ptr<float>();

  // 2. Matching, adjust and scores on the host, per image in parallel.
  std::vector<ImageGroups> groups(N);
  std::vector<std::vector<float>> scores_host(N);
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    AssignmentSolver solver;
    std::vector<float> val(J * K), tg(J * K * T);
    std::vector<int64_t> cx(J * K), cy(J * K);
    for (int64_t n = begin; n < end; ++n) {
      const float* rows = hp + n * J * K * row_len;
      for (int64_t i = 0; i < J * K; ++i) {
        val[i] = rows[i * row_len];
        cx[i] = static_cast<int64_t>(rows[i * row_len + 1]);
        cy[i] = static_cast<int64_t>(rows[i * row_len + 2]);
        for (int64_t t = 0; t < T; ++t) tg[i * T + t] = rows[i * row_len + 5 + t];
      }
      ImageGroups& g = groups[n];
      match_image(val.data(), cx.data(), cy.data(), tg.data(), J, K, T, H, W, s, n, solver, g);
      for (int64_t p = 0; p < g.count; ++p) {
        for (int64_t j = 0; j < J; ++j) {
          float* row = g.poses.data() + (p * J + j) * (3 + T);
          const int32_t slot = g.slot[p * J + j];
          if (!adjust || slot < 0 || !(row[2] > 0.0f)) continue;
          const float* src = rows + (j * K + slot) * row_len;
          row[0] = src[3];
          row[1] = src[4];
        }
      }
      scores_host[n].resize(g.count);
      for (int64_t p = 0; p < g.count; ++p)
        scores_host[n][p] = numpy_float32_mean(g.poses.data() + p * J * (3 + T) + 2, J, 3 + T);
    }
  });

  int64_t P = 0;
  for (const auto& g : groups) P = std::max(P, g.count);
  auto poses_host = at::zeros({N, P, J, 3 + T}, at::TensorOptions().dtype(at::kFloat));
  auto scores_cpu = at::zeros({N, P}, at::TensorOptions().dtype(at::kFloat));
  auto counts_cpu = at::empty({N}, at::TensorOptions().dtype(at::kLong));
  std::vector<int32_t> tasks;
  for (int64_t n = 0; n < N; ++n) {
    const ImageGroups& g = groups[n];
    counts_cpu.mutable_data_ptr<int64_t>()[n] = g.count;
    std::copy(g.poses.begin(), g.poses.end(), poses_host.mutable_data_ptr<float>() + n * P * J * (3 + T));
    std::copy(scores_host[n].begin(), scores_host[n].end(), scores_cpu.mutable_data_ptr<float>() + n * P);
    if (!refine) continue;
    for (int64_t p = 0; p < g.count; ++p) {
      const float* pose = g.poses.data() + p * J * (3 + T);
      bool any_present = false;
      for (int64_t j = 0; j < J; ++j) any_present = any_present || pose[j * (3 + T) + 2] > 0.0f;
      if (!any_present) continue;
      for (int64_t j = 0; j < J; ++j) {
        if (pose[j * (3 + T) + 2] != 0.0f) continue;
        tasks.push_back(static_cast<int32_t>(n));
        tasks.push_back(static_cast<int32_t>(p));
        tasks.push_back(static_cast<int32_t>(j));
      }
    }
  }
  auto poses = poses_host.to(heatmaps.device());
  auto scores = scores_cpu.to(heatmaps.device());
  auto counts = counts_cpu.to(heatmaps.device());

  // 3. Refine the missing joints on the GPU.
  const int64_t num_tasks = static_cast<int64_t>(tasks.size()) / 3;
  if (num_tasks > 0 && H * W > 0) {
    auto tasks_dev = at::from_blob(tasks.data(), {num_tasks, 3}, at::TensorOptions().dtype(at::kInt))
                         .to(heatmaps.device());
    auto keys = at::zeros({num_tasks}, heatmaps.options().dtype(at::kLong));
    const int64_t splits = (H * W + kPixelsPerBlock - 1) / kPixelsPerBlock;
    TORCH_CHECK(num_tasks < (int64_t{1} << 31) && splits < 65536, "ae_group: too many refine tasks");
    dim3 grid(static_cast<unsigned>(num_tasks), static_cast<unsigned>(splits));
    auto* key_ptr = reinterpret_cast<unsigned long long*>(keys.mutable_data_ptr<int64_t>());
    refine_argmax_kernel<<<grid, kThreads, 0, stream>>>(
        det.const_data_ptr<float>(), tag.const_data_ptr<float>(), poses.const_data_ptr<float>(),
        tasks_dev.const_data_ptr<int32_t>(), J, P, T, H, W, key_ptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t blocks = (num_tasks + kThreads - 1) / kThreads;
    refine_write_kernel<<<blocks, kThreads, 0, stream>>>(det.const_data_ptr<float>(),
                                                         tasks_dev.const_data_ptr<int32_t>(), key_ptr,
                                                         num_tasks, J, P, T, H, W,
                                                         poses.mutable_data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {poses, scores, counts};
}

}  // namespace

HIGHERPOSE_LIBRARY_IMPL(CUDA, m) { m.impl("ae_group", &ae_group_cuda); }

}  // namespace higherpose
