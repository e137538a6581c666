"""Small pieces every agent composes: target networks, soft updates, optimisers, gradient steps."""

from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from rl_runner.agents.base import Transition


def make_target(online: nn.Module) -> nn.Module:
    """A frozen copy of ``online``: same constructor arguments and same initial parameters by construction
    (a target built separately from the same config can silently differ, e.g. in layer sizes after an override)."""
    target = copy.deepcopy(online)
    target.requires_grad_(False)
    target.eval()
    return target


class SoftUpdate:
    """target <- (1 - tau) * target + tau * online, for parameters and float buffers (norm statistics),
    as one fused call over tensor lists gathered once (walking the modules every step costs more than
    the arithmetic for small networks)."""

    def __init__(self, target: nn.Module, online: nn.Module, tau: float) -> None:
        self.target_tensors = [t for t in (*target.parameters(), *target.buffers()) if t.is_floating_point()]
        self.online_tensors = [t for t in (*online.parameters(), *online.buffers()) if t.is_floating_point()]
        self.tau = tau

    @torch.no_grad()
    def __call__(self) -> None:
        torch._foreach_lerp_(self.target_tensors, self.online_tensors, self.tau)


class PeriodicTargetSync:
    """Moves ``target`` towards ``online`` (``tau`` = 1 copies) once every ``every`` updates. The count of
    updates is its state, saved with the checkpoint so that a resumed run keeps the sync cadence."""

    def __init__(self, target: nn.Module, online: nn.Module, tau: float, every: int) -> None:
        self.sync = SoftUpdate(target, online, tau)
        self.every = every
        self.updates = 0

    def after_update(self) -> None:
        self.updates += 1
        if self.updates % self.every == 0:
            self.sync()

    def state_dict(self) -> dict:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])


def make_adam(
    params: Iterable[nn.Parameter],
    lr: float,
    device: torch.device,
    weight_decay: float = 0.0,
    eps: float = 1e-8,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Adam:
    # the fused kernel updates all parameters in one call instead of a dozen small ops per tensor
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(params, lr=lr, eps=eps, betas=betas, weight_decay=weight_decay, fused=fused)


def gradient_step(
    optimizer: torch.optim.Optimizer, params: list[nn.Parameter], loss: torch.Tensor, max_norm: float | None = None
) -> torch.Tensor | None:
    """Step ``optimizer`` on the gradient of ``loss`` with respect to ``params`` only, clipped to ``max_norm`` when
    given; returns the gradient norm before clipping (a detached scalar tensor) when clipping, else None.

    Autograd skips every other parameter the loss depends on (the critic, in an actor update; the frozen GAN, in an
    encoder update) instead of computing gradients that would then be zeroed, and each gradient replaces the
    parameter's last one, so no ``zero_grad`` is needed. A parameter the loss does not reach gets no gradient (and
    so no optimiser step), as with ``loss.backward()``."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    for param, grad in zip(params, grads):
        param.grad = grad
    norm = nn.utils.clip_grad_norm_(params, max_norm).detach() if max_norm is not None else None
    optimizer.step()
    return norm


def replay_needed_to_learn(batch_size: int, learning_starts: int, capacity: int) -> int:
    """Transitions the replay must hold before learning: learning_starts (at least a batch, at most the
    capacity), also when a resume without the saved replay refills it from empty."""
    return min(max(batch_size, learning_starts), capacity)


def require_vector_observations(observation_space: gym.spaces.Space, agent: str) -> int:
    """The observation size for an MLP torso; any other observation space is a one-line error."""
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(f"{agent}'s MLP needs flat vector observations, the env has {observation_space}")
    return int(observation_space.shape[0])


def is_image_space(space: gym.spaces.Space) -> bool:
    """Image observations [C, H, W] of bytes or booleans (Atari frame stacks, MinAtar's object channels)."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype in (np.uint8, np.bool_)


def learning_signals(transition: Transition) -> tuple[np.ndarray, np.ndarray]:
    """The rewards [N] and terminations [N] an agent learns from: the env's own, or the learning-only versions an
    env's ``learning_signals`` wrapper reports in the infos (Atari's clipped rewards and life-loss terminals), so
    that what is logged stays the raw game. Where an episode ended this step the infos are the new episode's
    reset's and the ended step's own are in ``final_info``."""
    done = transition.terminated | transition.truncated
    rewards = _info_values(transition.infos, "learning_reward", done, transition.rewards)
    terminated = _info_values(transition.infos, "learning_terminated", done, transition.terminated)
    return rewards, terminated.astype(bool)


def _info_values(infos: Mapping[str, Any], key: str, done: np.ndarray, default: np.ndarray) -> np.ndarray:
    values = np.array(default, copy=True)
    for source, where in ((infos, ~done), (infos.get("final_info", {}), done)):
        if key in source:
            reported = source[f"_{key}"] & where
            values[reported] = source[key][reported]
    return values


class ObservationEncoder:
    """Env observations -> float32 vectors for an MLP: a flat Box as it is, ``Discrete(n)`` one-hot (an
    index fed as a number would tell the net that state 3 lies between states 2 and 4)."""

    def __init__(self, observation_space: gym.spaces.Space, agent: str) -> None:
        self.space = observation_space
        if isinstance(observation_space, gym.spaces.Discrete):
            self.size = int(observation_space.n)
        else:
            self.size = require_vector_observations(observation_space, agent)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """[N, *obs_shape] -> [N, size]"""
        if isinstance(self.space, gym.spaces.Discrete):
            return np.eye(self.size, dtype=np.float32)[np.asarray(obs, dtype=np.int64) - int(self.space.start)]
        return np.asarray(obs, dtype=np.float32)


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
