"""Snapshots of a running vector env, so a resumed run continues the very episodes it was in, bit for bit.

An env is a stack of layers: wrappers around a base env (``TimeLimit<OrderEnforcing<PassiveEnvChecker<
PendulumEnv>>>``). Each layer class has a snapshot handler, a (capture, restore) pair that copies exactly the
state that class keeps between steps, written from reading its source (the registrations at the bottom).
A layer without a handler makes the whole snapshot fail with ``UnsupportedEnvState`` naming its class: a
resume that silently continued with part of the state missing (say, the frames in a frame stack) would
diverge without anyone knowing, while a refused snapshot makes the runner start fresh episodes and say so.

Handlers match the exact class: a subclass may keep state of its own, so it needs its own handler. The one
exception is ``MujocoEnv``, whose subclasses keep their whole dynamic state in MuJoCo's ``mjData``.

Besides its layers, a snapshot holds the base env's ``np_random`` (resets and some dynamics draw from it) once
the env has one, and, from ``vector_env_state``, the vector env's own per-env bookkeeping. Everything is plain
dicts, lists, numbers, bytes and numpy arrays (no objects of an env's package), so a snapshot goes through
``torch.save``.

Covered: classic control, MuJoCo, the project's T-maze, Atari (ale_py's ``AtariEnv``: the emulator with its
RNG, and ``AtariPreprocessing``'s frame buffer and life counter; not with the ALE's sticky actions, see
``_capture_atari``), MinAtar (``minatar.gym.BaseEnv``: the game and its RNGs), and every wrapper in
``rl_runner.envs.wrappers.WRAPPERS``. The Atari and MinAtar handlers are registered the first time a snapshot
meets one of their classes (so the package is already imported): importing this module imports neither
(MinAtar pulls in matplotlib and seaborn, about 2 s). A restore works on a freshly made env that was never
reset, as a resumed run's envs are.

Not covered: ALE envs with ``repeat_action_probability > 0`` (refused), other envs (Box2D, toy text, ...),
wrappers outside that table (e.g. ``ClipReward``), and ``AsyncVectorEnv`` (its sub-envs live in other processes).
"""

from __future__ import annotations

import copy
import pickle
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
    FilterObservation,
    FlattenObservation,
    FrameStackObservation,
    GrayscaleObservation,
    OrderEnforcing,
    PassiveEnvChecker,
    ResizeObservation,
    TimeLimit,
)

from rl_runner.envs.tmaze import TMazeEnv
from rl_runner.envs.wrappers import ChannelsFirst, FireReset, LearningSignals, ObservationSubset

EnvState = dict[str, Any]


class UnsupportedEnvState(RuntimeError):
    """This env's state cannot be captured or restored exactly."""


@dataclass(frozen=True)
class SnapshotHandler:
    capture: Callable[[Any], dict[str, Any]]  # layer -> its state (copied, so later steps cannot change it)
    restore: Callable[[Any, dict[str, Any]], None]  # (layer, state) -> None; must copy too: states are reused
    subclasses: bool = False  # whether it also covers subclasses, which could otherwise keep state it misses
    # (layer, state) -> None: raises UnsupportedEnvState if the state does not fit this layer (another game,
    # another buffer size); every layer of every env is checked before any is restored
    check: Callable[[Any, dict[str, Any]], None] | None = None


_HANDLERS: dict[type, SnapshotHandler] = {}


def register_snapshot_handler(
    cls: type,
    capture: Callable[[Any], dict[str, Any]],
    restore: Callable[[Any, dict[str, Any]], None],
    *,
    subclasses: bool = False,
    check: Callable[[Any, dict[str, Any]], None] | None = None,
) -> None:
    """Make layers of class ``cls`` snapshottable (a custom wrapper or env class, for instance)."""
    _HANDLERS[cls] = SnapshotHandler(capture, restore, subclasses, check)


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
        # read only if the env made one: the np_random property would create one from OS entropy for an env that
        # never seeds its own (MinAtar's), and the checkpoint of a seeded run would differ from run to run
        "np_random": copy.deepcopy(base._np_random.bit_generator.state) if base._np_random is not None else None,
        "np_random_seed": base._np_random_seed,
    }


def restore_env_state(env: gym.Env, state: EnvState) -> None:
    """Put ``env`` (built from the same config as the snapshot's env) back into the snapshot's state."""
    layers, handlers = _check_layers(env, state)
    for layer, handler, saved in zip(layers, handlers, state["layers"]):
        handler.restore(layer, saved["state"])
    base = env.unwrapped
    if state["np_random"] is not None:
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
    _register_optional(type(layer))
    for cls in type(layer).__mro__:  # most specific first
        handler = _HANDLERS.get(cls)
        if handler is not None and (cls is type(layer) or handler.subclasses):
            return handler
    return None


def _missing_reason(layer: Any) -> str:
    name = type(layer).__name__
    package = type(layer).__module__.split(".")[0]
    covered = [f"{module}.{qualname}" for module, qualname in _OPTIONAL if module.split(".")[0] == package]
    if covered:  # a subclass, or another class of the package, may keep state the handler misses
        return f"{name}: no snapshot handler (of {package}'s classes only {', '.join(covered)} itself has one)"
    return f"{name}: no snapshot handler; register one with rl_runner.envs.state.register_snapshot_handler"


def _check_layers(env: gym.Env, state: EnvState) -> tuple[list[Any], list[SnapshotHandler]]:
    layers = _layers(env)
    saved = "<".join(layer["class"] for layer in state["layers"])
    if saved != _describe(layers):
        raise UnsupportedEnvState(f"the snapshot is of {saved}, this env is {_describe(layers)}")
    handlers = _handlers(layers)
    for layer, handler, saved_layer in zip(layers, handlers, state["layers"]):
        if handler.check is not None:
            handler.check(layer, saved_layer["state"])
    return layers, handlers


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

# Stateless wrappers from rl_runner.envs.wrappers. ChannelsFirst transposes.
for _stateless in (
    ChannelsFirst,
    FilterObservation,
    FlattenObservation,
    GrayscaleObservation,
    ObservationSubset,
    ResizeObservation,
):
    register_snapshot_handler(_stateless, *_attributes())

# LearningSignals: the lives counter of the previous step, which the next step's life-loss check compares with.
register_snapshot_handler(LearningSignals, *_attributes("lives"))
# FireReset: the lives counter after the last step, which tells whether the next one lost a life.
register_snapshot_handler(FireReset, *_attributes("lives"))


# AtariPreprocessing: its max-pool buffer (two frames; with frame_skip >= 2 every step overwrites both before
# reading them, with frame_skip 1 the second stays as reset left it), the lives counter its life-loss
# terminal compares with, and game_over. Its no-op count is drawn inside reset from the base env's
# np_random, which env_state keeps; everything else is a constructor constant.
def _capture_atari_preprocessing(layer: AtariPreprocessing) -> dict[str, Any]:
    return {
        "obs_buffer": [frame.copy() for frame in layer.obs_buffer],
        "lives": layer.lives,
        "game_over": layer.game_over,
    }


def _check_atari_preprocessing(layer: AtariPreprocessing, state: dict[str, Any]) -> None:
    saved = [(frame.shape, frame.dtype) for frame in state["obs_buffer"]]
    if saved != [(frame.shape, frame.dtype) for frame in layer.obs_buffer]:
        raise UnsupportedEnvState(
            f"AtariPreprocessing: the saved frame buffer is {saved}, this env's is "
            f"{[(frame.shape, frame.dtype) for frame in layer.obs_buffer]} (grayscale_obs differs)"
        )


def _restore_atari_preprocessing(layer: AtariPreprocessing, state: dict[str, Any]) -> None:
    for frame, saved_frame in zip(layer.obs_buffer, state["obs_buffer"]):
        frame[...] = saved_frame  # in place: the ALE writes its screens into these very arrays
    layer.lives = state["lives"]
    layer.game_over = state["game_over"]


register_snapshot_handler(
    AtariPreprocessing, _capture_atari_preprocessing, _restore_atari_preprocessing, check=_check_atari_preprocessing
)


# FrameStackObservation: the frames in its deque. Its padding_value is rewritten by every reset before it is
# read (padding "reset") or is a constant; stacked_obs is an output buffer every step overwrites.
def _capture_frame_stack(layer: FrameStackObservation) -> dict[str, Any]:
    return {"frames": copy.deepcopy(list(layer.obs_queue))}


def _check_frame_stack(layer: FrameStackObservation, state: dict[str, Any]) -> None:
    if len(state["frames"]) != layer.stack_size:
        raise UnsupportedEnvState(f"saved {len(state['frames'])} stacked frames, this env stacks {layer.stack_size}")


def _restore_frame_stack(layer: FrameStackObservation, state: dict[str, Any]) -> None:
    layer.obs_queue = deque(copy.deepcopy(state["frames"]), maxlen=layer.stack_size)


register_snapshot_handler(FrameStackObservation, _capture_frame_stack, _restore_frame_stack, check=_check_frame_stack)

# Classic control: what step() reads besides the constructor's constants. Pendulum's last_u only feeds
# render(), kept so a rendered frame after a resume matches too.
register_snapshot_handler(CartPoleEnv, *_attributes("state", "steps_beyond_terminated"))
register_snapshot_handler(PendulumEnv, *_attributes("state", "last_u"))
register_snapshot_handler(MountainCarEnv, *_attributes("state"))
register_snapshot_handler(Continuous_MountainCarEnv, *_attributes("state"))
register_snapshot_handler(AcrobotEnv, *_attributes("state"))

# The project's T-maze: its whole per-episode state (rl_runner/envs/tmaze.py).
register_snapshot_handler(
    TMazeEnv, *_attributes("_position", "_arm_offset", "_goal_side", "_steps", "_visited", "_entered_wrong")
)


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


# ------------------------------------------------------------------------------------------- optional packages
# ale_py's AtariEnv: the whole game is the emulator. cloneState(include_rng=True) holds the console, the game's
# settings, the frame counters and the ALE's RNG; ALEState pickles, and its pickle is kept as bytes so the
# snapshot holds no ale_py object. The restore works on an env that was never reset (the constructor loads the
# ROM). AtariEnv's own np_random (stochastic frame skips, AtariPreprocessing's no-ops) is the base env's, which
# env_state keeps; its other attributes are constructor constants.
# Sticky actions are refused: the action a sticky frame repeats (StellaEnvironment::m_actions, ale-py 0.12) is
# not part of ALEState, so a restored env would repeat its own last action instead of the snapshot's. Without
# them every frame overwrites that action before using it, and the restore is exact.
def _check_no_sticky_actions(env: Any, when: str) -> None:
    sticky = env.ale.getFloat("repeat_action_probability")
    if sticky > 0:
        raise UnsupportedEnvState(
            f"AtariEnv: {when} with sticky actions (repeat_action_probability={sticky:g}): the action they repeat "
            "is held outside the ALE's cloneState, so only repeat_action_probability=0 continues exactly"
        )


def _capture_atari(env: Any) -> dict[str, Any]:
    _check_no_sticky_actions(env, "cannot snapshot an env")
    return {"game": env._game, "ale": pickle.dumps(env.ale.cloneState(include_rng=True))}


def _check_atari(env: Any, state: dict[str, Any]) -> None:
    if state["game"] != env._game:
        raise UnsupportedEnvState(f"AtariEnv: the snapshot is of the game {state['game']}, this env plays {env._game}")
    _check_no_sticky_actions(env, "cannot restore into an env")


def _restore_atari(env: Any, state: dict[str, Any]) -> None:
    env.ale.restoreState(pickle.loads(state["ale"]))


# MinAtar's gym env (minatar.gym.BaseEnv) keeps everything in ``game``, a minatar.Environment: the sticky
# action's last_action and RNG, and the game object ``game.env`` (positions, brick map, timers, ... as plain
# attributes, plus the RNG its resets and spawns draw from). Until ``seed()`` the two RNGs are separate
# RandomStates; seed() makes them one object, and the restore keeps whichever identity the snapshot had.
# Its base np_random is never drawn from; env_state keeps it anyway.
def _capture_minatar(env: Any) -> dict[str, Any]:
    game = env.game
    inner = vars(game.env)
    return {
        "game": game.env_name,
        "last_action": game.last_action,
        "random": game.random.get_state(legacy=False),
        "game_state": {name: copy.deepcopy(value) for name, value in inner.items() if name != "random"},
        "game_random": game.env.random.get_state(legacy=False),
        "shared_random": game.env.random is game.random,
    }


def _check_minatar(env: Any, state: dict[str, Any]) -> None:
    game = env.game
    if state["game"] != game.env_name:
        raise UnsupportedEnvState(
            f"MinAtar: the snapshot is of the game {state['game']}, this env plays {game.env_name}"
        )
    if set(vars(game.env)) - {"random"} != set(state["game_state"]):
        raise UnsupportedEnvState(f"MinAtar {game.env_name}: the saved game has other attributes than this one")


def _restore_minatar(env: Any, state: dict[str, Any]) -> None:
    game = env.game
    game.last_action = state["last_action"]
    game.random = np.random.RandomState()
    game.random.set_state(copy.deepcopy(state["random"]))
    if state["shared_random"]:
        game.env.random = game.random
    else:
        game.env.random = np.random.RandomState()
        game.env.random.set_state(copy.deepcopy(state["game_random"]))
    for name, value in state["game_state"].items():
        setattr(game.env, name, copy.deepcopy(value))


# (module, class qualname) -> its handler, registered by _register_optional. Exact classes only.
_OPTIONAL: dict[tuple[str, str], SnapshotHandler] = {
    ("ale_py.env", "AtariEnv"): SnapshotHandler(_capture_atari, _restore_atari, check=_check_atari),
    ("minatar.gym", "BaseEnv"): SnapshotHandler(_capture_minatar, _restore_minatar, check=_check_minatar),
}


def _register_optional(layer_class: type) -> None:
    """Registers the handler of an optional package's class among ``layer_class``'s bases, unless one is
    registered already (say, by the user)."""
    for cls in layer_class.__mro__:
        handler = _OPTIONAL.get((cls.__module__, cls.__qualname__))
        if handler is not None and cls not in _HANDLERS:
            _HANDLERS[cls] = handler
