"""The sum tree (rl_runner/buffers/sum_tree.py) against brute force: totals, minima and leaves after random
sets, find against searchsorted, one leaf, bad priorities and state dicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rl_runner.buffers import SumTree


def reference_find(priorities: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The leaf whose cumulative range [start, start + p) holds each value: searchsorted on the cumulative sums."""
    return np.searchsorted(np.cumsum(priorities), values, side="right")


@pytest.mark.parametrize("capacity", [1, 2, 7, 16, 100])
def test_sum_tree_total_min_and_leaves_match_brute_force_after_random_sets(capacity: int) -> None:
    """After many batched sets (repeated leaves, zeros, wide magnitudes) total, min and leaves equal a numpy loop."""
    rng = np.random.default_rng(capacity)
    tree, reference = SumTree(capacity), np.zeros(capacity)
    assert tree.total == 0.0 and tree.min == math.inf
    for _ in range(300):
        leaves = rng.integers(0, capacity, size=rng.integers(1, 2 * capacity + 2))
        priorities = 10.0 ** rng.uniform(-3, 3, size=len(leaves))
        priorities[rng.random(len(leaves)) < 0.2] = 0.0
        tree.set(leaves, priorities)
        for leaf, priority in zip(leaves, priorities):  # a leaf given twice keeps its last value
            reference[leaf] = priority
        assert np.isclose(tree.total, reference.sum(), rtol=1e-12, atol=0.0)
        positive = reference[reference > 0]
        assert tree.min == (positive.min() if positive.size else math.inf)
        np.testing.assert_array_equal(tree.get(np.arange(capacity)), reference)


def test_sum_tree_find_matches_searchsorted_on_boundaries_and_skips_zero_leaves() -> None:
    """find agrees with searchsorted exactly, boundaries included, and never returns a zero-priority leaf."""
    rng = np.random.default_rng(1)
    capacity = 37  # not a power of two: 27 padding leaves
    priorities = rng.integers(1, 40, size=capacity) / 8.0  # dyadic: every sum is exact, boundaries are exact
    priorities[rng.choice(capacity, size=12, replace=False)] = 0.0
    priorities[[0, -1]] = 0.0  # zero leaves at both ends and (with high probability) in runs inside
    tree = SumTree(capacity)
    tree.set(np.arange(capacity), priorities)
    cumulative = np.cumsum(priorities)
    boundaries = np.concatenate([[0.0], cumulative[cumulative < tree.total]])
    values = np.concatenate([boundaries, rng.uniform(0.0, tree.total, size=2000)])
    found = tree.find(values)
    np.testing.assert_array_equal(found, reference_find(priorities, values))
    assert np.all(priorities[found] > 0)
    # at (or rounded past) the total, the draw falls back onto the last leaf with mass, never a padding/zero leaf
    last_positive = np.flatnonzero(priorities)[-1]
    np.testing.assert_array_equal(tree.find(np.array([tree.total, tree.total * (1 + 1e-15)])), [last_positive] * 2)


def test_sum_tree_find_matches_searchsorted_on_random_float_priorities() -> None:
    """With arbitrary float priorities find agrees with searchsorted away from rounding distance of a boundary."""
    rng = np.random.default_rng(2)
    for capacity in (3, 50, 129):
        priorities = rng.exponential(size=capacity) * (rng.random(capacity) < 0.7)
        priorities[0] = 0.5  # at least one positive
        tree = SumTree(capacity)
        tree.set(np.arange(capacity), np.ones(capacity))  # stale values, all overwritten below
        tree.set(np.arange(capacity), priorities)
        values = rng.uniform(0.0, tree.total, size=5000)
        cumulative = np.cumsum(priorities)
        gaps = np.abs(values[:, None] - cumulative[None, :]).min(axis=1)
        values = values[gaps > 1e-9 * tree.total]
        found = tree.find(values)
        np.testing.assert_array_equal(found, reference_find(priorities, values))
        assert np.all(priorities[found] > 0)


def test_sum_tree_with_one_leaf() -> None:
    """Capacity 1: the root is the leaf; total, min and find work and out-of-range leaves are refused."""
    tree = SumTree(1)
    tree.set(np.array([0]), np.array([2.5]))
    assert tree.total == 2.5 and tree.min == 2.5
    np.testing.assert_array_equal(tree.find(np.array([0.0, 1.0, 2.4999, 2.5])), [0, 0, 0, 0])
    tree.set(np.array([0, 0]), np.array([4.0, 3.0]))
    assert tree.total == 3.0 and tree.min == 3.0
    with pytest.raises(IndexError):
        tree.set(np.array([1]), np.array([1.0]))
    with pytest.raises(ValueError):
        SumTree(0)


def test_sum_tree_refuses_negative_or_nonfinite_priorities() -> None:
    """Negative, nan and inf priorities raise instead of corrupting the sums."""
    tree = SumTree(4)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            tree.set(np.array([1]), np.array([bad]))
    assert tree.total == 0.0


def test_sum_tree_state_dict_round_trip() -> None:
    """A saved tree loads into a fresh one with identical sums, mins and draws; another capacity is refused."""
    rng = np.random.default_rng(3)
    tree = SumTree(21)
    priorities = rng.exponential(size=21) * (rng.random(21) < 0.8)
    tree.set(np.arange(21), priorities)
    state = tree.state_dict()
    tree.set(np.array([4]), np.array([100.0]))  # the saved state is a snapshot
    loaded = SumTree(21)
    loaded.set(np.arange(21), np.ones(21))  # stale content must be wiped
    loaded.load_state_dict(state)
    np.testing.assert_array_equal(loaded.get(np.arange(21)), priorities)
    fresh = SumTree(21)
    fresh.set(np.arange(21), priorities)
    np.testing.assert_array_equal(loaded.sums, fresh.sums)
    np.testing.assert_array_equal(loaded.mins, fresh.mins)
    values = rng.uniform(0, loaded.total, size=500)
    np.testing.assert_array_equal(loaded.find(values), fresh.find(values))
    with pytest.raises(ValueError):
        SumTree(20).load_state_dict(state)
