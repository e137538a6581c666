"""A second env runner, added the way docs/architecture.md tells: an on-policy cadence (collect a rollout of every
env, learn from it, start the next) on top of the shared env loop, with an agent that has no replay, no warm-up and
no ``ready_to_learn``. It lives in tests/ and is registered by the test that uses it, with one registry line for
the runner and one for the agent: nothing in rl_runner/ knows it.

The agent is a scripted softmax policy over a linear score of the observation, nudged after each rollout towards
the actions that earned rewards (REINFORCE on immediate rewards: a script, not an algorithm to learn with). Its
state is what a real on-policy agent keeps: weights, an optimiser-free learning rule, its own random stream, and
the rollout in progress, all checkpointed so that a resume mid-rollout continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping

import gymnasium as gym
import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from rl_runner.agents.base import Transition
from rl_runner.checkpoint import Stateful
from rl_runner.choices import ActionSpace
from rl_runner.clock import Clock
from rl_runner.logging import MetricAccumulator, RunLogger
from rl_runner.registry import ENV_EVAL_OPTIONS, RunnerEntry
from rl_runner.runners.base import RunContext
from rl_runner.runners.env_loop import EnvLoop, train_in_envs
from rl_runner.schemas import AgentConfig, positive

RUNNER = RunnerEntry(
    trains=__name__,
    loads="rl_runner.runners.env_loop",  # a trained env agent loads and plays as every other
    needs="env",
    owned_keys=frozenset({"action_spaces", "rollout"}),
    eval_options=ENV_EVAL_OPTIONS,
)
AGENT = f"{__name__}:ScriptedPolicy"


@dataclass
class ScriptedConfig(AgentConfig):
    action_spaces: List[ActionSpace] = MISSING
    rollout: int = positive()
    lr: float = positive()
    temperature: float = positive()


ConfigStore.instance().store(group="schema/agent", name="scripted", node=ScriptedConfig)


def run(cfg: DictConfig, context: RunContext) -> dict:
    return train_in_envs(cfg, context, RolloutLoop)


class RolloutLoop(EnvLoop):
    """``agent.rollout`` steps of every env with the agent's actions, then one update on what they collected."""

    def __init__(self, cfg: DictConfig, agent: Any, envs: gym.vector.VectorEnv, eval_env: gym.Env, clock: Clock):
        super().__init__(cfg, agent, envs, eval_env, clock)
        self.rollout = int(cfg.agent.rollout)
        self.collected = 0  # steps of the rollout in progress

    def begin(self, saved: dict | None) -> None:
        super().begin(saved)
        if saved is not None:
            self.collected = saved["collected"]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "collected": self.collected}

    def advance(self, metrics: MetricAccumulator, logger: RunLogger) -> None:
        self.step(self.agent.act(self.obs, explore=True), logger)
        self.collected += 1
        if self.collected == self.rollout:
            metrics.add(self.agent.learn())
            self.collected = 0


class Rollout:
    """The steps collected since the last update: observations [T, N, O], actions [T, N], rewards [T, N]."""

    def __init__(self) -> None:
        self.steps: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def state_dict(self) -> dict:
        return {"steps": list(self.steps)}

    def load_state_dict(self, state: dict) -> None:
        self.steps = list(state["steps"])


class RandomStream:
    """The agent's own torch generator, so that its sampling is part of its checkpointed state."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["state"])


class ScriptedPolicy:
    def __init__(
        self,
        *,
        lr: float,
        temperature: float,
        net: Mapping[str, Any],
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        num_envs: int,
        device: torch.device,
        clock: Clock,
    ) -> None:
        self.device, self.lr, self.temperature = device, float(lr), float(temperature)
        self.scores = torch.nn.Linear(int(np.prod(observation_space.shape)), int(action_space.n), bias=False)
        self.rollout = Rollout()
        self.stream = RandomStream(int(torch.randint(2**31 - 1, ())))  # from the run's seeded stream

    def _probabilities(self, obs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = torch.as_tensor(obs, dtype=torch.float32).flatten(1)
        return inputs, torch.softmax(self.scores(inputs) / self.temperature, dim=-1)

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool) -> np.ndarray:
        _, probabilities = self._probabilities(obs)
        if not explore:
            return probabilities.argmax(-1).numpy()
        return torch.multinomial(probabilities, 1, generator=self.stream.generator)[:, 0].numpy()

    def observe(self, transition: Transition) -> None:
        t = transition
        self.rollout.steps.append(
            (torch.as_tensor(t.obs, dtype=torch.float32), torch.as_tensor(t.actions), torch.as_tensor(t.rewards))
        )

    def reset(self, done: np.ndarray, explore: bool = True) -> None:
        pass  # no per-episode state

    @torch.no_grad()
    def learn(self) -> dict[str, torch.Tensor]:
        obs, actions, rewards = (torch.stack(column) for column in zip(*self.rollout.steps))  # [T, N, ...]
        _, probabilities = self._probabilities(obs.flatten(0, 1).numpy())
        chosen = torch.nn.functional.one_hot(actions.flatten().long(), probabilities.shape[-1]).float()
        advantage = (rewards.flatten() - rewards.mean()).float()[:, None]  # [T*N, 1]
        step = ((chosen - probabilities) * advantage).T @ obs.flatten(0, 1).flatten(1) / len(advantage)
        self.scores.weight += self.lr * step
        self.rollout.steps.clear()
        return {"loss/reward_mean": rewards.float().mean(), "charts/weight_norm": self.scores.weight.norm()}

    def state_groups(self) -> Mapping[str, Stateful]:
        return {"policy": self.scores, "rollout": self.rollout, "stream": self.stream}

    def train_mode(self, training: bool) -> None:
        pass  # no layer behaves differently in evaluation
