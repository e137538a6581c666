"""T-maze memory tasks (``rl_runner/TMaze-v0``): the agent must remember a cue, or what it already did, across
a corridor whose cells all look alike.

Why: recurrent agents (DRQN) need a task that a memoryless agent provably cannot solve, that scales in
difficulty by one number (the corridor length: how long the memory must last), and that runs in
microseconds per step. The corridor cells give no information about the goal, time or position, so the
only way to choose the right arm at the junction is to carry the cue (or, in ``two_goal``, the arm
already visited) in memory.

Layout (arm_length 2 shown)::

    left end  L2 - L1 - J - R1 - R2  right end      J: cell ``length``, the junction
                        |
                        |  corridor cells length-1 .. 1, all alike
                        |
                        0  the foot: the agent starts here

Actions (``Discrete(4)``): 0 forward (towards the junction), 1 back, 2 left, 3 right.

* In the corridor, left/right bump into a wall (the agent stays; the step still counts and costs).
* At the junction, forward bumps, back goes down the corridor, left/right enter the first cell of that arm.
* Inside an arm, the action towards its end moves outward (bumping at the end), the opposite one moves back
  towards the junction (from the arm's first cell onto the junction), forward/back bump.

Observation (``Box(0, 1, (4,), float32)``): ``[cue_left, cue_right, at_junction, at_arm_end]``. Corridor
cells and inner arm cells are all zeros except where the cue is shown; ``at_arm_end`` does not say which arm.

Keyword arguments (``env.kwargs`` in ``conf/env/tmaze*.yaml``):

* ``length`` (int >= 1, default 10): corridor steps from the foot to the junction.
* ``arm_length`` (int >= 1, default 1): cells in each arm; the goals are at the arm ends.
* ``variant``:

  - ``"either"`` (default): each episode the goal is in the left or the right arm (drawn from the env's
    ``np_random`` at reset, so a seed fixes the cue sequence). Reaching the goal arm's end gives
    ``goal_reward`` and terminates with ``info["is_success"]=True``; reaching the other arm's end gives
    ``wrong_penalty`` and terminates with ``is_success=False``: one wrong turn ends the episode.
  - ``"both"``: the same cue and goal, but the wrong arm's end does not end the episode: it gives
    ``wrong_penalty`` each time it is entered (walking in from the arm; bumping against the end does not
    count) and the agent may walk back and take the other arm. Reaching the goal still terminates;
    ``is_success`` is True only if the wrong arm's end was never entered that episode.
  - ``"two_goal"``: no cue (the cue bits are always 0); both arm ends hold a goal. The first visit to each
    gives ``goal_reward``, later visits nothing; the episode terminates with ``is_success=True`` once both
    are visited. The observation never shows which end was visited, so the agent must remember it.

* ``cue`` (ignored by ``two_goal``): where the goal side is shown.

  - ``"first_step"`` (default): only in the episode's first observation, the one ``reset`` returns.
  - ``"start_cell"``: whenever the agent stands on cell 0, so walking back lets it re-read the cue.
  - ``"always"``: in every observation. Fully observed: a memoryless agent can solve it (a sanity baseline).

* ``goal_reward`` (> 0, default 1.0), ``wrong_penalty`` (<= 0, default -1.0), ``step_cost`` (>= 0, default
  0.01): every step, the last included, gets ``-step_cost`` added to whatever else it earns.
* ``max_steps`` (int >= 1 or None): the episode is truncated after this many steps (``truncated=True``,
  ``is_success=False``); None means ``4 * (length + 2 * arm_length) + 10``. A goal reached on the last
  allowed step terminates instead. The env is registered without a ``TimeLimit``: it keeps its own.

``info["is_success"]`` is in the info of the step that ends an episode (terminated or truncated) and nowhere
else (not in reset infos).

Optimal return (``optimal_return``): for ``either``/``both``, ``goal_reward - step_cost * (length +
arm_length)``: ``length`` forward steps, one step into the goal arm and ``arm_length - 1`` outward. For
``two_goal``, ``2 * goal_reward - step_cost * (length + 3 * arm_length)``: ``length + arm_length`` steps to
the first end, then ``arm_length - 1`` back to that arm's first cell, 1 onto the junction and ``arm_length``
out to the other end.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "rl_runner/TMaze-v0"
VARIANTS = ("either", "both", "two_goal")
CUES = ("first_step", "start_cell", "always")

FORWARD, BACK, LEFT, RIGHT = 0, 1, 2, 3
_SIDE_NAMES = ("left", "right")  # goal side 0 is left (cue bit 0), 1 is right (cue bit 1)


def optimal_return(
    length: int, arm_length: int = 1, variant: str = "either", goal_reward: float = 1.0, step_cost: float = 0.01
) -> float:
    """The best undiscounted episode return of a ``TMazeEnv`` with these settings (an agent with memory)."""
    if variant == "two_goal":
        return 2 * goal_reward - step_cost * (length + 3 * arm_length)
    if variant in ("either", "both"):
        return goal_reward - step_cost * (length + arm_length)
    raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")


class TMazeEnv(gym.Env[np.ndarray, int]):
    """The T-maze; the module docstring documents the layout, the variants, the cue modes and the rewards.

    Args:
        length: corridor steps from the foot (cell 0, the start) to the junction; at least 1.
        arm_length: cells in each arm; at least 1.
        variant: ``"either"`` (one wrong turn ends the episode), ``"both"`` (the wrong arm is penalised but
            the agent may turn back) or ``"two_goal"`` (no cue; visit both arm ends).
        cue: ``"first_step"``, ``"start_cell"`` or ``"always"``: which observations show the goal side.
        goal_reward: reward for reaching a goal (> 0).
        wrong_penalty: reward for entering the wrong arm's end (<= 0).
        step_cost: subtracted from every step's reward (>= 0).
        max_steps: steps before truncation; None means ``4 * (length + 2 * arm_length) + 10``.
        render_mode: None, ``"ansi"`` (a one-line text picture) or ``"rgb_array"`` (a top view of the T, for
            ``rl-eval video=true``: the agent blue, the goal end green, the wrong end red, visited goals dark).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        length: int = 10,
        arm_length: int = 1,
        variant: str = "either",
        cue: str = "first_step",
        goal_reward: float = 1.0,
        wrong_penalty: float = -1.0,
        step_cost: float = 0.01,
        max_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        _check_int("length", length, 1)
        _check_int("arm_length", arm_length, 1)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        if cue not in CUES:
            raise ValueError(f"cue must be one of {', '.join(CUES)}, got {cue!r}")
        if not _is_number(goal_reward) or not goal_reward > 0:
            raise ValueError(f"goal_reward must be a number > 0, got {goal_reward!r}")
        if not _is_number(wrong_penalty) or not wrong_penalty <= 0:
            raise ValueError(f"wrong_penalty must be a number <= 0, got {wrong_penalty!r}")
        if not _is_number(step_cost) or not step_cost >= 0:
            raise ValueError(f"step_cost must be a number >= 0, got {step_cost!r}")
        if max_steps is not None:
            _check_int("max_steps", max_steps, 1)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")

        self.length = length
        self.arm_length = arm_length
        self.variant = variant
        self.cue = cue
        self.goal_reward = float(goal_reward)
        self.wrong_penalty = float(wrong_penalty)
        self.step_cost = float(step_cost)
        self.max_steps = max_steps if max_steps is not None else 4 * (length + 2 * arm_length) + 10
        self.render_mode = render_mode

        self.action_space = gym.spaces.Discrete(4)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(4,), dtype=np.float32)

        # The whole per-episode state, plain values only, so a snapshot is a copy of these (its handler is in
        # rl_runner/envs/state.py). Set here too, so an env that was never reset can be snapshotted and rendered.
        self._position = 0  # corridor cell, 0 (the foot) .. length (the junction)
        self._arm_offset = 0  # 0: not in an arm; -k / +k: k cells into the left / right arm (k = arm_length: end)
        self._goal_side = 0  # 0 left, 1 right; unused by two_goal
        self._steps = 0
        self._visited = [False, False]  # two_goal: which arm ends were reached (left, right)
        self._entered_wrong = False  # both: whether the wrong arm's end was entered this episode

    # ------------------------------------------------------------------------------------------- API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        # Drawn in every variant (two_goal ignores it), so a seed gives the same RNG stream whatever the variant.
        self._goal_side = int(self.np_random.integers(2))
        self._position = 0
        self._arm_offset = 0
        self._steps = 0
        self._visited = [False, False]
        self._entered_wrong = False
        return self._observation(first=True), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be one of 0 (forward), 1 (back), 2 (left), 3 (right), got {action!r}")
        action = int(action)
        self._steps += 1
        entered_end = self._move(action)

        reward = -self.step_cost
        terminated = False
        success = False
        if entered_end is not None:
            if self.variant == "two_goal":
                if not self._visited[entered_end]:
                    self._visited[entered_end] = True
                    reward += self.goal_reward
                terminated = all(self._visited)
                success = terminated
            elif entered_end == self._goal_side:
                reward += self.goal_reward
                terminated = True
                success = not self._entered_wrong
            else:
                reward += self.wrong_penalty
                self._entered_wrong = True
                terminated = self.variant == "either"
        truncated = not terminated and self._steps >= self.max_steps

        info: dict[str, Any] = {}
        if terminated or truncated:
            info["is_success"] = bool(success)
        return self._observation(first=False), float(reward), terminated, truncated, info

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self._picture()
        if self.render_mode != "ansi":
            return None
        # One line: the corridor from the foot to the junction (J), then each arm from the junction outwards.
        # G marks a goal end (g: two_goal, already visited); A marks the agent.
        corridor = ["."] * self.length + ["J"]
        arms = {side: ["."] * self.arm_length for side in (0, 1)}
        for side in (0, 1):
            if self.variant == "two_goal":
                arms[side][-1] = "g" if self._visited[side] else "G"
            elif side == self._goal_side:
                arms[side][-1] = "G"
        if self._arm_offset == 0:
            corridor[self._position] = "A"
        else:
            arms[int(self._arm_offset > 0)][abs(self._arm_offset) - 1] = "A"
        return (
            f"{''.join(corridor)} left:{''.join(arms[0])} right:{''.join(arms[1])} "
            f"(step {self._steps}/{self.max_steps})"
        )

    def _picture(self) -> np.ndarray:
        """The T seen from above, the junction row at the top: [H, W, 3] uint8, even sides (video codecs)."""
        cell = max(2, min(16, 480 // (self.length + 1))) // 2 * 2
        centre = self.arm_length
        grid = np.full((self.length + 1, 2 * self.arm_length + 1, 3), 40, dtype=np.uint8)  # walls
        grid[:, centre] = grid[0, :] = 200  # the corridor and the arms
        for side, column in ((0, 0), (1, 2 * self.arm_length)):
            if self.variant == "two_goal":
                grid[0, column] = (0, 110, 0) if self._visited[side] else (0, 200, 0)
            else:
                grid[0, column] = (0, 200, 0) if side == self._goal_side else (200, 0, 0)
        if self._arm_offset == 0:
            grid[self.length - self._position, centre] = (0, 0, 255)
        else:
            grid[0, centre + self._arm_offset] = (0, 0, 255)
        return np.repeat(np.repeat(grid, cell, axis=0), cell, axis=1)

    # ------------------------------------------------------------------------------------------- rules
    def _move(self, action: int) -> int | None:
        """Apply one action; returns the side (0 left, 1 right) whose arm end was just entered, else None.
        Bumping against the end of an arm does not enter it again."""
        if self._arm_offset == 0:
            if self._position < self.length:
                if action == FORWARD:
                    self._position += 1
                elif action == BACK:
                    self._position = max(self._position - 1, 0)
                return None  # left/right: the corridor walls
            if action == BACK:
                self._position -= 1
            elif action in (LEFT, RIGHT):
                self._arm_offset = -1 if action == LEFT else 1
                return self._end_reached()
            return None  # forward: the wall beyond the junction
        side = int(self._arm_offset > 0)
        outward = RIGHT if side else LEFT
        inward = LEFT if side else RIGHT
        depth = abs(self._arm_offset)
        if action == outward and depth < self.arm_length:
            depth += 1
            self._arm_offset = depth if side else -depth
            return self._end_reached()
        if action == inward:
            depth -= 1  # from the arm's first cell (depth 1) this is the junction (offset 0)
            self._arm_offset = depth if side else -depth
        return None

    def _end_reached(self) -> int | None:
        return int(self._arm_offset > 0) if abs(self._arm_offset) == self.arm_length else None

    def _observation(self, first: bool) -> np.ndarray:
        obs = np.zeros(4, dtype=np.float32)
        if self.variant != "two_goal" and self._cue_shown(first):
            obs[self._goal_side] = 1.0
        obs[2] = float(self._arm_offset == 0 and self._position == self.length)
        obs[3] = float(abs(self._arm_offset) == self.arm_length)
        return obs

    def _cue_shown(self, first: bool) -> bool:
        if self.cue == "always":
            return True
        if self.cue == "start_cell":
            return self._arm_offset == 0 and self._position == 0
        return first


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def register_tmaze() -> None:
    """Register ``rl_runner/TMaze-v0`` with gymnasium; idempotent. Importing this module does (and ``import
    rl_runner`` imports it).

    No ``TimeLimit``: the env truncates by itself (``max_steps``), so a config's ``env.max_episode_steps``
    stays null and the limit follows ``length``."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=f"{__name__}:TMazeEnv", max_episode_steps=None)


register_tmaze()
