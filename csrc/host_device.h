// HIGHERPOSE_HOST_DEVICE marks a small function that both the CPU kernels (host C++) and the CUDA
// kernels (device code) call, so a formula is written once for both.
#pragma once

#if defined(__CUDACC__)
#define HIGHERPOSE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define HIGHERPOSE_HOST_DEVICE inline
#endif
