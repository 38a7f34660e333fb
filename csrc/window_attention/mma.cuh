// Tensor-core matrix multiply-accumulates on the GPU (PTX mma.sync). mma_16816: D = A B + C with
// A 16 x 16, B 16 x 8 (float16 or bfloat16) and C, D 16 x 8 (float32); mma_1688_tf32: the TF32
// m16n8k8 form (below). mma_16816's fragments (g = lane / 4, t = lane % 4; a 32-bit register
// holds two 16-bit values, the lower column / row first):
//   a[0] = A[g][2t, 2t+1]      a[1] = A[g+8][2t, 2t+1]
//   a[2] = A[g][2t+8, 2t+9]    a[3] = A[g+8][2t+8, 2t+9]
//   b[0] = B[2t, 2t+1][g]      b[1] = B[2t+8, 2t+9][g]
//   c[0], c[1] = C[g][2t, 2t+1]    c[2], c[3] = C[g+8][2t, 2t+1]   (D likewise)
// The GPU forms need sm_80 or newer (callers check the device). When the kernel headers compile
// as host C++ for the test-only CUDA block emulator, mma_16816 and mma_1688_tf32 come from
// tests/csrc/emulation/mma_emulated.h instead (warp collectives with the same fragment layouts);
// pack_pair and to_tf32 are shared.
#pragma once
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace higherpose {

// Two values rounded to T (float16 / bfloat16, nearest even) packed into one register.
template <typename T>
__host__ __device__ __forceinline__ uint32_t pack_pair(float low, float high) {
  return static_cast<uint32_t>(T(low).x) | (static_cast<uint32_t>(T(high).x) << 16);
}

#if defined(__CUDACC__)
template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                          const float (&c)[4]) {
  static_assert(std::is_same<T, c10::Half>::value || std::is_same<T, c10::BFloat16>::value,
                "mma_16816 takes float16 or bfloat16 operands");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // tensor-core mma needs sm_80+; the host never picks these kernels below that
#else
  if constexpr (std::is_same<T, c10::BFloat16>::value) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
  }
#endif
}
#endif  // __CUDACC__

// TF32 (float32 with a 10-bit mantissa, nearest, ties away from zero) of x, as float32 bits.
__host__ __device__ __forceinline__ uint32_t to_tf32(float x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
#else
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7f800000u) != 0x7f800000u) bits = (bits + 0x1000u) & ~0x1fffu;  // finite: round the magnitude
  return bits;
#endif
}

#if defined(__CUDACC__)
// D = A B + C with A 16 x 8, B 8 x 8 in TF32 (float32 registers), C, D 16 x 8 float32: PTX
// mma.sync.aligned.m16n8k8.row.col with .tf32 operands. Fragments (g = lane / 4, t = lane % 4):
//   a[0] = A[g][t]  a[1] = A[g+8][t]  a[2] = A[g][t+4]  a[3] = A[g+8][t+4]
//   b[0] = B[t][g]  b[1] = B[t+4][g]
//   c[0], c[1] = C[g][2t, 2t+1]    c[2], c[3] = C[g+8][2t, 2t+1]   (D likewise)
__device__ __forceinline__ void mma_1688_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                              const float (&c)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // see mma_16816
#else
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
#endif
}
#endif  // __CUDACC__

}  // namespace higherpose
