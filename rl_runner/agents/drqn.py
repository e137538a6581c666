"""DRQN (Hausknecht & Stone, 2015): a Q-network with an LSTM or GRU just before its output layer, learned
from replayed sequences, for tasks where the current observation does not tell the state.

- Network: the ``net`` MLP torso, then ``cell`` (lstm | gru | none) of width ``rnn_hidden``, then the Q
  head (plain or ``dueling``). ``none`` puts a feed-forward layer of the same width in the core's place:
  the memoryless baseline.
- Replay: whole episodes or burn-in windows (``buffers/episodes.py``). Targets are double-Q (``double``)
  from a target net synced every ``target_update`` updates, computed along each sequence: the online
  and target nets run over ``obs_0, next_obs_0 .. next_obs_{T-1}`` from the same start state, so step
  ``t``'s bootstrap value reads the state after ``obs_t``. Padded and burn-in steps carry no loss.
- Acting state: one recurrent state per training env, reset at each episode start and advanced only by
  acting; learning runs on states of its own (zero, or the stored acting states with ``stored_state``),
  so an update never disturbs acting (the seed notes saved and restored the state around learning for
  this). Evaluation episodes keep a separate state. States stay on the device.
- Exploration: epsilon-greedy on a linear schedule over the run, shared with Rainbow.
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from rl_runner.agents.base import Transition
from rl_runner.agents.common import (
    ObservationEncoder,
    PeriodicTargetSync,
    gradient_step,
    has_batch_norm,
    make_adam,
    make_target,
    replay_needed_to_learn,
)
from rl_runner.agents.value_targets import EpsilonSchedule, epsilon_greedy, next_actions, pick
from rl_runner.buffers.episodes import EpisodeReplay, SequenceBatch
from rl_runner.checkpoint import Stateful
from rl_runner.choices import RecurrentCell, SequenceReplay
from rl_runner.clock import Clock
from rl_runner.networks import resolve_net_spec
from rl_runner.networks.recurrent import RecurrentQNetwork


class ActingState:
    """The training envs' recurrent states [num_envs, S], saved with the checkpoint so that a resumed run
    continues its episodes with the memory it had."""

    def __init__(self, state: torch.Tensor) -> None:
        self.state = state

    def state_dict(self) -> dict:
        return {"state": self.state.cpu().clone()}

    def load_state_dict(self, saved: dict) -> None:
        if saved["state"].shape != self.state.shape:
            raise ValueError(
                f"saved acting state has shape {tuple(saved['state'].shape)}, expected {tuple(self.state.shape)}"
            )
        self.state = saved["state"].to(self.state.device)


class DRQN:
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
        cell: RecurrentCell,
        rnn_hidden: int,
        replay: SequenceReplay,
        sequence_length: int,
        burn_in: int,
        stored_state: bool,
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
            raise ValueError(f"DRQN needs discrete actions, the env has {action_space}")
        self.encode = ObservationEncoder(observation_space, "DRQN")
        self.device, self.clock = device, clock
        self.gamma, self.batch_size, self.grad_clip = float(gamma), int(batch_size), float(grad_clip)
        self.double = bool(double)
        self.num_actions, self.action_start = int(action_space.n), int(action_space.start)
        self.exploration = EpsilonSchedule(
            float(epsilon_start), float(epsilon_end), float(epsilon_fraction), float(eval_epsilon)
        )

        spec = resolve_net_spec(net)
        self.online = RecurrentQNetwork(self.encode.size, self.num_actions, spec, cell, int(rnn_hidden), bool(dueling))
        if has_batch_norm(self.online):
            raise ValueError("DRQN cannot use net.norm=batch: batch statistics would mix the steps of a sequence")
        self.online.to(device)
        self.target = make_target(self.online)
        self.target_sync = PeriodicTargetSync(self.target, self.online, float(tau), int(target_update))
        self.params = list(self.online.parameters())
        self.optimizer = make_adam(self.params, float(lr), device, eps=float(adam_eps))

        state_size = self.online.state_size
        self.acting = ActingState(self.online.core.initial_state(num_envs, device))
        self.eval_state: torch.Tensor | None = None
        self.state_before_act: torch.Tensor | None = None  # set by act or warm_up, stored by observe, then cleared
        self.stored_state = bool(stored_state) and state_size > 0
        seed = int(torch.randint(2**31 - 1, ()))  # from the seeded torch stream: runs stay repeatable
        self.replay = EpisodeReplay(
            int(buffer_size),
            self.encode.size,
            state_size if self.stored_state else 0,
            num_envs,
            device,
            SequenceReplay(replay),
            int(sequence_length),
            int(burn_in),
            seed,
        )
        self.min_replay = replay_needed_to_learn(self.batch_size, int(learning_starts), self.replay.capacity)
        self._losses = torch.compile(self._losses) if compile else self._losses

    def epsilon(self) -> float:
        return self.exploration.at(self.clock.fraction)

    # ---------------------------------------------------------------- acting
    def _step(self, obs: np.ndarray, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Q-values [N, A] for one step of N envs and the state after it."""
        inputs = torch.from_numpy(self.encode(obs)).to(self.device).unsqueeze(1)  # [N, 1, O]
        q_values, next_state = self.online(inputs, state)
        return q_values[:, 0], next_state

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool) -> np.ndarray:
        if explore:
            self.state_before_act = self.acting.state
            q_values, self.acting.state = self._step(obs, self.acting.state)
            epsilon = self.epsilon()
        else:
            if self.eval_state is None or self.eval_state.shape[0] != len(obs):
                self.eval_state = self.online.core.initial_state(len(obs), self.device)
            q_values, self.eval_state = self._step(obs, self.eval_state)
            epsilon = self.exploration.evaluation
        actions = epsilon_greedy(q_values.argmax(dim=-1), self.num_actions, epsilon)
        return (actions + self.action_start).cpu().numpy()

    def reset(self, done: np.ndarray, explore: bool = True) -> None:
        if not explore:
            self.eval_state = self.online.core.initial_state(len(done), self.device)
            return
        self.acting.state = self.acting.state.masked_fill(torch.from_numpy(done).to(self.device)[:, None], 0.0)
        self.replay.cut(done)  # no-op after an episode end the replay saw; closes episodes a resume abandoned

    @torch.no_grad()
    def warm_up(self, obs: np.ndarray) -> None:
        """The runner acts at random on ``obs``: the memory still follows the episode, as ``act`` would move it."""
        self.state_before_act = self.acting.state
        _, self.acting.state = self._step(obs, self.acting.state)

    # ---------------------------------------------------------------- memory
    @torch.no_grad()
    def observe(self, transition: Transition) -> None:
        t = transition
        if self.state_before_act is None:
            raise RuntimeError("DRQN.observe() of a step without act() or warm_up(): no acting state to store")
        self.replay.add(
            self.encode(t.obs),
            np.asarray(t.actions) - self.action_start,
            t.rewards,
            self.encode(t.next_obs),
            t.terminated,
            t.truncated,
            states=self.state_before_act if self.stored_state else None,
        )
        self.state_before_act = None

    def ready_to_learn(self) -> bool:
        return len(self.replay) >= self.min_replay and self.replay.sampleable() > 0

    # ---------------------------------------------------------------- learning
    def _start_states(self, batch: SequenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Online and target states at the learning window's first step: from the stored acting state (or
        zero), advanced through the burn-in steps without gradients."""
        start = batch.start_state
        if start is None:
            start = self.online.core.initial_state(batch.obs.shape[0], self.device)
        with torch.no_grad():
            online = self.online.advance(batch.burn_in_obs, batch.burn_in_lengths, start)
            target = self.target.advance(batch.burn_in_obs, batch.burn_in_lengths, start)
        return online, target

    def _losses(self, batch: SequenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked mean Huber loss over the window's real steps, and the taken actions' Q-values [B, T]."""
        online_state, target_state = self._start_states(batch)
        inputs = torch.cat([batch.obs[:, :1], batch.next_obs], dim=1)  # [B, T+1, O]: obs_0, obs_1, .. final
        q_online, _ = self.online(inputs, online_state)  # [B, T+1, A]
        with torch.no_grad():
            q_target, _ = self.target(inputs, target_state)
            next_online, next_target = q_online[:, 1:].detach(), q_target[:, 1:]
            chosen = next_actions(next_online, next_target, self.double)  # [B, T]
            bootstrap = self.gamma * (1.0 - batch.terminated)
            target = batch.rewards + bootstrap * pick(next_target, chosen)  # [B, T]
        q_taken = pick(q_online[:, :-1], batch.actions)  # [B, T]
        per_step = F.smooth_l1_loss(q_taken, target, reduction="none")
        loss = (per_step * batch.mask).sum() / batch.mask.sum()
        return loss, q_taken.detach()

    def update(self) -> dict[str, torch.Tensor]:
        batch = self.replay.sample(self.batch_size)
        loss, q_taken = self._losses(batch)
        grad_norm = gradient_step(self.optimizer, self.params, loss, self.grad_clip)
        self.target_sync.after_update()
        real_steps = batch.mask.sum()
        return {
            "loss/q": loss.detach(),
            "q/mean": (q_taken * batch.mask).sum() / real_steps,
            "charts/grad_norm": grad_norm,
            "charts/epsilon": torch.tensor(self.epsilon()),
            "charts/sequence_steps": real_steps / batch.mask.shape[0],
            "charts/replay_fill": torch.tensor(len(self.replay) / self.replay.capacity),
        }

    # ---------------------------------------------------------------- checkpoints
    def state_groups(self) -> dict[str, Stateful]:
        return {
            "online": self.online,
            "target": self.target,
            "optimizer": self.optimizer,
            "counter": self.target_sync,
            "acting": self.acting,
        }

    def replay_groups(self) -> dict[str, Stateful]:
        return {"replay": self.replay}

    def train_mode(self, training: bool) -> None:
        self.online.train(training)
