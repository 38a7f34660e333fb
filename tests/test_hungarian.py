"""The ae_group assignment solver against scipy.optimize.linear_sum_assignment.

Tie behaviour (the contract): the solver returns exactly scipy's assignment on the same float64
matrix, also when several assignments share the optimal cost (integer matrices, constant
matrices, upstream's padded cost matrices).
"""
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment as scipy_lsa

import higherpose.ops as ops


def _same_as_scipy(cost):
    rows, cols = scipy_lsa(cost)
    got_rows, got_cols = ops.linear_sum_assignment(torch.from_numpy(cost))
    np.testing.assert_array_equal(got_rows.numpy(), rows)
    np.testing.assert_array_equal(got_cols.numpy(), cols)


@pytest.mark.parametrize("shape", [(1, 1), (5, 5), (12, 12), (4, 9), (9, 4), (30, 30), (17, 40), (40, 17)])
def test_random_matrices(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(40):
        _same_as_scipy(rng.normal(size=shape) * 10 + rng.normal() * 100)


@pytest.mark.parametrize("shape", [(6, 6), (3, 8), (8, 3), (15, 15), (10, 25)])
def test_tied_integer_matrices(shape):
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    for levels in (1, 2, 3):
        for _ in range(40):
            _same_as_scipy(rng.integers(0, levels, shape).astype(np.float64))


@pytest.mark.parametrize("shape", [(4, 4), (3, 7), (7, 3)])
def test_constant_matrix(shape):
    _same_as_scipy(np.full(shape, 2.5))


def test_upstream_padded_cost_matrices():
    # round(dist) * 100 - value, padded to square with 1e10 columns: ties between padding columns
    # and between rows of equal rounded distance.
    rng = np.random.default_rng(7)
    for _ in range(300):
        rows, persons = rng.integers(1, 20, 2)
        cost = np.round(rng.uniform(0, 4, (rows, persons))) * 100 - rng.uniform(0.1, 1, (rows, 1))
        if rows > persons:
            cost = np.concatenate([cost, np.full((rows, rows - persons), 1e10)], axis=1)
        _same_as_scipy(cost)


def test_infinite_entries_and_empty():
    cost = np.array([[np.inf, 1.0], [2.0, np.inf], [3.0, 4.0]])
    _same_as_scipy(cost)
    rows, cols = ops.linear_sum_assignment(torch.zeros(0, 3, dtype=torch.float64))
    assert rows.numel() == 0 and cols.numel() == 0


def test_invalid_and_infeasible_raise():
    with pytest.raises(RuntimeError, match="NaN or -inf"):
        ops.linear_sum_assignment(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(RuntimeError, match="NaN or -inf"):
        ops.linear_sum_assignment(torch.tensor([[1.0, -float("inf")], [0.0, 1.0]]))
    with pytest.raises(RuntimeError, match="infeasible"):
        ops.linear_sum_assignment(torch.tensor([[float("inf"), float("inf")], [0.0, 1.0]]))
    with pytest.raises(RuntimeError, match="2-D"):
        ops.linear_sum_assignment(torch.zeros(3))
