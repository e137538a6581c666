"""Deep Deterministic Policy Gradient (Lillicrap et al., 2016).

A deterministic actor mu(s) and a critic Q(s, a), each with a slowly tracking target copy. The critic
regresses on r + gamma * (1 - terminated) * Q'(s', mu'(s')); the actor climbs the critic's gradient
dQ/da at a = mu(s). Exploration adds Gaussian or Ornstein-Uhlenbeck noise to mu(s).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rl_runner.agents.base import Transition
from rl_runner.agents.common import (
    SoftUpdate,
    gradient_step,
    has_batch_norm,
    make_adam,
    make_target,
    replay_needed_to_learn,
    require_vector_observations,
)
from rl_runner.buffers import ReplayBuffer, TransitionBatch
from rl_runner.checkpoint import Stateful
from rl_runner.choices import ExplorationNoise
from rl_runner.clock import Clock
from rl_runner.networks import build_mlp, resolve_net_spec
from rl_runner.schemas import MLPConfig


class DeterministicActor(nn.Module):
    """mu(s): an MLP with a tanh output rescaled to the env's action bounds."""

    def __init__(self, obs_dim: int, action_low: np.ndarray, action_high: np.ndarray, spec: MLPConfig) -> None:
        super().__init__()
        self.body = build_mlp(obs_dim, len(action_low), spec)
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        self.register_buffer("action_scale", (high - low) / 2)
        self.register_buffer("action_bias", (high + low) / 2)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.body(obs)) * self.action_scale + self.action_bias  # [B, A]


class QCritic(nn.Module):
    """Q(s, a): an MLP on the concatenated observation and action."""

    def __init__(self, obs_dim: int, action_dim: int, spec: MLPConfig) -> None:
        super().__init__()
        self.body = build_mlp(obs_dim + action_dim, 1, spec)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([obs, actions], dim=-1)).squeeze(-1)  # [B]


class GaussianNoise:
    def __init__(self, sigma: torch.Tensor) -> None:
        self.sigma = sigma  # [A]

    def sample(self, num_envs: int) -> torch.Tensor:
        return torch.randn((num_envs, *self.sigma.shape), device=self.sigma.device) * self.sigma

    def reset(self, done: np.ndarray) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class OrnsteinUhlenbeckNoise:
    """Temporally correlated noise, one process per env: x <- a x + b e with a = 1 - theta dt and e ~ N(0, 1),
    the Euler step of dx = -theta x dt + ... . ``b`` is set so that the stationary std is ``sigma``, and every
    episode starts from the stationary distribution, so ``sigma`` means the same as for Gaussian noise at
    every step; the correlation time is 1 / (theta dt) steps."""

    DT = 1e-2  # the time step of the DDPG paper's and OpenAI Baselines' implementation

    def __init__(self, sigma: torch.Tensor, theta: float, num_envs: int) -> None:
        self.sigma = sigma
        self.decay = 1.0 - theta * self.DT
        self.diffusion = sigma * math.sqrt(1.0 - self.decay**2)  # stationary variance b^2 / (1 - a^2) = sigma^2
        self.state = torch.randn((num_envs, *sigma.shape), device=sigma.device) * sigma  # [N, A]

    def sample(self, num_envs: int) -> torch.Tensor:
        self.state = self.decay * self.state + self.diffusion * torch.randn_like(self.state)
        return self.state

    def reset(self, done: np.ndarray) -> None:
        if done.any():
            mask = torch.from_numpy(done).to(self.state.device)
            self.state[mask] = torch.randn_like(self.state[mask]) * self.sigma

    def state_dict(self) -> dict:
        return {"state": self.state.cpu()}

    def load_state_dict(self, state: dict) -> None:
        saved = state["state"].to(self.sigma.device)
        if saved.shape == self.state.shape:
            self.state = saved
        # else: a resume with another env.num_envs, whose episodes start anew (the env snapshot is refused
        # too): keep the fresh stationary draws of this run's envs


class DDPG:
    def __init__(
        self,
        *,
        gamma: float,
        tau: float,
        alpha: float,
        beta: float,
        batch_size: int,
        buffer_size: int,
        learning_starts: int,
        noise: ExplorationNoise,
        noise_scale: float,
        ou_theta: float,
        actor_net: Mapping[str, Any],
        critic_net: Mapping[str, Any],
        compile: bool,
        net: Mapping[str, Any],
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        num_envs: int,
        device: torch.device,
        clock: Clock,
    ) -> None:
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"DDPG needs continuous (Box) actions, the env has {action_space}")
        obs_dim, action_dim = require_vector_observations(observation_space, "DDPG"), action_space.shape[0]
        self.device = device
        self.clock = clock
        self.gamma = float(gamma)
        self.tau = float(tau)
        self.batch_size = int(batch_size)

        self.actor = DeterministicActor(obs_dim, action_space.low, action_space.high, resolve_net_spec(net, actor_net))
        self.critic = QCritic(obs_dim, action_dim, resolve_net_spec(net, critic_net))
        self.actor.to(device)
        self.critic.to(device)
        self.target_actor = make_target(self.actor)
        self.target_critic = make_target(self.critic)
        self.update_targets = [
            SoftUpdate(self.target_actor, self.actor, self.tau),
            SoftUpdate(self.target_critic, self.critic, self.tau),
        ]
        self.actor_params = list(self.actor.parameters())
        self.critic_params = list(self.critic.parameters())
        self.actor_optimizer = make_adam(self.actor_params, alpha, device)
        self.critic_optimizer = make_adam(self.critic_params, beta, device)
        self.actor_has_batch_norm = has_batch_norm(self.actor)

        sigma = noise_scale * self.actor.action_scale
        self.noise = (
            GaussianNoise(sigma)
            if noise is ExplorationNoise.gaussian
            else OrnsteinUhlenbeckNoise(sigma, ou_theta, num_envs)
        )
        self.action_low = torch.as_tensor(action_space.low, device=device)
        self.action_high = torch.as_tensor(action_space.high, device=device)
        self.replay = ReplayBuffer(buffer_size, observation_space.shape, action_space.shape, device)
        self.min_replay = replay_needed_to_learn(self.batch_size, int(learning_starts), self.replay.capacity)
        if compile:  # the losses' forward and backward become fused kernels; optimiser steps stay eager
            self._critic_loss = torch.compile(self._critic_loss)
            self._actor_loss = torch.compile(self._actor_loss)

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool) -> np.ndarray:
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device)  # [N, O]
        if self.actor_has_batch_norm and self.actor.training:
            # batch statistics of a few observations are meaningless: act with the running statistics
            self.actor.eval()
            actions = self.actor(obs_tensor)
            self.actor.train()
        else:
            actions = self.actor(obs_tensor)  # [N, A]
        if explore:
            actions = torch.clamp(actions + self.noise.sample(len(obs_tensor)), self.action_low, self.action_high)
        return actions.cpu().numpy()

    def reset(self, done: np.ndarray, explore: bool = True) -> None:
        if explore:  # evaluation is deterministic: no per-episode state
            self.noise.reset(done)

    def warm_up(self, obs: np.ndarray) -> None:
        pass  # acting keeps no per-step state: nothing to follow while the runner acts at random

    def observe(self, transition: Transition) -> None:
        t = transition
        self.replay.add(t.obs, t.actions, t.rewards, t.next_obs, t.terminated, t.truncated)

    def ready_to_learn(self) -> bool:
        return len(self.replay) >= self.min_replay

    def _critic_loss(self, batch: TransitionBatch) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            next_q = self.target_critic(batch.next_obs, self.target_actor(batch.next_obs))  # [B]
            td_target = batch.rewards + self.gamma * (1.0 - batch.terminated) * next_q  # [B]
        q = self.critic(batch.obs, batch.actions)  # [B]
        return F.mse_loss(q, td_target), q.detach().mean()

    def _actor_loss(self, obs: torch.Tensor) -> torch.Tensor:
        return -self.critic(obs, self.actor(obs)).mean()

    def update(self) -> dict[str, torch.Tensor]:
        batch = self.replay.sample(self.batch_size)
        critic_loss, q_mean = self._critic_loss(batch)
        gradient_step(self.critic_optimizer, self.critic_params, critic_loss)
        actor_loss = self._actor_loss(batch.obs)  # through the critic just updated
        gradient_step(self.actor_optimizer, self.actor_params, actor_loss)
        for soft_update in self.update_targets:
            soft_update()
        return {"loss/critic": critic_loss.detach(), "loss/actor": actor_loss.detach(), "q/mean": q_mean}

    def state_groups(self) -> dict[str, Stateful]:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "target_actor": self.target_actor,
            "target_critic": self.target_critic,
            "actor_optimizer": self.actor_optimizer,
            "critic_optimizer": self.critic_optimizer,
            "exploration_noise": self.noise,
        }

    def replay_groups(self) -> dict[str, Stateful]:
        return {"replay": self.replay}

    def train_mode(self, training: bool) -> None:
        self.actor.train(training)
        self.critic.train(training)
