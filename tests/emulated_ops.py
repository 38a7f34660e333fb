"""The test-only operator library `higherpose_testing` (tests/csrc): the CUDA block emulator and the
window-attention CUDA kernels run on the CPU through it. It is never part of the shipped package;
the first test that needs it compiles it (torch.utils.cpp_extension, ninja, cached under
build/higherpose_testing in the checkout; about a minute of 2-core CPU) and loads it.
"""
import os
import threading

import torch
from torch.utils import cpp_extension

import higherpose.ops  # noqa: F401  (the real ops: the fakes below call their Meta kernels)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS_CSRC = os.path.join(ROOT, "tests", "csrc")
SOURCES = [os.path.join(TESTS_CSRC, name) for name in (
    "testing_library.cpp", "emulation/block_emulator.cpp", "emulator_self_test.cpp", "window_attention_emulated.cpp")]
_lock = threading.Lock()
_ops = None


def load():
    """`torch.ops.higherpose_testing`, built and loaded on first use."""
    global _ops
    with _lock:
        if _ops is None:
            build = os.path.join(ROOT, "build", "higherpose_testing")
            os.makedirs(build, exist_ok=True)
            cpp_extension.load(
                name="higherpose_testing", sources=SOURCES, build_directory=build, is_python_module=False,
                extra_include_paths=[os.path.join(ROOT, "csrc"), TESTS_CSRC],
                # -O2, no debug info: the emulated kernels are slow enough; pragmas: the kernels'
                # `#pragma unroll` means nothing to the host compiler.
                extra_cflags=["-O2", "-g0", "-Wno-unknown-pragmas"], verbose=False)
            _register_fakes()
            _ops = torch.ops.higherpose_testing
    return _ops


def _register_fakes():
    # Shapes from the real ops' Meta kernels (called here on fake tensors): one source of shapes.
    @torch.library.register_fake("higherpose_testing::window_attention_forward_emulated")
    def _forward_fake(q, k, v, window, num_heads, scale, offset, pad_mode, k_pad, v_pad, rel_bias, kernel, seed):
        return torch.ops.higherpose.window_attention_forward(q, k, v, window, num_heads, scale, offset, pad_mode,
                                                             k_pad, v_pad, rel_bias)

    @torch.library.register_fake("higherpose_testing::window_attention_backward_emulated")
    def _backward_fake(grad_out, q, k, v, out, lse, window, num_heads, scale, offset, pad_mode, k_pad, v_pad,
                       rel_bias, kernel, seed):
        return torch.ops.higherpose.window_attention_backward(grad_out, q, k, v, out, lse, window, num_heads, scale,
                                                              offset, pad_mode, k_pad, v_pad, rel_bias)

    @torch.library.register_fake("higherpose_testing::emulator_self_test")
    def _self_test_fake(scenario):
        return torch.empty(64)
