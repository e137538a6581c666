"""The wrappers an ``env.wrappers`` config entry can name, and applying them in order.

``env.wrappers`` maps a wrapper name to the keyword arguments of its constructor, e.g.
``{atari_preprocessing: {frame_skip: 4, ...}, frame_stack: {stack_size: 4}}``: every constant lives in the
config, the table below only says which gymnasium class a name stands for. A name is the snake_case of
the gymnasium class, except ``frame_stack``, which keeps the class's familiar pre-1.0 name (``FrameStack``),
and ``observation_subset``, this module's own ``ObservationSubset`` (gymnasium has no wrapper that drops
entries of a vector observation; it makes partially observed variants such as ``conf/env/cartpole_pomdp.yaml``).

Only stateless wrappers and wrappers whose state ``rl_runner.envs.state`` knows how to snapshot belong
here, so that a resumed run can continue its episodes (``atari_preprocessing`` is the exception until ALE
emulator snapshots exist; the runner then starts fresh episodes and says so). Add a wrapper by adding a
row, plus a snapshot handler in ``state.py`` if it keeps per-episode state.
"""

from __future__ import annotations

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


def _resize_observation(env: gym.Env, shape: Any) -> gym.Env:
    # YAML gives a list; gymnasium insists on a tuple
    return gym.wrappers.ResizeObservation(env, shape=tuple(shape) if isinstance(shape, list) else shape)


WRAPPERS: dict[str, Callable[..., gym.Env]] = {
    "atari_preprocessing": gym.wrappers.AtariPreprocessing,
    "frame_stack": gym.wrappers.FrameStackObservation,
    "flatten_observation": gym.wrappers.FlattenObservation,
    "grayscale_observation": gym.wrappers.GrayscaleObservation,
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
