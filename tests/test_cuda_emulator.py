"""The CUDA block emulator (tests/csrc/emulation) that tests the CUDA kernels on machines without a GPU:
barriers order shared-memory writes before reads, warp shuffles exchange lane values, a barrier
some threads never reach is reported instead of hanging, and unwritten shared memory reads NaN."""
import math

import pytest
import torch

import emulated_ops

self_test = emulated_ops.load().emulator_self_test


def test_barrier_makes_neighbours_writes_visible():
    out = self_test("barrier")
    n = out.numel()
    assert out.tolist() == [float((i + 1) % n) for i in range(n)]


def test_warp_shuffle_exchanges_lane_values():
    out = self_test("shuffle")
    assert out.tolist() == [float(i ^ 5) for i in range(out.numel())]


def test_divergent_synchronisation_is_reported_not_hung():
    with pytest.raises(RuntimeError, match="deadlock in block 0"):
        self_test("divergent_sync")


def test_unwritten_shared_memory_reads_nan():
    assert all(math.isnan(x) for x in self_test("uninitialised").tolist())


def test_unknown_scenario_is_refused():
    with pytest.raises(RuntimeError, match="unknown scenario"):
        self_test("nothing")


def test_self_test_op_has_a_fake_kernel():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        out = self_test("barrier")
    assert out.shape == (64,) and out.dtype == torch.float32
