"""Prioritized experience replay (Schaul et al., 2016), proportional variant, over the uniform ring buffer.

Slot ``i`` is drawn with probability ``P(i) = p_i / sum_k p_k``, where ``p_i = (error_i + eps) ** alpha`` is
kept in a sum tree. New transitions get the largest priority given so far, so each is seen at least once soon.
A batch is stratified: the total mass is cut into ``B`` equal segments and one slot is drawn from each. The
bias of this sampling is corrected by importance-sampling weights ``w_i = (N P(i)) ** -beta``, normalised by
the largest possible weight ``(N min_k P(k)) ** -beta`` so that they only ever scale updates down.
"""

from __future__ import annotations

import numpy as np
import torch

from rl_runner.buffers.frames import FrameReplay, raise_all_lost
from rl_runner.buffers.replay import ReplayBuffer, TransitionBatch
from rl_runner.buffers.sum_tree import SumTree


class PrioritizedReplay:
    def __init__(self, storage: ReplayBuffer | FrameReplay, alpha: float, epsilon: float = 1e-6, seed: int = 0) -> None:
        self.storage = storage
        self.capacity = storage.capacity
        self.alpha = alpha
        self.epsilon = epsilon
        self.tree = SumTree(storage.capacity)
        self.max_priority = 1.0  # already raised to alpha
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.storage)

    def add(self, **fields: np.ndarray) -> np.ndarray:
        slots = self.storage.add(**fields)
        self.tree.set(slots, np.full(len(slots), self.max_priority))
        return slots

    def sample(self, batch_size: int, beta: float) -> tuple[TransitionBatch, np.ndarray, torch.Tensor]:
        """A stratified batch, its slots and its importance-sampling weights [B] (on the storage's device)."""
        slots = self._draw(batch_size)
        lost = self.storage.lost(slots)
        while lost.any():  # transitions whose frames were overwritten (FrameReplay): never drawn again
            self.tree.set(slots[lost], np.zeros(int(lost.sum())))
            if self.tree.total <= 0:
                raise_all_lost(self.capacity)
            slots = self._draw(batch_size)
            lost = self.storage.lost(slots)
        total = self.tree.total
        probabilities = self.tree.get(slots) / total
        smallest = self.tree.min / total
        size = len(self.storage)
        weights = (size * probabilities) ** -beta / (size * smallest) ** -beta
        batch = self.storage.gather(torch.as_tensor(slots, device=self.storage.device))
        return batch, slots, torch.as_tensor(weights, dtype=torch.float32, device=self.storage.device)

    def _draw(self, batch_size: int) -> np.ndarray:
        total = self.tree.total
        edges = np.arange(batch_size) * (total / batch_size)
        return self.tree.find(edges + self.rng.uniform(0.0, total / batch_size, size=batch_size))

    def update_priorities(self, slots: np.ndarray, errors: torch.Tensor) -> None:
        """New priorities from the last update's per-sample errors (TD error or cross-entropy)."""
        priorities = (errors.detach().abs().double().cpu().numpy() + self.epsilon) ** self.alpha
        self.tree.set(slots, priorities)
        self.max_priority = max(self.max_priority, float(priorities.max()))

    def state_dict(self) -> dict:
        return {
            "storage": self.storage.state_dict(),
            "tree": self.tree.state_dict(),
            "max_priority": self.max_priority,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.storage.load_state_dict(state["storage"])
        self.tree.load_state_dict(state["tree"])
        self.max_priority = state["max_priority"]
        self.rng.bit_generator.state = state["rng"]
