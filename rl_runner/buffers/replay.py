"""Uniform replay: a preallocated ring buffer of tensors that lives on the training device."""

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


class ReplayBuffer:
    """Stores transitions from ``num_envs`` parallel envs; overwrites the oldest once full.

    Terminations and truncations are kept apart: a time-limit truncation is not a terminal state, so the
    TD target still bootstraps from ``next_obs`` there (``next_obs`` is the real final observation).
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        device: torch.device,
        obs_dtype: torch.dtype = torch.float32,
        action_dtype: torch.dtype = torch.float32,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"buffer_size must be positive, got {capacity}")
        self.capacity = capacity
        self.device = device
        self.obs = torch.zeros((capacity, *obs_shape), dtype=obs_dtype, device=device)
        self.next_obs = torch.zeros((capacity, *obs_shape), dtype=obs_dtype, device=device)
        self.actions = torch.zeros((capacity, *action_shape), dtype=action_dtype, device=device)
        self.rewards = torch.zeros(capacity, dtype=torch.float32, device=device)
        self.terminated = torch.zeros(capacity, dtype=torch.float32, device=device)
        self.truncated = torch.zeros(capacity, dtype=torch.float32, device=device)
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
    ) -> None:
        """Add one transition per env; every argument has a leading [num_envs] axis."""
        count = len(rewards)
        slots = (self.position + np.arange(count)) % self.capacity
        index = torch.from_numpy(slots).to(self.device)
        for storage, values in (
            (self.obs, obs),
            (self.actions, actions),
            (self.rewards, rewards),
            (self.next_obs, next_obs),
            (self.terminated, terminated),
            (self.truncated, truncated),
        ):
            storage[index] = torch.as_tensor(np.asarray(values), dtype=storage.dtype).to(self.device, non_blocking=True)
        self.position = int((self.position + count) % self.capacity)
        self.size = min(self.size + count, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TransitionBatch:
        index = torch.randint(0, self.size, (batch_size,), device=self.device, generator=generator)
        return TransitionBatch(
            self.obs[index],
            self.actions[index],
            self.rewards[index],
            self.next_obs[index],
            self.terminated[index],
            self.truncated[index],
        )

    def state_dict(self) -> dict:
        stored = slice(0, self.size)
        return {
            "capacity": self.capacity,
            "position": self.position,
            "size": self.size,
            "obs": self.obs[stored].cpu(),
            "next_obs": self.next_obs[stored].cpu(),
            "actions": self.actions[stored].cpu(),
            "rewards": self.rewards[stored].cpu(),
            "terminated": self.terminated[stored].cpu(),
            "truncated": self.truncated[stored].cpu(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"saved replay holds {state['capacity']} transitions, this run's buffer_size is {self.capacity}")
        size = state["size"]
        for name in ("obs", "next_obs", "actions", "rewards", "terminated", "truncated"):
            getattr(self, name)[:size] = state[name].to(self.device)
        self.position = state["position"]
        self.size = size
