"""Snapshots of a running vector env, so a resumed run continues the very episodes it was in.

What is captured per sub-env: the physics state of MuJoCo envs (``mj_getState`` with the full integration
state, warm start included, so the next step is bit-identical), the plain numeric attributes of other
environments and of every wrapper (e.g. classic-control ``state``, ``TimeLimit._elapsed_steps``), and the
env's RNG. Envs whose state cannot be captured this way (Atari: emulator state) raise
``UnsupportedEnvState``; the runner then starts fresh episodes on resume and says so.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np

PLAIN_TYPES = (bool, int, float, str, type(None), np.ndarray, np.generic)
SKIPPED_ATTRIBUTES = {"spec", "metadata", "render_mode", "screen", "clock", "isopen"}


class UnsupportedEnvState(RuntimeError):
    pass


def _plain_attributes(obj: object) -> dict[str, Any]:
    attributes = {}
    for name, value in vars(obj).items():
        if name in SKIPPED_ATTRIBUTES or name.startswith("_saved") or name.startswith("_cached"):
            continue
        is_plain_sequence = isinstance(value, (tuple, list)) and all(isinstance(v, PLAIN_TYPES) for v in value)
        if isinstance(value, PLAIN_TYPES) or is_plain_sequence:
            attributes[name] = copy.deepcopy(value)
    return attributes


def _layers(env: gym.Env) -> list[object]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _is_mujoco(env: gym.Env) -> bool:
    from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

    return isinstance(env, MujocoEnv)


def env_state(env: gym.Env) -> dict[str, Any]:
    base = env.unwrapped
    if base.__class__.__module__.startswith("ale_py"):
        raise UnsupportedEnvState(f"{type(base).__name__}: emulator state is not captured")
    state: dict[str, Any] = {
        "layers": [_plain_attributes(layer) for layer in _layers(env)],
        "np_random": copy.deepcopy(base.np_random.bit_generator.state),
    }
    if _is_mujoco(base):
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.empty(mujoco.mj_stateSize(base.model, spec))
        mujoco.mj_getState(base.model, base.data, physics, spec)
        state["mujoco"] = physics
    return state


def restore_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    layers = _layers(env)
    if len(layers) != len(state["layers"]):
        raise UnsupportedEnvState("the env's wrapper stack differs from the saved one")
    for layer, attributes in zip(layers, state["layers"]):
        for name, value in attributes.items():
            setattr(layer, name, copy.deepcopy(value))
    base = env.unwrapped
    base.np_random.bit_generator.state = state["np_random"]
    if "mujoco" in state:
        import mujoco

        mujoco.mj_setState(base.model, base.data, state["mujoco"], mujoco.mjtState.mjSTATE_INTEGRATION)


def vector_env_state(envs: gym.vector.SyncVectorEnv) -> list[dict[str, Any]]:
    return [env_state(env) for env in envs.envs]


def restore_vector_env_state(envs: gym.vector.SyncVectorEnv, states: list[dict[str, Any]]) -> None:
    if len(states) != len(envs.envs):
        raise UnsupportedEnvState(f"saved {len(states)} envs, this run has env.num_envs={len(envs.envs)}")
    for env, state in zip(envs.envs, states):
        restore_env_state(env, state)
