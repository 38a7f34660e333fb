"""Fake kernel of the CUDA block emulator's self-test op (`higherpose::_cuda_emulator_self_test`,
csrc/emulation/emulator_self_test.cpp), which tests/test_cuda_emulator.py uses. The emulator runs
the CUDA kernels on the CPU so that machines without a GPU can test them."""
import torch

from ._library import load_library

load_library()


@torch.library.register_fake("higherpose::_cuda_emulator_self_test")
def _self_test_fake(scenario):
    return torch.empty(64)
