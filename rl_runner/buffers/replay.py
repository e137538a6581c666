"""Uniform replay: a preallocated ring buffer that lives on the training device."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class TransitionBatch(NamedTuple):
    obs: torch.Tensor  # [B, *obs_shape]
    actions: torch.Tensor  # [B, *action_shape]
    rewards: torch.Tensor  # [B]
    next_obs: torch.Tensor  # [B, *obs_shape]
    terminated: torch.Tensor  # [B] 1.0 where the episode ended in a terminal state (no bootstrap)
    truncated: torch.Tensor  # [B] 1.0 where a time limit cut the episode (still bootstraps)
    discounts: torch.Tensor | None = None  # [B] gamma**k of an n-step transition, in buffers made with discounts


class RowLayout:
    """Named fields packed side by side into one float32 row, so that a replay keeps all of a step in one row
    of a single ``[capacity, width]`` tensor and gathers a batch (or a batch of sequences) in one indexing op."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}
        bounds = np.cumsum([0, *(int(np.prod(shape)) for shape in self.shapes.values())])
        self.columns = {name: slice(int(bounds[i]), int(bounds[i + 1])) for i, name in enumerate(self.shapes)}
        self.width = int(bounds[-1])

    def pack(self, values: list[np.ndarray], count: int) -> np.ndarray:
        """One value per field, in field order, each with a leading axis of ``count`` -> rows [count, width]."""
        return np.concatenate([np.asarray(v, dtype=np.float32).reshape(count, -1) for v in values], axis=1)

    def unpack(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows [..., width] -> each field [..., *shape] (views into ``rows``)."""
        lead = rows.shape[:-1]
        return {name: rows[..., self.columns[name]].reshape(*lead, *shape) for name, shape in self.shapes.items()}


class ReplayBuffer:
    """Float32 transitions from ``num_envs`` parallel envs; overwrites the oldest once full.

    All fields of a transition sit in one row of a single [capacity, width] tensor, so sampling a batch
    is one gather instead of one per field. Terminations and truncations are kept apart: a time-limit
    truncation is not a terminal state, so the TD target still bootstraps from ``next_obs`` there
    (``next_obs`` is the real final observation).
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        device: torch.device,
        discounts: bool = False,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"buffer_size must be positive, got {capacity}")
        self.capacity = capacity
        self.device = device
        shapes = {
            "obs": tuple(obs_shape),
            "actions": tuple(action_shape),
            "rewards": (),
            "next_obs": tuple(obs_shape),
            "terminated": (),
            "truncated": (),
        }
        self.layout = RowLayout(shapes | ({"discounts": ()} if discounts else {}))
        self.fields = tuple(self.layout.shapes)
        self.storage = torch.zeros((capacity, self.layout.width), dtype=torch.float32, device=device)
        self.position = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        discounts: np.ndarray | None = None,
    ) -> np.ndarray:
        """Add transitions (every argument has the same leading axis); returns the slots they were written to."""
        count = len(rewards)
        values = [obs, actions, rewards, next_obs, terminated, truncated] + (
            [discounts] if "discounts" in self.fields else []
        )
        rows_on_device = torch.from_numpy(self.layout.pack(values, count)).to(self.device)
        slots = (self.position + np.arange(count)) % self.capacity
        if self.position + count <= self.capacity:  # the common case: one contiguous slice, no index tensor
            self.storage[self.position : self.position + count] = rows_on_device
        else:
            self.storage[torch.from_numpy(slots).to(self.device)] = rows_on_device
        self.position = int((self.position + count) % self.capacity)
        self.size = min(self.size + count, self.capacity)
        return slots

    def lost(self, slots: np.ndarray) -> np.ndarray:
        """Which of these transitions can no longer be sampled: none here (see ``FrameReplay.lost``)."""
        return np.zeros(len(slots), dtype=bool)

    def _unpack(self, rows: torch.Tensor) -> TransitionBatch:
        return TransitionBatch(**self.layout.unpack(rows))

    def gather(self, slots: torch.Tensor) -> TransitionBatch:
        return self._unpack(self.storage[slots])

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TransitionBatch:
        index = torch.randint(0, self.size, (batch_size,), device=self.device, generator=generator)
        return self.gather(index)

    def stored(self) -> TransitionBatch:
        """Every stored transition, in slot order (oldest first only until the buffer wraps)."""
        return self._unpack(self.storage[: self.size])

    def state_dict(self) -> dict:
        return {
            "capacity": self.capacity,
            "position": self.position,
            "size": self.size,
            "storage": self.storage[: self.size].cpu().clone(),
        }  # clone: a CPU view would save the whole capacity

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(
                f"saved replay holds {state['capacity']} transitions, this run's buffer_size is {self.capacity}"
            )
        if state["storage"].shape[1] != self.storage.shape[1]:
            raise ValueError("saved replay has transitions of another shape than this env's")
        self.storage[: state["size"]] = state["storage"].to(self.device)
        self.position = state["position"]
        self.size = state["size"]
