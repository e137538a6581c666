"""Snapshots of a running vector env, so a resumed run continues the very episodes it was in, bit for bit.

An env is a stack of layers: wrappers around a base env (``TimeLimit<OrderEnforcing<PassiveEnvChecker<
PendulumEnv>>>``). Each layer class has a snapshot handler, a (capture, restore) pair that copies exactly the
state that class keeps between steps, written from reading its source (the registrations at the bottom).
A layer without a handler makes the whole snapshot fail with ``UnsupportedEnvState`` naming its class: a
resume that silently continued with part of the state missing (say, the frames in a frame stack) would
diverge without anyone knowing, while a refused snapshot makes the runner start fresh episodes and say so.

Handlers match the exact class: a subclass may keep state of its own, so it needs its own handler. The one
exception is ``MujocoEnv``, whose subclasses keep their whole dynamic state in MuJoCo's ``mjData``.

Besides its layers, a snapshot holds the base env's ``np_random`` (resets and some dynamics draw from it),
and, from ``vector_env_state``, the vector env's own per-env bookkeeping. Everything is plain dicts, lists,
numbers and numpy arrays, so a snapshot goes through ``torch.save``.

Not covered yet: Atari (the ALE emulator, and ``AtariPreprocessing``'s frame buffer and life counter).
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import (
    AcrobotEnv,
    CartPoleEnv,
    Continuous_MountainCarEnv,
    MountainCarEnv,
    PendulumEnv,
)
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.wrappers import (
    AtariPreprocessing,
    FlattenObservation,
    FrameStackObservation,
    GrayscaleObservation,
    OrderEnforcing,
    PassiveEnvChecker,
    ResizeObservation,
    TimeLimit,
)

from rl_runner.envs.wrappers import ObservationSubset

EnvState = dict[str, Any]


class UnsupportedEnvState(RuntimeError):
    """This env's state cannot be captured or restored exactly."""


@dataclass(frozen=True)
class SnapshotHandler:
    capture: Callable[[Any], dict[str, Any]]  # layer -> its state (copied, so later steps cannot change it)
    restore: Callable[[Any, dict[str, Any]], None]  # (layer, state) -> None; must copy too: states are reused
    subclasses: bool = False  # whether it also covers subclasses, which could otherwise keep state it misses


_HANDLERS: dict[type, SnapshotHandler] = {}


def register_snapshot_handler(
    cls: type,
    capture: Callable[[Any], dict[str, Any]],
    restore: Callable[[Any, dict[str, Any]], None],
    *,
    subclasses: bool = False,
) -> None:
    """Make layers of class ``cls`` snapshottable (a custom wrapper or env class, for instance)."""
    _HANDLERS[cls] = SnapshotHandler(capture, restore, subclasses)


# ------------------------------------------------------------------------------------------- single env
def env_state(env: gym.Env) -> EnvState:
    """A snapshot of ``env``: every layer's state, outermost first, and the base env's RNG."""
    layers = _layers(env)
    handlers = _handlers(layers)
    base = env.unwrapped
    return {
        "layers": [
            {"class": type(layer).__name__, "state": handler.capture(layer)} for layer, handler in zip(layers, handlers)
        ],
        "np_random": copy.deepcopy(base.np_random.bit_generator.state),
        "np_random_seed": base.np_random_seed,
    }


def restore_env_state(env: gym.Env, state: EnvState) -> None:
    """Put ``env`` (built from the same config as the snapshot's env) back into the snapshot's state."""
    layers, handlers = _check_layers(env, state)
    for layer, handler, saved in zip(layers, handlers, state["layers"]):
        handler.restore(layer, saved["state"])
    base = env.unwrapped
    base.np_random.bit_generator.state = copy.deepcopy(state["np_random"])
    base._np_random_seed = state["np_random_seed"]  # no public setter keeps the seed; it is informational only


# ------------------------------------------------------------------------------------------- vector env
# Of SyncVectorEnv's own attributes only ``_autoreset_envs`` lives across steps; its observation, reward and
# termination arrays are rewritten by every step. With SAME_STEP autoreset (what make_vector_env builds) a
# finished env is reset inside the step that ended it and the flag is never read; it is kept anyway, one
# bool per env, so a NEXT_STEP vector env (which resets on the step after) resumes exactly too.
def vector_env_state(envs: gym.vector.VectorEnv) -> list[EnvState]:
    """One snapshot per sub-env, each with the vector env's bookkeeping for that env."""
    _check_sync(envs)
    return [
        env_state(env) | {"vector": {"autoreset_mode": envs.autoreset_mode.value, "autoreset": bool(pending)}}
        for env, pending in zip(envs.envs, envs._autoreset_envs)
    ]


def restore_vector_env_state(envs: gym.vector.VectorEnv, states: list[EnvState]) -> None:
    """Restore every sub-env; checks all of them before changing any, so a refusal leaves ``envs`` as it was."""
    _check_sync(envs)
    if len(states) != len(envs.envs):
        raise UnsupportedEnvState(f"saved {len(states)} envs, this run has env.num_envs={len(envs.envs)}")
    for env, state in zip(envs.envs, states):
        _check_layers(env, state)
        if state["vector"]["autoreset_mode"] != envs.autoreset_mode.value:
            raise UnsupportedEnvState(
                f"saved with autoreset mode {state['vector']['autoreset_mode']}, "
                f"this vector env uses {envs.autoreset_mode.value}"
            )
    for index, (env, state) in enumerate(zip(envs.envs, states)):
        restore_env_state(env, state)
        envs._autoreset_envs[index] = state["vector"]["autoreset"]


def _check_sync(envs: gym.vector.VectorEnv) -> None:
    if not isinstance(envs, gym.vector.SyncVectorEnv):
        raise UnsupportedEnvState(f"{type(envs).__name__}: only SyncVectorEnv sub-envs can be reached")


# ------------------------------------------------------------------------------------------- layers
def _layers(env: gym.Env) -> list[Any]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _describe(layers: list[Any]) -> str:
    return "<".join(type(layer).__name__ for layer in layers)


def _handlers(layers: list[Any]) -> list[SnapshotHandler]:
    """Every layer's handler, or one error naming every layer that has none."""
    found = [_handler(layer) for layer in layers]
    missing = [_missing_reason(layer) for layer, handler in zip(layers, found) if handler is None]
    if missing:
        raise UnsupportedEnvState("; ".join(missing))
    return found


def _handler(layer: Any) -> SnapshotHandler | None:
    for cls in type(layer).__mro__:  # most specific first
        handler = _HANDLERS.get(cls)
        if handler is not None and (cls is type(layer) or handler.subclasses):
            return handler
    return None


def _missing_reason(layer: Any) -> str:
    name = type(layer).__name__
    if isinstance(layer, AtariPreprocessing):
        return f"{name}: no snapshot handler (its max-pool frame buffer and life counter are not captured yet)"
    if type(layer).__module__.split(".")[0] == "ale_py":
        return f"{name}: no snapshot handler (the ALE emulator state is not captured yet)"
    return f"{name}: no snapshot handler; register one with rl_runner.envs.state.register_snapshot_handler"


def _check_layers(env: gym.Env, state: EnvState) -> tuple[list[Any], list[SnapshotHandler]]:
    layers = _layers(env)
    saved = "<".join(layer["class"] for layer in state["layers"])
    if saved != _describe(layers):
        raise UnsupportedEnvState(f"the snapshot is of {saved}, this env is {_describe(layers)}")
    return layers, _handlers(layers)


# ------------------------------------------------------------------------------------------- handlers
def _attributes(*names: str) -> tuple[Callable[[Any], dict[str, Any]], Callable[[Any, dict[str, Any]], None]]:
    """A handler for a class whose state is these attributes. One not set yet (in an env never reset) is
    left out of the snapshot, so a restore keeps the target env's own."""

    def capture(layer: Any) -> dict[str, Any]:
        return {name: copy.deepcopy(getattr(layer, name)) for name in names if hasattr(layer, name)}

    def restore(layer: Any, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(layer, name, copy.deepcopy(value))

    return capture, restore


# gymnasium.make's own wrappers. TimeLimit's limit and OrderEnforcing's render flag come from the config.
register_snapshot_handler(TimeLimit, *_attributes("_elapsed_steps"))
register_snapshot_handler(OrderEnforcing, *_attributes("_has_reset"))
# Its flags say which one-off API checks already ran; _previous_data holds the last (obs, info) until the
# data-reuse check has compared it with the next step's (an identity check, which a copy passes).
register_snapshot_handler(
    PassiveEnvChecker,
    *_attributes(
        "checked_reset", "checked_step", "checked_render", "checked_data_reuse", "close_called", "_previous_data"
    ),
)

# Stateless observation wrappers from rl_runner.envs.wrappers.
for _stateless in (FlattenObservation, GrayscaleObservation, ObservationSubset, ResizeObservation):
    register_snapshot_handler(_stateless, *_attributes())


# FrameStackObservation: the frames in its deque. Its padding_value is rewritten by every reset before it is
# read (padding "reset") or is a constant; stacked_obs is an output buffer every step overwrites.
def _capture_frame_stack(layer: FrameStackObservation) -> dict[str, Any]:
    return {"frames": copy.deepcopy(list(layer.obs_queue))}


def _restore_frame_stack(layer: FrameStackObservation, state: dict[str, Any]) -> None:
    if len(state["frames"]) != layer.stack_size:
        raise UnsupportedEnvState(f"saved {len(state['frames'])} stacked frames, this env stacks {layer.stack_size}")
    layer.obs_queue = deque(copy.deepcopy(state["frames"]), maxlen=layer.stack_size)


register_snapshot_handler(FrameStackObservation, _capture_frame_stack, _restore_frame_stack)

# Classic control: what step() reads besides the constructor's constants. Pendulum's last_u only feeds
# render(), kept so a rendered frame after a resume matches too.
register_snapshot_handler(CartPoleEnv, *_attributes("state", "steps_beyond_terminated"))
register_snapshot_handler(PendulumEnv, *_attributes("state", "last_u"))
register_snapshot_handler(MountainCarEnv, *_attributes("state"))
register_snapshot_handler(Continuous_MountainCarEnv, *_attributes("state"))
register_snapshot_handler(AcrobotEnv, *_attributes("state"))


# MuJoCo. The dynamic state is mjData: mj_getState's integration state (time, qpos, qvel, act, controls,
# applied forces, the solver's warm start: enough for the next mj_step to be bit-identical), plus the output
# of the last forward pass. The outputs matter because envs read them before they step: Ant's x-velocity
# reward starts from body xpos, Humanoid's from xipos, Reacher's and Pusher's distances from body positions,
# and mj_step computes them from the state *before* its last substep, so mj_forward cannot recompute them.
# Kept: the outputs whose size the model fixes; contacts and constraint rows vary in size, are rebuilt by
# mj_step and no gymnasium env reads them between steps. The v5 envs keep no per-episode Python attributes
# that step() reads (Reacher's goal and Pusher's goal_pos/cylinder_pos are written into qpos by reset).
MUJOCO_OUTPUTS = (
    # positions
    "xpos", "xquat", "xmat", "xipos", "ximat", "xanchor", "xaxis", "geom_xpos", "geom_xmat", "site_xpos",
    "site_xmat", "cam_xpos", "cam_xmat", "light_xpos", "light_xdir", "subtree_com", "cdof", "cinert",
    "ten_length", "actuator_length",
    # velocities
    "cvel", "cdof_dot", "actuator_velocity", "ten_velocity", "subtree_linvel", "subtree_angmom",
    # forces and accelerations
    "qfrc_bias", "qfrc_spring", "qfrc_damper", "qfrc_gravcomp", "qfrc_fluid", "qfrc_passive", "qfrc_actuator",
    "actuator_force", "qfrc_smooth", "qacc_smooth", "qfrc_constraint", "qacc", "cacc", "cfrc_int", "cfrc_ext",
    "sensordata", "energy",
)  # fmt: skip


def _capture_mujoco(env: MujocoEnv) -> dict[str, Any]:
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    integration = np.empty(mujoco.mj_stateSize(env.model, spec))
    mujoco.mj_getState(env.model, env.data, integration, spec)
    return {
        "integration": integration,
        "outputs": {name: getattr(env.data, name).copy() for name in MUJOCO_OUTPUTS},
    }


def _restore_mujoco(env: MujocoEnv, state: dict[str, Any]) -> None:
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    if state["integration"].size != mujoco.mj_stateSize(env.model, spec):
        raise UnsupportedEnvState(f"{type(env).__name__}: the saved MuJoCo state is of a different model")
    mujoco.mj_setState(env.model, env.data, state["integration"], spec)
    for name, value in state["outputs"].items():
        getattr(env.data, name)[...] = value


register_snapshot_handler(MujocoEnv, _capture_mujoco, _restore_mujoco, subclasses=True)
