"""The wrappers an ``env.wrappers`` config entry can name, and applying them in order.

``env.wrappers`` maps a wrapper name to the keyword arguments of its constructor, e.g.
``{atari_preprocessing: {frame_skip: 4, ...}, frame_stack: {stack_size: 4}}``: every constant lives in the
config, the table below only says which gymnasium class a name stands for. A name is the snake_case of
the gymnasium class, except ``frame_stack``, which keeps the class's familiar pre-1.0 name (``FrameStack``).

Only stateless wrappers and wrappers whose state ``rl_runner.envs.state`` knows how to snapshot belong
here, so that a resumed run can continue its episodes (``atari_preprocessing`` is the exception until ALE
emulator snapshots exist; the runner then starts fresh episodes and says so). Add a wrapper by adding a
row, plus a snapshot handler in ``state.py`` if it keeps per-episode state.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import gymnasium as gym


def _resize_observation(env: gym.Env, shape: Any) -> gym.Env:
    # YAML gives a list; gymnasium insists on a tuple
    return gym.wrappers.ResizeObservation(env, shape=tuple(shape) if isinstance(shape, list) else shape)


WRAPPERS: dict[str, Callable[..., gym.Env]] = {
    "atari_preprocessing": gym.wrappers.AtariPreprocessing,
    "frame_stack": gym.wrappers.FrameStackObservation,
    "flatten_observation": gym.wrappers.FlattenObservation,
    "grayscale_observation": gym.wrappers.GrayscaleObservation,
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
