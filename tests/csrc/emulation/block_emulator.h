// A host emulator of CUDA thread blocks, so the CUDA kernels' logic can be tested on machines
// without a GPU (CI). Each CUDA thread of a block is a fiber on the calling OS thread; a fiber
// runs until it reaches __syncthreads() or a warp shuffle and then yields. The scheduler resumes
// a fiber once every thread its barrier waits for has arrived, so values written before a
// barrier are seen after it, and a missing barrier shows up as a stale read (fibers can be
// resumed in a shuffled order to make that likely). A barrier that some thread never reaches
// raises an error instead of hanging. Not emulated: the memory model within a phase, timing,
// register and shared-memory limits beyond the byte count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

namespace higherpose {
namespace emu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// Runs body() as every thread of every block of a one-dimensional grid, block after block.
// Dynamic shared memory (shared_bytes) is filled with NaN bytes at the start of each block, so
// a read of shared memory that was never written is likely to show. seed 0 resumes threads in
// ascending order; any other seed shuffles the order at every scheduling pass. Exceptions thrown
// by body() (and deadlocks) are rethrown here.
void run_grid(unsigned blocks, unsigned threads, size_t shared_bytes, const std::function<void()>& body,
              uint64_t seed = 0);

// What the CUDA built-ins return for the calling emulated thread.
Dim3 thread_idx();
Dim3 block_idx();
Dim3 block_dim();
Dim3 grid_dim();
void* dynamic_shared();

// __syncthreads(): waits until every thread of the block that has not exited arrives.
void sync_threads();

// __shfl_sync family: every lane of `mask` (which must contain the caller) calls this with the
// same mask; returns the 32-bit value that lane `src_lane` of the warp passed.
uint32_t warp_exchange(unsigned mask, uint32_t value, int src_lane);

// A collective of all 32 lanes of the warp: every lane passes `words` (n <= 16) 32-bit values;
// on return gathered[l * n + w] holds word w of lane l.
void warp_allgather(const uint32_t* words, int n, uint32_t* gathered);

}  // namespace emu
}  // namespace higherpose
