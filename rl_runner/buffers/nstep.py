"""n-step returns, accumulated per env before transitions reach the replay.

For each env the last ``n`` steps wait in a window. A full window leaves as one transition: the first step's
observation and action, the discounted sum of its ``n`` rewards, the observation ``n`` steps later and the
discount ``gamma**n`` for the bootstrap. When an episode ends, every step still waiting leaves with the
rewards up to the end (a shorter return, ``gamma**k`` for its ``k`` steps) and the real final observation.
Only a true termination marks them terminal: a window cut by a time limit still bootstraps from the
final observation. Envs never mix, so this is exact for any ``env.num_envs``.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np


class NStepTransitions(NamedTuple):
    obs: np.ndarray  # [M, *obs_shape]
    actions: np.ndarray  # [M, *action_shape]
    returns: np.ndarray  # [M] sum over k steps of gamma**i * r_i
    next_obs: np.ndarray  # [M, *obs_shape] the observation k steps later (the real final one at an episode end)
    terminated: np.ndarray  # [M] bool: the episode terminated within the window (no bootstrap)
    discounts: np.ndarray  # [M] gamma**k, k = the window's number of steps


class NStepAccumulator:
    def __init__(self, n: int, gamma: float, num_envs: int) -> None:
        if n < 1:
            raise ValueError(f"n_step must be at least 1, got {n}")
        self.n = n
        self.gamma = gamma
        self.windows: list[deque] = [deque() for _ in range(num_envs)]  # per env: (obs, action, reward)

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> NStepTransitions | None:
        """One step of every env (leading [num_envs] axis); returns the transitions ready for the replay."""
        ready: list[tuple] = []
        for env, window in enumerate(self.windows):
            window.append((np.array(obs[env], copy=True), np.array(actions[env], copy=True), float(rewards[env])))
            if terminated[env] or truncated[env]:
                while window:
                    ready.append(self._leave(window, next_obs[env], bool(terminated[env])))
            elif len(window) == self.n:
                ready.append(self._leave(window, next_obs[env], False))
        if not ready:
            return None
        columns = list(zip(*ready))
        return NStepTransitions(
            obs=np.stack(columns[0]),
            actions=np.stack(columns[1]),
            returns=np.asarray(columns[2], dtype=np.float64),
            next_obs=np.stack(columns[3]),
            terminated=np.asarray(columns[4], dtype=bool),
            discounts=np.asarray(columns[5], dtype=np.float64),
        )

    def drop(self, envs: np.ndarray) -> None:
        """Forget the steps waiting in these envs' windows (a bool mask [num_envs]): their episodes are gone."""
        for env in np.flatnonzero(envs):
            self.windows[env].clear()

    def _leave(self, window: deque, next_obs: np.ndarray, terminated: bool) -> tuple:
        """The oldest waiting step leaves with the discounted rewards of the whole window."""
        steps = len(window)
        discounted = sum(self.gamma**i * reward for i, (_, _, reward) in enumerate(window))
        first_obs, first_action, _ = window.popleft()
        return first_obs, first_action, discounted, np.array(next_obs, copy=True), terminated, self.gamma**steps

    def state_dict(self) -> dict:
        return {"n": self.n, "windows": [list(window) for window in self.windows]}

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != self.n:
            raise ValueError(f"saved n-step windows are for n_step={state['n']}, this run has {self.n}")
        if len(state["windows"]) == len(self.windows):
            self.windows = [deque(window) for window in state["windows"]]
        # else: another env.num_envs; its episodes start anew, and so do the windows
