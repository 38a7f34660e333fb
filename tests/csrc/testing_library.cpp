// Schemas of the test-only operator library `higherpose_testing` (tests/emulated_ops.py builds and
// loads it; the shipped higherpose._C and libhigherpose_ops.so never contain it). It runs the CUDA
// kernels on the CPU through the block emulator (tests/csrc/emulation) so machines without a GPU
// test them. The fake kernels are in tests/emulated_ops.py: they call the real ops' Meta kernels.
#include <torch/library.h>

TORCH_LIBRARY(higherpose_testing, m) {
  // higherpose::window_attention_{forward,backward} with the CUDA kernels run by the emulator:
  // the same arguments plus the kernel family ("rows", "tiles" or "mma") and a scheduling seed
  // (0: threads resumed in order; otherwise shuffled at every scheduling pass).
  m.def(
      "window_attention_forward_emulated(Tensor q, Tensor k, Tensor v, int[] window, int num_heads, "
      "float scale, int[] offset, str pad_mode, Tensor? k_pad, Tensor? v_pad, Tensor? rel_bias, "
      "str kernel, int seed) -> (Tensor out, Tensor lse)");
  m.def(
      "window_attention_backward_emulated(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor out, "
      "Tensor lse, int[] window, int num_heads, float scale, int[] offset, str pad_mode, Tensor? k_pad, "
      "Tensor? v_pad, Tensor? rel_bias, str kernel, int seed) "
      "-> (Tensor grad_q, Tensor grad_k, Tensor grad_v, Tensor grad_k_pad, Tensor grad_v_pad, "
      "Tensor grad_rel_bias)");
  // Tiny kernels that show the emulator's own guarantees (emulator_self_test.cpp).
  m.def("emulator_self_test(str scenario) -> Tensor");
}
