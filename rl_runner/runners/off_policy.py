"""The off-policy runner (DDPG, Rainbow and DRQN, through one protocol): the shared env loop
(``runners/env_loop.py``) with off-policy cadence.

One step of this loop is one step of every parallel env: uniformly random actions until ``agent.learning_starts``
transitions (the agent is told, ``agent.warm_up``), the agent's own after that, then as many updates as
``agent.updates_per_step`` has accrued, once the agent's replay holds enough to learn from. The agent owns its
replay, so the replay memory is what ``checkpoint.save_replay`` adds to a checkpoint.

A resume past ``learning_starts`` from a checkpoint without the replay refills it from empty, and updates wait until
it holds enough again (``agent.ready_to_learn``). The trained policy, exploring, refills it
(``checkpoint.refill=policy``): uniformly random actions (``random``) would throw away what it has learnt for as
long as the warm-up lasted.
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig

from rl_runner.agents.base import OffPolicyAgent
from rl_runner.checkpoint import Stateful
from rl_runner.choices import Refill
from rl_runner.clock import Clock
from rl_runner.logging import MetricAccumulator, RunLogger
from rl_runner.runners.base import RunContext
from rl_runner.runners.env_loop import EnvLoop, train_in_envs


def random_actions(space: gym.spaces.Space, rng: np.random.Generator, count: int) -> np.ndarray:
    if isinstance(space, gym.spaces.Box):
        return rng.uniform(space.low, space.high, size=(count, *space.shape)).astype(space.dtype)
    if isinstance(space, gym.spaces.Discrete):
        return space.start + rng.integers(space.n, size=count)
    raise ValueError(f"no random warm-up actions for {space}")


def run(cfg: DictConfig, context: RunContext) -> dict:
    return train_in_envs(cfg, context, OffPolicyLoop)


class _Restored:
    """A replay group as the run skeleton sees it: loading it from a checkpoint records its name, so that the loop
    knows which groups a resume refills from empty."""

    def __init__(self, group: Stateful, name: str, restored: set[str]) -> None:
        self.group, self.name, self.restored = group, name, restored

    def state_dict(self) -> dict:
        return self.group.state_dict()

    def load_state_dict(self, state: dict) -> Any:
        self.restored.add(self.name)
        return self.group.load_state_dict(state)


class OffPolicyLoop(EnvLoop):
    agent: OffPolicyAgent

    def __init__(
        self, cfg: DictConfig, agent: OffPolicyAgent, envs: gym.vector.VectorEnv, eval_env: gym.Env, clock: Clock
    ) -> None:
        super().__init__(cfg, agent, envs, eval_env, clock)
        self.learning_starts = int(cfg.agent.learning_starts)
        self.updates_per_step = float(cfg.agent.updates_per_step)
        # warm-up actions get a stream of their own: default_rng(seed) would replay env 0's reset noise
        self.rng = np.random.default_rng(np.random.SeedSequence(int(cfg.seed)).spawn(1)[0])
        self.update_credit = 0.0  # fractional updates owed (updates_per_step may be below 1)
        self.refill = Refill(cfg.checkpoint.refill)
        self.restored_replay: set[str] = set()  # the replay groups this resume loaded (_Restored)
        self.refilling = False  # a resume without the replay: until the agent is ready to learn again

    def begin(self, saved: dict | None) -> None:
        super().begin(saved)
        if saved is not None:
            self.update_credit = saved["update_credit"]
            self.rng.bit_generator.state = saved["warmup_rng"]
            # a checkpoint written while refilling keeps refilling, even one that saved the partial replay;
            # .get: checkpoints written before refills were tracked (the same progress format otherwise)
            missing = set(self.agent.replay_groups()) - self.restored_replay
            self.refilling = bool(saved.get("refilling", False) or missing)

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "update_credit": self.update_credit,
            "warmup_rng": self.rng.bit_generator.state,
            "refilling": self.refilling,
        }

    def replay_groups(self) -> Mapping[str, Stateful]:
        groups = self.agent.replay_groups()
        return {name: _Restored(group, name, self.restored_replay) for name, group in groups.items()}

    def advance(self, metrics: MetricAccumulator, logger: RunLogger) -> None:
        refilling_at_random = self.refilling and self.refill is Refill.random
        if self.clock.step < self.learning_starts or refilling_at_random:
            self.agent.warm_up(self.obs)
            actions = random_actions(self.envs.single_action_space, self.rng, self.num_envs)
        else:
            actions = self.agent.act(self.obs, explore=True)
        self.step(actions, logger)
        if self.refilling and self.agent.ready_to_learn():
            self.refilling = False
        if self.clock.step >= self.learning_starts and self.agent.ready_to_learn():
            self.update_credit += self.num_envs * self.updates_per_step
            while self.update_credit >= 1.0:
                metrics.add(self.agent.update())
                self.update_credit -= 1.0
