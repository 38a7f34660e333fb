// Warp-collective host re-implementations of the tensor-core mma.sync forms that
// csrc/window_attention/mma.cuh issues on the GPU, for the CUDA block emulator: the same
// fragment layouts (documented there), computed by gathering every lane's registers. Included
// through emulation/cuda_on_host.h when the kernel headers compile as host C++.
#pragma once
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "emulation/block_emulator.h"

namespace higherpose {
namespace emu_mma {

// Every lane's a[4], b[2], c[4] registers: all[10 l + w] is word w of lane l.
inline void gather(const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4], uint32_t* all) {
  uint32_t mine[10];
  for (int i = 0; i < 4; ++i) mine[i] = a[i];
  mine[4] = b[0];
  mine[5] = b[1];
  std::memcpy(mine + 6, c, sizeof(c));
  emu::warp_allgather(mine, 10, all);
}

// C (16 x 8) from every lane's c registers (words 6..9 of `all`).
inline void unpack_c(const uint32_t* all, float (&C)[16][8]) {
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    float cl[4];
    std::memcpy(cl, all + 10 * l + 6, sizeof(cl));
    C[g][2 * t] = cl[0];
    C[g][2 * t + 1] = cl[1];
    C[g + 8][2 * t] = cl[2];
    C[g + 8][2 * t + 1] = cl[3];
  }
}

// This lane's four entries of D = A B + C (K columns of A), summed in double.
template <int K>
void lane_result(float (&d)[4], const float (&A)[16][K], const float (&B)[K][8], const float (&C)[16][8]) {
  const int lane = static_cast<int>(threadIdx.x % 32), g = lane / 4, t = lane % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
    double sum = C[row][col];
    for (int k = 0; k < K; ++k) sum += static_cast<double>(A[row][k]) * B[k][col];
    d[e] = static_cast<float>(sum);
  }
}

}  // namespace emu_mma

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}: D = A B + C.
template <typename T>
inline void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  static_assert(std::is_same<T, c10::Half>::value || std::is_same<T, c10::BFloat16>::value,
                "mma_16816 takes float16 or bfloat16 operands");
  // Gather every lane's fragments, rebuild A, B and C, and compute this lane's part of D.
  uint32_t all[32 * 10];
  emu_mma::gather(a, b, c, all);
  auto value = [](uint32_t reg, int half) {
    return static_cast<float>(T(static_cast<uint16_t>(reg >> (16 * half)), T::from_bits()));
  };
  float A[16][16], B[16][8], C[16][8];
  for (int l = 0; l < 32; ++l) {
    const uint32_t* w = all + 10 * l;
    const int g = l / 4, t = l % 4;
    for (int h = 0; h < 2; ++h) {
      A[g][2 * t + h] = value(w[0], h);
      A[g + 8][2 * t + h] = value(w[1], h);
      A[g][2 * t + 8 + h] = value(w[2], h);
      A[g + 8][2 * t + 8 + h] = value(w[3], h);
      B[2 * t + h][g] = value(w[4], h);
      B[2 * t + 8 + h][g] = value(w[5], h);
    }
  }
  emu_mma::unpack_c(all, C);
  emu_mma::lane_result(d, A, B, C);
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32: D = A B + C.
inline void mma_1688_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  uint32_t all[32 * 10];
  emu_mma::gather(a, b, c, all);
  auto value = [](uint32_t reg) {  // the hardware reads the TF32 part: the low 13 bits are ignored
    reg &= ~0x1fffu;
    float f;
    std::memcpy(&f, &reg, 4);
    return f;
  };
  float A[16][8], B[8][8], C[16][8];
  for (int l = 0; l < 32; ++l) {
    const uint32_t* w = all + 10 * l;
    const int g = l / 4, t = l % 4;
    A[g][t] = value(w[0]);
    A[g + 8][t] = value(w[1]);
    A[g][t + 4] = value(w[2]);
    A[g + 8][t + 4] = value(w[3]);
    B[t][g] = value(w[4]);
    B[t + 4][g] = value(w[5]);
  }
  emu_mma::unpack_c(all, C);
  emu_mma::lane_result(d, A, B, C);
}

}  // namespace higherpose
