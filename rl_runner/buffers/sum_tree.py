"""Sum and min trees over a fixed number of leaves, for prioritized replay.

A complete binary tree in one array: node ``i`` has children ``2i`` and ``2i + 1``, the root is node 1 and
leaf ``k`` is node ``size + k`` (``size`` a power of two). Updating ``m`` leaves walks their ``log2(size)``
ancestors level by level, vectorised over the batch; sampling descends from the root for a whole batch of
prefix sums at once. Both are O(m log n) with no Python loop over the batch.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a sum tree needs at least one leaf, got {capacity}")
        self.capacity = capacity
        self.depth = max(0, (capacity - 1).bit_length())  # levels above the leaves
        self.size = 1 << self.depth  # leaves, a power of two
        self.sums = np.zeros(2 * self.size, dtype=np.float64)
        self.mins = np.full(2 * self.size, np.inf, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.sums[1])

    @property
    def min(self) -> float:
        """The smallest positive priority stored (inf while there is none): zero leaves are never drawn."""
        return float(self.mins[1])

    def get(self, leaves: np.ndarray) -> np.ndarray:
        return self.sums[self.size + np.asarray(leaves)]

    def set(self, leaves: np.ndarray, priorities: np.ndarray) -> None:
        """Set leaf priorities (a leaf given twice keeps its last value) and update every ancestor."""
        leaves = np.asarray(leaves, dtype=np.int64)
        priorities = np.asarray(priorities, dtype=np.float64)
        if leaves.size == 0:
            return
        if np.any(leaves < 0) or np.any(leaves >= self.capacity):
            raise IndexError(f"leaf index out of range [0, {self.capacity})")
        if not np.all(np.isfinite(priorities)) or np.any(priorities < 0):
            raise ValueError("priorities must be finite and non-negative")
        nodes = self.size + leaves
        self.sums[nodes] = priorities
        self.mins[nodes] = np.where(priorities > 0, priorities, np.inf)
        for _ in range(self.depth):  # every node of the batch is at the same depth; duplicates compute alike
            nodes = nodes // 2
            self.sums[nodes] = self.sums[2 * nodes] + self.sums[2 * nodes + 1]
            self.mins[nodes] = np.minimum(self.mins[2 * nodes], self.mins[2 * nodes + 1])

    def find(self, prefix_sums: np.ndarray) -> np.ndarray:
        """For each value v in [0, total), the leaf whose cumulative range [start, start + priority) holds v."""
        values = np.asarray(prefix_sums, dtype=np.float64).copy()
        nodes = np.ones(values.shape, dtype=np.int64)
        while nodes[0] < self.size:  # every node of the batch is at the same depth
            left = 2 * nodes
            go_right = values >= self.sums[left]
            values = np.where(go_right, values - self.sums[left], values)
            nodes = np.where(go_right, left + 1, left)
        leaves = nodes - self.size
        # rounding can step past the last non-empty leaf; move such draws back onto a leaf with mass
        empty = self.sums[nodes] <= 0
        if np.any(empty):
            leaves[empty] = self._last_positive_leaf_before(leaves[empty])
        return leaves

    def _last_positive_leaf_before(self, leaves: np.ndarray) -> np.ndarray:
        positive = np.flatnonzero(self.sums[self.size : self.size + self.capacity] > 0)
        if positive.size == 0:
            raise ValueError("cannot sample from a tree with no positive priority")
        index = np.searchsorted(positive, leaves, side="right") - 1
        return positive[np.maximum(index, 0)]

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "leaves": self.sums[self.size : self.size + self.capacity].copy()}

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"saved priorities are for {state['capacity']} slots, this buffer has {self.capacity}")
        self.sums[:] = 0.0
        self.mins[:] = np.inf
        leaves = np.flatnonzero(state["leaves"] > 0)
        self.set(leaves, state["leaves"][leaves])
