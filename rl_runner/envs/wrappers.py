"""The wrappers an ``env.wrappers`` config entry can name, and applying them in order.

``env.wrappers`` maps a wrapper name to the keyword arguments of its constructor, e.g.
``{atari_preprocessing: {frame_skip: 4, ...}, frame_stack: {stack_size: 4}}``: every constant lives in the
config, the table below only says which class a name stands for. A gymnasium wrapper's name is the snake_case
of its class, except ``frame_stack``, which keeps the class's familiar pre-1.0 name (``FrameStack``). This
module's own wrappers fill gaps gymnasium leaves:

- ``observation_subset`` (``ObservationSubset``) drops entries of a vector observation: partially observed
  variants such as ``conf/env/cartpole_pomdp.yaml``.
- ``fire_reset`` (``FireReset``) presses FIRE after every reset, for ALE games (Breakout) that wait for it.
- ``learning_signals`` (``LearningSignals``) adds the clipped reward and the life-loss terminal that DQN-style
  learners train on to every step's info, leaving the reward and episode ends the env reports (the raw game
  score, whole games) untouched.
- ``channels_first`` (``ChannelsFirst``) turns a height x width x channels image (MinAtar) into the channels x
  height x width layout of conv nets.

Only stateless wrappers and wrappers whose state ``rl_runner.envs.state`` knows how to snapshot belong here,
so that a resumed run can continue its episodes bit for bit. Add a wrapper by adding a row, plus a snapshot
handler in ``state.py`` (an empty one if it keeps no state between steps).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np


class ObservationSubset(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Keeps only the entries ``indices`` (in that order) of a 1-D ``Box`` observation: a partially observed
    version of a fully observed env, e.g. CartPole without its velocities. Stateless."""

    def __init__(self, env: gym.Env, indices: Sequence[int]) -> None:
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"indices: needs a 1-D Box observation space, this env has {space}")
        indices = list(indices)
        if not indices:
            raise ValueError("indices: must name at least one observation entry")
        size = space.shape[0]
        bad = [i for i in indices if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not 0 <= i < size]
        if bad:
            raise ValueError(f"indices: {bad} out of range; the observation has entries 0..{size - 1}")
        if len(set(indices)) != len(indices):
            raise ValueError(f"indices: {indices} repeats an entry")
        gym.utils.RecordConstructorArgs.__init__(self, indices=[int(i) for i in indices])
        gym.ObservationWrapper.__init__(self, env)
        self._indices = np.array(indices, dtype=np.intp)
        self.observation_space = gym.spaces.Box(space.low[self._indices], space.high[self._indices], dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self._indices]  # fancy indexing copies: the caller gets a new array every step


FIRE = 1  # the ALE's action index of FIRE in every minimal action set that has it


def lost_a_life(previous: int | None, lives: int | None) -> bool:
    """Whether the ALE's lives counter dropped between two steps (False when either step did not report it)."""
    return previous is not None and lives is not None and lives < previous


class FireReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Takes the FIRE action once after every reset: Breakout's ball stays put until FIRE is pressed, so an
    agent that has not learnt to press it would idle through whole episodes. If that step ends the episode,
    resets again (without the seed, which would only repeat it). The returned info is the reset's (with the
    ALE's ``lives``). Needs an ALE env whose action 1 is FIRE.

    With ``after_life_loss`` it also presses FIRE right after a step that lost a life (within the same step:
    rewards add up, the observation and info are the FIRE step's). A policy that never presses FIRE, such as a
    greedy one at evaluation, would otherwise wait for the time limit (27,000 steps) with the ball held. The
    usual pipelines get the same effect from resetting at every life loss (an episodic-life wrapper), which
    this runner does not do: its episodes are whole games. State: ``lives``, the counter after the last step."""

    def __init__(self, env: gym.Env, after_life_loss: bool = False) -> None:
        meanings = getattr(env.unwrapped, "get_action_meanings", None)
        actions = list(meanings()) if callable(meanings) else []
        if len(actions) <= FIRE or actions[FIRE] != "FIRE":
            found = f"its actions are {actions}" if actions else "it names no actions (not an ALE env)"
            raise ValueError(f"needs an env whose action {FIRE} is FIRE; {found}")
        if not isinstance(after_life_loss, (bool, np.bool_)):
            raise ValueError(f"after_life_loss: must be true or false, got {after_life_loss!r}")
        gym.utils.RecordConstructorArgs.__init__(self, after_life_loss=bool(after_life_loss))
        gym.Wrapper.__init__(self, env)
        self.after_life_loss = bool(after_life_loss)
        self.lives: int | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        _, info = self.env.reset(seed=seed, options=options)
        obs, _, terminated, truncated, fire_info = self.env.step(FIRE)
        if terminated or truncated:
            obs, info = self.env.reset(options=options)
            fire_info = info
        self.lives = fire_info.get("lives")
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = info.get("lives")
        if self.after_life_loss and not (terminated or truncated) and lost_a_life(self.lives, lives):
            obs, fire_reward, terminated, truncated, info = self.env.step(FIRE)
            reward += fire_reward
        self.lives = info.get("lives")
        return obs, reward, terminated, truncated, info


class LearningSignals(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds to every step's info what a DQN-style learner trains on, leaving the env's own reward and episode
    ends alone (the runner logs raw game scores and whole games, the same in training and evaluation):

    - ``info["learning_reward"]``: the reward clipped to ``[-clip_reward, clip_reward]`` (the raw reward when
      ``clip_reward`` is None);
    - ``info["learning_terminated"]``: ``terminated``, or, with ``terminal_on_life_loss``, whether the ALE's
      lives counter ``info["lives"]`` dropped in this step (the game itself goes on).

    State: ``lives``, the counter at the previous step (None before the first reset).
    """

    def __init__(self, env: gym.Env, clip_reward: float | None = 1.0, terminal_on_life_loss: bool = False) -> None:
        if clip_reward is not None:
            if isinstance(clip_reward, bool) or not isinstance(clip_reward, (int, float, np.integer, np.floating)):
                raise ValueError(f"clip_reward: must be a positive number or null, got {clip_reward!r}")
            if not (math.isfinite(clip_reward) and clip_reward > 0):
                raise ValueError(f"clip_reward: must be a positive finite number or null, got {clip_reward!r}")
            clip_reward = float(clip_reward)
        if not isinstance(terminal_on_life_loss, (bool, np.bool_)):
            raise ValueError(f"terminal_on_life_loss: must be true or false, got {terminal_on_life_loss!r}")
        gym.utils.RecordConstructorArgs.__init__(
            self, clip_reward=clip_reward, terminal_on_life_loss=bool(terminal_on_life_loss)
        )
        gym.Wrapper.__init__(self, env)
        self.clip_reward = clip_reward
        self.terminal_on_life_loss = bool(terminal_on_life_loss)
        self.lives: int | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.lives = self._lives(info)
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self._lives(info)
        life_lost = lost_a_life(self.lives, lives)
        self.lives = lives
        info = dict(info)  # the env's dict may be held elsewhere (the passive checker keeps the last one)
        info["learning_reward"] = (
            float(reward) if self.clip_reward is None else float(np.clip(reward, -self.clip_reward, self.clip_reward))
        )
        info["learning_terminated"] = bool(terminated or (self.terminal_on_life_loss and life_lost))
        return obs, reward, terminated, truncated, info

    def _lives(self, info: Mapping[str, Any]) -> int | None:
        lives = info.get("lives")
        if lives is None and self.terminal_on_life_loss:
            env_id = self.env.spec.id if self.env.spec is not None else type(self.env.unwrapped).__name__
            raise ValueError(
                "env.wrappers.learning_signals.terminal_on_life_loss=true needs an env that reports "
                f"info['lives'] (an ALE game); {env_id} does not"
            )
        return None if lives is None else int(lives)


class ChannelsFirst(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """A height x width x channels ``Box`` image (MinAtar's ``bool`` (10, 10, 4)) as channels x height x width,
    the layout conv nets take; same dtype and bounds. Stateless."""

    def __init__(self, env: gym.Env) -> None:
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 3:
            raise ValueError(f"needs a 3-D (height, width, channels) Box observation space, this env has {space}")
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        self.observation_space = gym.spaces.Box(
            np.transpose(space.low, (2, 0, 1)), np.transpose(space.high, (2, 0, 1)), dtype=space.dtype
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(observation, (2, 0, 1)))


def _resize_observation(env: gym.Env, shape: Any) -> gym.Env:
    # YAML gives a list; gymnasium insists on a tuple
    return gym.wrappers.ResizeObservation(env, shape=tuple(shape) if isinstance(shape, list) else shape)


WRAPPERS: dict[str, Callable[..., gym.Env]] = {
    "atari_preprocessing": gym.wrappers.AtariPreprocessing,
    "channels_first": ChannelsFirst,
    "fire_reset": FireReset,
    "filter_observation": gym.wrappers.FilterObservation,  # keep some parts of a Dict observation (filter_keys)
    "frame_stack": gym.wrappers.FrameStackObservation,
    "flatten_observation": gym.wrappers.FlattenObservation,
    "grayscale_observation": gym.wrappers.GrayscaleObservation,
    "learning_signals": LearningSignals,
    "observation_subset": ObservationSubset,
    "resize_observation": _resize_observation,
}


def apply_wrappers(env: gym.Env, wrappers: Mapping[str, Mapping[str, Any] | None]) -> gym.Env:
    """``env`` wrapped by each configured wrapper in order (the first named is the innermost)."""
    for name, kwargs in wrappers.items():
        env = make_wrapper(env, name, dict(kwargs or {}))
    return env


def make_wrapper(env: gym.Env, name: str, kwargs: dict[str, Any]) -> gym.Env:
    """One wrapper by its config name. A config mistake is a one-line ``ValueError`` naming its config key."""
    if name not in WRAPPERS:
        raise ValueError(f"env.wrappers.{name}: unknown wrapper; known: {', '.join(sorted(WRAPPERS))}")
    try:
        return WRAPPERS[name](env, **kwargs)
    except (TypeError, ValueError) as error:
        # gymnasium's messages sometimes span lines; the config error should stay one line
        problem = " ".join(str(error).split())
        raise ValueError(f"env.wrappers.{name}: bad arguments {kwargs}: {problem}") from error
