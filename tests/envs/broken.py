"""Envs that are wrong in ways a user's env can be, imported by their ids (``env.id=tests.envs.broken:<Class>``).

``CrashesOnReset`` can be made but not run, as a simulator that crashes on start: the config checks make an env
without resetting it, so a sweep job on it gets past them and fails while it runs (the failure-proof sweep tests
need one such job). The others are refused by the checks: a constructor that raises an error of its own, actions
without bounds, images with their channels last."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class CrashesOnReset(gym.Env):
    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        raise OSError("the simulator crashed on start")

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        raise OSError("the simulator crashed")


class CrashesOnMake(gym.Env):
    def __init__(self) -> None:
        raise RuntimeError("simulator not started")


class UnboundedActions(CrashesOnReset):
    def __init__(self) -> None:
        super().__init__()
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)


class ChannelsLast(CrashesOnReset):
    def __init__(self) -> None:
        super().__init__()
        self.observation_space = gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(2)


class NeverEnds(gym.Env):
    """Registered without a time limit, and no state of it ends an episode."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return np.zeros(3, np.float32), 1.0, False, False, {}
