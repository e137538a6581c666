"""What the runners ask of an agent. Agents implement these by shape (no base class to inherit)."""

from __future__ import annotations

from typing import Mapping, Protocol

import numpy as np
import torch

from rl_runner.checkpoint import Stateful


class Replay(Stateful, Protocol):
    """The agent's replay memory. The runner fills it; the agent samples from it in ``update``, so a
    prioritized, n-step or episode-sequence replay needs nothing from the runner."""

    capacity: int

    def __len__(self) -> int: ...

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None: ...


class Agent(Protocol):
    def state_groups(self) -> Mapping[str, Stateful]:
        """Everything a checkpoint must hold, one file per entry (``actor`` -> ``actor.pt``)."""
        ...

    def train_mode(self, training: bool) -> None: ...


class OffPolicyAgent(Agent, Protocol):
    replay: Replay
    batch_size: int
    device: torch.device

    def act(self, obs: np.ndarray, explore: bool) -> np.ndarray:
        """Actions for a [num_envs, ...] batch of observations. ``explore=False`` is evaluation: no
        exploration, and per-episode state (e.g. a recurrent state) separate from the training envs'."""
        ...

    def reset(self, done: np.ndarray, explore: bool = True) -> None:
        """Episodes ended where ``done`` is true: reset the per-episode state (exploration noise, recurrent
        state) of the training envs (``explore=True``) or of the evaluation episode (``explore=False``)."""
        ...

    def update(self) -> Mapping[str, torch.Tensor]:
        """One gradient update from the replay; returns detached scalar tensors keyed by TensorBoard tag."""
        ...
