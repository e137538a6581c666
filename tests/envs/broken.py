"""An env that can be made but not run: its reset fails, as a simulator that crashes on start would. The config
checks make an env without resetting it, so a sweep job on this env gets past them and fails while it runs
(the failure-proof sweep tests need one such job); imported by its id, ``env.id=tests.envs.broken:CrashesOnReset``."""

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
