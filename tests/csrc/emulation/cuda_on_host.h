// Lets a CUDA kernel header compile as host C++ for the block emulator (block_emulator.h): maps
// the CUDA keywords and built-ins the kernels use (and HP_DYNAMIC_SHARED, the block's dynamic
// shared memory) onto the emulator. The kernel headers include it only when not compiled by nvcc. Include ATen and the
// standard headers before this one: it defines macros named like CUDA's keywords. (The kernels'
// `#pragma unroll` hints mean nothing to the host compiler: the build passes -Wno-unknown-pragmas.)
#pragma once

#if defined(__CUDACC__)
#error "emulation/cuda_on_host.h is for host builds of the CUDA kernels only"
#endif

#include <cmath>
#include <cstdint>
#include <cstring>

#include "emulation/block_emulator.h"

#define HP_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::higherpose::emu::dynamic_shared())

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define threadIdx (::higherpose::emu::thread_idx())
#define blockIdx (::higherpose::emu::block_idx())
#define blockDim (::higherpose::emu::block_dim())
#define gridDim (::higherpose::emu::grid_dim())

struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

inline void __syncthreads() { ::higherpose::emu::sync_threads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::higherpose::emu::warp_exchange(mask, 0u, 0); }

// __shfl_xor_sync for 32-bit types: lane l reads lane l ^ lane_mask of its width-lane segment.
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  static_assert(sizeof(T) == 4, "the emulator shuffles 32-bit values");
  const int lane = static_cast<int>(::higherpose::emu::thread_idx().x % 32);
  int src = lane ^ lane_mask;
  if (src / width != lane / width) src = lane;
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  bits = ::higherpose::emu::warp_exchange(mask, bits, src);
  T result;
  std::memcpy(&result, &bits, 4);
  return result;
}

// Fibers of the emulator never run at the same time, so a plain read-modify-write is atomic.
inline float atomicAdd(float* address, float value) {
  const float old = *address;
  *address = old + value;
  return old;
}

// The tensor-core mma.sync forms as warp collectives (after the keyword macros above).
#include "emulation/mma_emulated.h"
