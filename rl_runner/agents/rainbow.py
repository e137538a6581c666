"""Rainbow (Hessel et al., 2018): DQN with six improvements, each switchable.

- ``double``: the online net picks the bootstrap action, the target net values it (van Hasselt et al., 2016).
- ``dueling``: value and mean-centred advantage streams (Wang et al., 2016), per atom when distributional.
- ``per``: proportional prioritized replay with importance-sampling weights, beta annealed to 1 over the run
  (Schaul et al., 2016); priorities come from each update's per-sample loss.
- ``noisy``: factorised noisy layers in the head (Fortunato et al., 2018), new noise once per acting step
  and once per update; evaluation uses the mean weights. Without them: epsilon-greedy on a linear schedule.
- ``n_step``: n-step returns (Sutton, 1988), per env, shorter at episode ends; 1 turns them off.
- ``distributional``: C51, a categorical return distribution on ``atoms`` points in [v_min, v_max] trained
  by cross-entropy to its projected Bellman target (Bellemare et al., 2017).

The network is a torso followed by the Q head, whose streams hold one hidden layer (noisy when ``noisy``): for
vector observations the ``net`` MLP (``net.depth - 1`` hidden layers, the head holds the last), for images a
conv torso (``net=nature_cnn`` on Atari, ``minatar_cnn`` on MinAtar; the head holds ``net.hidden`` units). The
target net is a frozen copy synced every ``target_update`` updates (``tau`` = 1 copies, below 1 moves it part of
the way). Image observations are replayed from ``FrameReplay`` (each frame stored once, as bytes).

It learns from the env's learning signals where an env provides them (Atari's clipped rewards and optional
life-loss terminals, ``conf/env/breakout.yaml``), while the runner logs the raw game score.
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rl_runner.agents.base import Transition
from rl_runner.agents.common import (
    PeriodicTargetSync,
    gradient_step,
    is_image_space,
    learning_signals,
    make_adam,
    make_target,
    replay_needed_to_learn,
)
from rl_runner.agents.value_targets import (
    EpsilonSchedule,
    categorical_projection,
    epsilon_greedy,
    next_actions,
    pick,
)
from rl_runner.buffers import FrameReplay, NStepAccumulator, PrioritizedReplay, ReplayBuffer, TransitionBatch
from rl_runner.checkpoint import Stateful
from rl_runner.choices import Activation
from rl_runner.clock import Clock, linear_schedule
from rl_runner.networks import ACTIVATIONS
from rl_runner.networks.noisy import NoisyLinear, mean_sigma, noisy_layers, reset_noise, set_noise
from rl_runner.networks.q_heads import QHead
from rl_runner.networks.torsos import head_torso

# The command-line override that switches each part off: ablations in the tests and scripts/bench_rainbow.py.
PARTS_OFF = {
    "double": "agent.double=false",
    "dueling": "agent.dueling=false",
    "per": "agent.per=false",
    "noisy": "agent.noisy=false",
    "n_step": "agent.n_step=1",
    "distributional": "agent.distributional=false",
}


class QNetwork(nn.Module):
    """Observations [..., *obs_shape] -> head outputs [..., A, atoms] (Q-values when atoms == 1, logits otherwise)."""

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        num_actions: int,
        net: Mapping[str, Any],
        atoms: int,
        dueling: bool,
        noisy: bool,
        sigma0: float,
    ) -> None:
        super().__init__()
        self.torso, width = head_torso(observation_space, net, "Rainbow")
        activation = ACTIVATIONS[Activation(net["activation"])]
        self.head = QHead(width, num_actions, int(net["hidden"]), atoms, dueling, noisy, sigma0, activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.torso(obs))


class Rainbow:
    def __init__(
        self,
        *,
        gamma: float,
        lr: float,
        adam_eps: float,
        batch_size: int,
        buffer_size: int,
        learning_starts: int,
        target_update: int,
        tau: float,
        grad_clip: float,
        double: bool,
        dueling: bool,
        per: bool,
        per_alpha: float,
        per_beta_start: float,
        per_eps: float,
        noisy: bool,
        noisy_sigma0: float,
        n_step: int,
        distributional: bool,
        atoms: int,
        v_min: float,
        v_max: float,
        epsilon_start: float,
        epsilon_end: float,
        epsilon_fraction: float,
        eval_epsilon: float,
        compile: bool,
        net: Mapping[str, Any],
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        num_envs: int,
        device: torch.device,
        clock: Clock,
    ) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"Rainbow needs discrete actions, the env has {action_space}")
        self.device, self.clock = device, clock
        self.gamma, self.batch_size, self.grad_clip = float(gamma), int(batch_size), float(grad_clip)
        self.double, self.per, self.noisy, self.distributional = (
            bool(double),
            bool(per),
            bool(noisy),
            bool(distributional),
        )
        self.num_actions = int(action_space.n)
        self.action_start = int(action_space.start)
        self.per_beta_start = float(per_beta_start)
        self.exploration = EpsilonSchedule(
            float(epsilon_start), float(epsilon_end), float(epsilon_fraction), float(eval_epsilon)
        )

        self.atoms = int(atoms) if self.distributional else 1
        self.support = torch.linspace(float(v_min), float(v_max), self.atoms, device=device)  # [atoms]
        self.online = QNetwork(
            observation_space, self.num_actions, net, self.atoms, bool(dueling), self.noisy, noisy_sigma0
        ).to(device)
        self.target = make_target(self.online)
        self.target_sync = PeriodicTargetSync(self.target, self.online, float(tau), int(target_update))
        self.params = list(self.online.parameters())
        self.optimizer = make_adam(self.params, float(lr), device, eps=float(adam_eps))
        self.noisy_online, self.noisy_target = noisy_layers(self.online), noisy_layers(self.target)
        self.noise_resets = 0  # acting steps and updates that drew new noise (tests count them)

        self.images = is_image_space(observation_space)
        if self.images:
            storage = FrameReplay(int(buffer_size), observation_space.shape, num_envs, device, n_step=int(n_step))
        else:
            storage = ReplayBuffer(int(buffer_size), observation_space.shape, (), device, discounts=True)
        self.storage = storage
        seed = int(torch.randint(2**31 - 1, ()))  # from the seeded torch stream: runs stay repeatable
        self.replay = PrioritizedReplay(storage, float(per_alpha), float(per_eps), seed) if self.per else storage
        self.nstep = NStepAccumulator(int(n_step), self.gamma, num_envs)
        self.min_replay = replay_needed_to_learn(self.batch_size, int(learning_starts), storage.capacity)
        self._losses = torch.compile(self._losses) if compile else self._losses

    # ---------------------------------------------------------------- schedules
    def epsilon(self) -> float:
        return self.exploration.at(self.clock.fraction)

    def beta(self) -> float:
        return linear_schedule(self.per_beta_start, 1.0, self.clock.fraction)

    # ---------------------------------------------------------------- acting
    def q_values(self, outputs: torch.Tensor) -> torch.Tensor:
        """Head outputs [..., A, atoms] -> Q-values [..., A] (the expected return when distributional)."""
        if not self.distributional:
            return outputs.squeeze(-1)
        return (outputs.softmax(dim=-1) * self.support).sum(dim=-1)

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool) -> np.ndarray:
        # images stay bytes until the torso scales them on the device
        obs_tensor = torch.as_tensor(obs, dtype=None if self.images else torch.float32, device=self.device)
        if explore and self.noisy:
            self._reset_noise(self.noisy_online)
        set_noise(self.noisy_online, explore)  # evaluation: the mean weights
        greedy = self.q_values(self.online(obs_tensor)).argmax(dim=-1)  # [N]
        set_noise(self.noisy_online, True)
        if not explore:
            epsilon = self.exploration.evaluation
        else:
            epsilon = 0.0 if self.noisy else self.epsilon()
        return (epsilon_greedy(greedy, self.num_actions, epsilon) + self.action_start).cpu().numpy()

    def reset(self, done: np.ndarray, explore: bool = True) -> None:
        # no per-episode acting state. The n-step windows close with the transitions that end episodes; they are
        # dropped here for a resume that could not restore the env and starts new episodes mid-window
        if explore:
            self.nstep.drop(done)

    def _reset_noise(self, *layer_lists: list[NoisyLinear]) -> None:
        for layers in layer_lists:
            reset_noise(layers)
        self.noise_resets += 1

    def warm_up(self, obs: np.ndarray) -> None:
        pass  # acting keeps no per-step state: nothing to follow while the runner acts at random

    # ---------------------------------------------------------------- memory
    def observe(self, transition: Transition) -> None:
        t = transition
        rewards, terminated = learning_signals(t)
        obs, next_obs = self.storage.encode(t.obs, t.next_obs) if self.images else (t.obs, t.next_obs)
        ready = self.nstep.add(obs, t.actions - self.action_start, rewards, next_obs, terminated, t.truncated)
        if ready is not None:
            self.replay.add(
                obs=ready.obs,
                actions=ready.actions,
                rewards=ready.returns,
                next_obs=ready.next_obs,
                terminated=ready.terminated,
                truncated=np.zeros_like(ready.terminated),  # a cut window bootstraps: only terminations matter
                discounts=ready.discounts,
            )

    def ready_to_learn(self) -> bool:
        return len(self.replay) >= self.min_replay

    # ---------------------------------------------------------------- learning
    def _losses(self, batch: TransitionBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample losses [B] (Huber on the TD error, or cross-entropy to the projected distribution), the
        per-sample errors that set new priorities [B], and the taken actions' Q-values [B]."""
        actions = batch.actions.long()  # [B]
        bootstrap = batch.discounts * (1.0 - batch.terminated)  # [B] gamma**k, 0 after a termination
        with torch.no_grad():
            next_target = self.target(batch.next_obs)  # [B, A, atoms]
            next_online = self.online(batch.next_obs) if self.double else next_target
            chosen = next_actions(self.q_values(next_online), self.q_values(next_target), self.double)  # [B]
            if self.distributional:
                next_probs = pick(next_target.softmax(dim=-1), chosen)  # [B, atoms]
                target = categorical_projection(next_probs, batch.rewards, bootstrap, self.support)  # [B, atoms]
            else:
                target = batch.rewards + bootstrap * pick(next_target.squeeze(-1), chosen)  # [B]
        outputs = pick(self.online(batch.obs), actions)  # [B, atoms]
        if self.distributional:
            per_sample = -(target * outputs.log_softmax(dim=-1)).sum(dim=-1)  # [B] cross-entropy
            q_taken = (outputs.softmax(dim=-1) * self.support).sum(dim=-1)
            return per_sample, per_sample.detach(), q_taken.detach()
        q_taken = outputs.squeeze(-1)  # [B]
        per_sample = F.smooth_l1_loss(q_taken, target, reduction="none")
        return per_sample, (target - q_taken).detach(), q_taken.detach()

    def update(self) -> dict[str, torch.Tensor]:
        if self.noisy:
            self._reset_noise(self.noisy_online, self.noisy_target)
        if self.per:
            beta = self.beta()
            batch, slots, weights = self.replay.sample(self.batch_size, beta)
        else:
            batch, weights = self.replay.sample(self.batch_size), None
        per_sample, errors, q_taken = self._losses(batch)
        loss = (per_sample * weights).mean() if weights is not None else per_sample.mean()
        grad_norm = gradient_step(self.optimizer, self.params, loss, self.grad_clip)
        if self.per:
            self.replay.update_priorities(slots, errors)
        self.target_sync.after_update()

        metrics = {"loss/q": loss.detach(), "q/mean": q_taken.mean(), "charts/grad_norm": grad_norm}
        metrics["charts/replay_fill"] = torch.tensor(len(self.replay) / self.replay.capacity)
        if self.noisy:
            metrics["charts/noisy_sigma"] = mean_sigma(self.noisy_online)
        else:
            metrics["charts/epsilon"] = torch.tensor(self.epsilon())
        if self.per:
            metrics["charts/beta"] = torch.tensor(beta)
        return metrics

    # ---------------------------------------------------------------- checkpoints
    def state_groups(self) -> dict[str, Stateful]:
        return {"online": self.online, "target": self.target, "optimizer": self.optimizer, "counter": self.target_sync}

    def replay_groups(self) -> dict[str, Stateful]:
        return {"replay": self.replay, "nstep": self.nstep}

    def train_mode(self, training: bool) -> None:
        self.online.train(training)
