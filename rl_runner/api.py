"""Using a trained agent from Python: load a run's checkpoint and act with it, in a few lines.

    from rl_runner.api import load_policy

    policy = load_policy("outputs/ddpg_Pendulum-v1/<run>")  # the latest checkpoint; checkpoint="best" or a step
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    action = policy.act(obs)  # the deterministic policy rl-eval plays

``load_policy`` is for env runs (``agent.runner=off_policy``: DDPG, Rainbow, DRQN). ``load_agent`` loads any run,
dataset runs (autoencoder, AnoGAN) included, and returns the raw agent with the run's config (and, for a dataset
run, its data scaled as for training and its threshold), for uses the ``Policy`` wrapper does not cover.

Both rebuild the agent the way ``rl-eval`` does (``rl_runner/evaluate.py``): the run's config is re-composed from
its ``.hydra/overrides.yaml`` (``run_config``), the agent is built by the run's runner, and the checkpoint's files
are loaded with ``load_finite_into`` (a checkpoint holding NaN or inf is refused). So ``policy.act`` picks the
actions rl-eval's episodes play, bit for bit on the same device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig

from rl_runner.checkpoint import resolve_checkpoint
from rl_runner.config import run_config
from rl_runner.registry import runner_entry, runner_function
from rl_runner.runners.base import TrainedAgent
from rl_runner.runtime import resolve_device

# Acting on one observation at a time with small networks is faster on the CPU than a round trip to a GPU, and it
# works on every machine; pass device="auto" (CUDA when present) or "cuda" for large pixel agents or big batches.
DEFAULT_DEVICE = "cpu"

__all__ = ["DEFAULT_DEVICE", "Policy", "TrainedAgent", "load_agent", "load_policy", "resolve_checkpoint"]


# ------------------------------------------------------------------------------------------------ loading
def load_agent(
    path: str | Path,
    checkpoint: str | int | None = None,
    device: str | torch.device = DEFAULT_DEVICE,
    overrides: Sequence[str] = (),
) -> TrainedAgent:
    """Load the agent of any run (env or dataset) from a run directory or a checkpoint directory.

    ``checkpoint``: see ``resolve_checkpoint``. ``device``: ``cpu`` (the default), ``auto``, ``cuda`` or ``cuda:N``.
    ``overrides``: dotted config overrides composed over the run's own, as rl-eval takes them (e.g.
    ``["data.path=new.csv"]``); one that changes the networks' shapes does not fit the checkpoint (CheckpointError).
    Loading leaves the caller's torch random stream as it was (building networks draws from it)."""
    run_dir, checkpoint_dir = resolve_checkpoint(path, checkpoint)
    return _load(checkpoint_dir, run_config(run_dir, list(overrides)), resolve_device(str(device)))


def load_policy(
    path: str | Path,
    checkpoint: str | int | None = None,
    device: str | torch.device = DEFAULT_DEVICE,
    overrides: Sequence[str] = (),
) -> Policy:
    """The deterministic policy of an env run's checkpoint (arguments as for ``load_agent``).

    A dataset run (``agent.runner=dataset``) has no policy: that is a ValueError, raised before anything loads."""
    run_dir, checkpoint_dir = resolve_checkpoint(path, checkpoint)
    cfg = run_config(run_dir, list(overrides))
    _require_env_run(cfg, run_dir)
    return Policy(_load(checkpoint_dir, cfg, resolve_device(str(device))))


def _require_env_run(cfg: DictConfig, run_dir: Path) -> None:
    if runner_entry(cfg.agent.runner).needs != "env":
        raise ValueError(
            f"{run_dir} is a dataset run (agent={cfg.agent.name}, agent.runner={cfg.agent.runner}): a Policy acts "
            f"in an env and this agent scores data; score its windows with `rl-eval {run_dir}`, or load it with "
            "rl_runner.api.load_agent and call .agent.score(samples)"
        )


def _load(checkpoint: Path, cfg: DictConfig, device: torch.device) -> TrainedAgent:
    """The run's runner loads it (``rl_runner/registry.py``). Building an agent initialises networks (and DRQN's
    replay seed) from the global torch stream: it is forked, so that a caller's seeded script draws the same
    numbers whether or not it loaded a policy."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return runner_function(cfg.agent.runner, "load_trained")(cfg, checkpoint, device)


def _is_recurrent(agent: Any) -> bool:
    """Whether the agent's actions depend on the earlier steps of an episode (a recurrent state). An agent may say
    so with a ``recurrent`` attribute; otherwise DRQN's network tells by the size of its state (0 for cell=none)."""
    declared = getattr(agent, "recurrent", None)
    if declared is not None:
        return bool(declared)
    return getattr(getattr(agent, "online", None), "state_size", 0) > 0


# ------------------------------------------------------------------------------------------------ acting
class Policy:
    """The deterministic policy of a trained env agent: ``act`` on one observation or a batch, ``reset`` between
    episodes, ``make_env`` for the run's env.

    Deterministic means rl-eval's evaluation policy: no exploration noise (DDPG), the mean weights of noisy layers
    and greedy actions (Rainbow, DRQN). The one exception is a run that set ``agent.eval_epsilon`` above its
    default 0: its evaluation episodes, and so ``act``, take that share of random actions (pass
    ``overrides=["agent.eval_epsilon=0"]`` for greedy ones).

    Batches: row ``i`` of a batch is its own episode. A feed-forward agent (DDPG, Rainbow, DRQN with cell=none)
    takes any batch size at any call. A recurrent agent (DRQN) keeps one hidden state per row: the first ``act``
    after loading or ``reset()`` fixes the batch size (1 for a single observation) until the next ``reset()``, and
    another size raises a ValueError instead of silently starting new episodes. ``reset()`` starts new episodes
    for every row; call it before each episode (it costs nothing for a feed-forward agent)."""

    def __init__(self, trained: TrainedAgent) -> None:
        _require_env_run(trained.cfg, trained.run_dir)
        self.trained = trained
        self.agent = trained.agent
        self.cfg = trained.cfg
        self.checkpoint = trained.checkpoint
        self.device = trained.device
        self.observation_space: gym.spaces.Space = trained.observation_space
        self.action_space: gym.spaces.Space = trained.action_space
        self.recurrent = _is_recurrent(self.agent)
        self._episodes: int | None = None  # rows of the recurrent state in use; None: new episodes at the next act

    def __repr__(self) -> str:
        return f"Policy({self.cfg.agent.name} on {self.cfg.env.id}, checkpoint {self.checkpoint}, {self.device})"

    def act(self, obs: Any) -> np.ndarray:
        """One observation (the shape of ``observation_space``) -> one action, or a batch ``[B, *obs_shape]`` ->
        ``[B, *action_shape]`` actions, as numpy: floats within the action bounds for continuous actions, int64
        (a numpy scalar for one observation) for discrete ones."""
        obs = np.asarray(obs)
        single = self._is_single(obs)
        batch = obs[None] if single else obs
        if self.recurrent:
            if self._episodes is not None and len(batch) != self._episodes:
                raise ValueError(
                    f"this recurrent policy holds hidden states for {self._episodes} episode(s) and got a batch of "
                    f"{len(batch)}: call reset() to start {len(batch)} new episode(s)"
                )
            self._episodes = len(batch)
        with torch.no_grad():
            actions = np.asarray(self.agent.act(batch, explore=False))
        if isinstance(self.action_space, gym.spaces.Discrete):
            actions = actions.astype(np.int64, copy=False)
        return actions[0] if single else actions

    def _is_single(self, obs: np.ndarray) -> bool:
        shape = tuple(self.observation_space.shape or ())
        if obs.shape == shape:
            return True
        if obs.ndim == len(shape) + 1 and obs.shape[1:] == shape:
            if len(obs) == 0:
                raise ValueError("act() got an empty batch of observations")
            return False
        raise ValueError(
            f"act() takes one observation of shape {shape} or a batch of shape (B{''.join(f', {n}' for n in shape)}), "
            f"got shape {obs.shape}"
        )

    def reset(self) -> None:
        """Start new episodes: a recurrent agent forgets its hidden states (the next ``act`` may take a batch of
        another size). Call it before each episode; a feed-forward agent has nothing to forget."""
        self.agent.reset(np.ones(self._episodes or 1, dtype=bool), explore=False)
        self._episodes = None

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        """A new env as the run made them (its wrappers included), e.g. ``render_mode="human"`` to watch; seed it
        with ``env.reset(seed=...)``. The caller closes it."""
        from rl_runner.envs.make import make_env

        return make_env(self.cfg.env, render_mode=render_mode)
