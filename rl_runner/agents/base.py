"""What the runners ask of an agent. Agents implement these by shape (no base class to inherit).

Every agent is built by keyword: its config keys (``conf/agent/<name>.yaml`` minus the keys its runner owns,
``rl_runner.agents.runner_owned_keys``) plus the run context (``net``, ``device``, ``clock`` and
what its runner knows about the task: spaces for an env, the sample shape for a data set). A test checks
that the keys and the constructor's arguments match both ways.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Protocol

import numpy as np
import torch

from rl_runner.checkpoint import Stateful


class Transition(NamedTuple):
    """One step of every parallel env, as the env loop hands it to ``EnvAgent.observe``."""

    obs: np.ndarray  # [N, *obs_shape] what the agent acted on
    actions: np.ndarray  # [N, *action_shape]
    rewards: np.ndarray  # [N] the env's own rewards; an agent transforms (clips) its copy, never the runner's
    next_obs: np.ndarray  # [N, *obs_shape] the real successor: the final observation where an episode ended
    terminated: np.ndarray  # [N] bool: a terminal state, no bootstrap
    truncated: np.ndarray  # [N] bool: cut by a time limit, still bootstraps from next_obs
    infos: Mapping[str, Any]  # the vector env's infos (life loss in Atari, final_info, ...)


class Agent(Protocol):
    device: torch.device

    def state_groups(self) -> Mapping[str, Stateful]:
        """Everything a checkpoint must hold, one file per entry (``actor`` -> ``actor.pt``)."""
        ...

    def train_mode(self, training: bool) -> None: ...


class EnvAgent(Agent, Protocol):
    """What the shared env loop (``runners/env_loop.py``) asks of an agent that acts in envs, whatever its runner."""

    def act(self, obs: np.ndarray, explore: bool) -> np.ndarray:
        """Actions for a [num_envs, ...] batch of observations. ``explore=False`` is evaluation: no
        exploration, and per-episode state (e.g. a recurrent state) separate from the training envs'."""
        ...

    def observe(self, transition: Transition) -> None:
        """A step of every env. A recurrent agent stores its acting state with it here (it knows
        what it did in ``act``); a learning-only reward transform happens here, on the agent's own copy."""
        ...

    def reset(self, done: np.ndarray, explore: bool = True) -> None:
        """Episodes ended where ``done`` is true: reset the per-episode state (exploration noise, recurrent
        state) of the training envs (``explore=True``) or of the evaluation episode (``explore=False``)."""
        ...


class OffPolicyAgent(EnvAgent, Protocol):
    """What the off-policy runner adds: a warm-up of random actions, and updates from the agent's own replay."""

    def warm_up(self, obs: np.ndarray) -> None:
        """Instead of ``act``, before ``learning_starts``: the runner takes uniformly random actions on ``obs``.
        An agent whose acting keeps per-step state (DRQN's recurrent memory) advances it as ``act`` would, so that
        it follows the episode; the others have nothing to do."""
        ...

    def ready_to_learn(self) -> bool:
        """Whether the memory holds enough to learn from (checked once random warm-up actions are over)."""
        ...

    def update(self) -> Mapping[str, torch.Tensor]:
        """One gradient update from the replay; returns detached scalar tensors keyed by TensorBoard tag."""
        ...

    def replay_groups(self) -> Mapping[str, Stateful]:
        """The large, optional part of the state (replay memory, open episodes): saved only with
        ``checkpoint.save_replay=true``. Without it a resume refills the memory from empty."""
        ...


class DatasetAgent(Agent, Protocol):
    def update(self, batch: torch.Tensor) -> Mapping[str, torch.Tensor]:
        """One optimiser step on a batch of training samples [B, *sample_shape] already on the device."""
        ...

    def evaluate(self, samples: torch.Tensor) -> dict[str, Any]:
        """The agent's own measures on held-out normal samples, keyed by TensorBoard tag: numbers (``eval/...``)
        or figures as [H, W, 3] uint8 arrays (``images/...``). Thresholds and detection metrics are the
        dataset loop's (``runners/dataset.py``), the same for every detector."""
        ...

    def score(self, samples: torch.Tensor) -> torch.Tensor:
        """One number per sample [N], higher = more anomalous (what the threshold, the metrics and ``rl-eval``
        use)."""
        ...
