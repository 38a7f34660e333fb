// higherpose_testing::emulator_self_test(scenario): tiny kernels that show the block emulator's
// guarantees, for tests/test_cuda_emulator.py. Scenarios:
//   "barrier"           every thread writes its index to shared memory, passes __syncthreads()
//                       and reads its neighbour's: returns [threads] with (i + 1) % threads
//   "shuffle"           __shfl_xor_sync over every warp: returns [threads] with i ^ 5
//   "divergent_sync"    even threads call a full-warp shuffle, odd threads __syncthreads(): each
//                       waits for the other (a hang on a GPU); the emulator raises its deadlock
//                       error instead
//   "uninitialised"     reads shared memory nobody wrote: returns the value (NaN)
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>

// After ATen: the emulator header defines macros named like CUDA's keywords.
#include "emulation/cuda_on_host.h"

namespace higherpose {
namespace {

constexpr unsigned kThreads = 64;

at::Tensor emulator_self_test(c10::string_view scenario_view) {
  const std::string scenario(scenario_view);
  auto out = at::zeros({static_cast<int64_t>(kThreads)}, at::kFloat);
  float* result = out.data_ptr<float>();
  std::function<void()> body;
  if (scenario == "barrier") {
    body = [result] {
      HP_DYNAMIC_SHARED(float, shared);
      const unsigned i = threadIdx.x;
      shared[i] = static_cast<float>(i);
      __syncthreads();
      result[i] = shared[(i + 1) % blockDim.x];
    };
  } else if (scenario == "shuffle") {
    body = [result] {
      const unsigned i = threadIdx.x;
      result[i] = __shfl_xor_sync(0xffffffffu, static_cast<float>(i), 5, 32);
    };
  } else if (scenario == "divergent_sync") {
    body = [] {
      if (threadIdx.x % 2 == 0)
        __shfl_xor_sync(0xffffffffu, 1.f, 1, 32);
      else
        __syncthreads();
    };
  } else if (scenario == "uninitialised") {
    body = [result] {
      HP_DYNAMIC_SHARED(float, shared);
      result[threadIdx.x] = shared[threadIdx.x];
    };
  } else {
    TORCH_CHECK(false, "emulator_self_test: unknown scenario \"", scenario, "\"");
  }
  try {
    emu::run_grid(1, kThreads, kThreads * sizeof(float), body, 0);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, e.what());
  }
  return out;
}

}  // namespace

// No tensor arguments: the kernel is registered for every backend.
TORCH_LIBRARY_IMPL(higherpose_testing, CompositeExplicitAutograd, m) {
  m.impl("emulator_self_test", &emulator_self_test);
}

}  // namespace higherpose
