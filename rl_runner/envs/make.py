"""Building gymnasium envs (single and vectorised) from the ``env`` config group, for any env a user brings.

``make_env`` imports what the config names (``env.imports``, a ``module:`` prefix of ``env.id``), makes the env
with ``gymnasium.make`` and the config's kwargs (``env.id`` may also be a ``module:Class`` entry point), applies
the ``env.wrappers`` in order (see ``wrappers.py``), then flattens observations the agents' torsos cannot take as
they are (``Discrete`` as one-hot, ``MultiDiscrete`` as concatenated one-hots, ``Dict``/``Tuple`` of those, any
``Box`` but vectors and images). ``env_spaces`` makes one such env once, cheaply, for the config checks: the env's
own spaces decide what can learn on it. Every mistake of a config (an unknown id, a module that is not installed,
a keyword argument the env does not take, a value its constructor refuses) is a one-line ``ConfigError`` naming
the key at fault; a rendering MuJoCo env films with a camera that follows the agent (``follow_agent_camera``).
"""

from __future__ import annotations

import importlib
import re
from functools import partial
from typing import TYPE_CHECKING, Any

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf

from rl_runner.choices import ActionSpace
from rl_runner.envs.quiet_mujoco import quiet_mujoco
from rl_runner.envs.wrappers import apply_wrappers
from rl_runner.errors import ConfigError

if TYPE_CHECKING:
    import mujoco  # imported at run time only for MuJoCo envs


def _register_atari() -> None:
    import ale_py  # the ROMs ship inside ale-py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on stderr: a refusal stays one line
    gym.register_envs(ale_py)


def _register_minatar(env_id: str) -> None:
    """MinAtar registers its gymnasium envs only when asked (and its import takes matplotlib and seaborn)."""
    if env_id in gym.registry:
        return
    try:
        import minatar.gym
    except ImportError as error:
        raise ConfigError(f"env.id={env_id!r} needs the minatar package: pip install minatar ({error})") from error
    minatar.gym.register_envs()


def import_module(name: str, key: str) -> Any:
    """A module a config names (``env.imports``, ``env.id=<module>:...``): its import registers envs."""
    try:
        return importlib.import_module(name)
    except ImportError as error:  # the module itself, or something it imports, is missing
        raise ConfigError(
            f"{key}: cannot import {name!r} ({error}): install its package, or put its folder on PYTHONPATH"
        ) from error


def env_target(env_cfg: DictConfig) -> str | gym.envs.registration.EnvSpec:
    """What ``gymnasium.make`` gets for ``env.id``, after importing the modules the config names: a registered
    id, or, for ``module:Class`` (a class or factory that is not a registered id), a spec built on the spot."""
    for name in env_cfg.get("imports") or []:
        import_module(str(name), "env.imports")
    env_id = str(env_cfg.id)
    if env_id.startswith("ALE/"):
        _register_atari()
    elif env_id.startswith("MinAtar/"):
        _register_minatar(env_id)
    if ":" not in env_id:
        return env_id
    module_name, name = env_id.split(":", 1)
    module = import_module(module_name, "env.id")
    if name in gym.registry:
        return name
    entry_point = getattr(module, name, None)
    if name.isidentifier() and callable(entry_point):
        return gym.envs.registration.EnvSpec(id=name, entry_point=entry_point)
    raise ConfigError(
        f"env.id={env_id!r}: importing {module_name!r} registered no env {name!r} and it has no class {name!r}"
    )


OTHER_PACKAGE_HINT = (
    "; an env of another package: env.id=<module>:<id>, or import its module with env.imports=[<module>]"
)
UNEXPECTED_KWARG = re.compile(r"unexpected keyword argument '(\w+)'")


def make_env(env_cfg: DictConfig, render_mode: str | None = None) -> gym.Env:
    """One env with the configured wrappers, its observations in a form the agents take. Seeding happens at
    ``reset(seed=...)``."""
    target = env_target(env_cfg)
    kwargs = OmegaConf.to_container(env_cfg.kwargs, resolve=True)
    if env_cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = env_cfg.max_episode_steps
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    env = _make(env_cfg.id, target, kwargs)
    if kwargs.get("render_mode") is not None and not USER_CAMERA_KWARGS & kwargs.keys():
        follow_agent_camera(env)
    try:
        wrapped = flat_observations(apply_wrappers(env, OmegaConf.to_container(env_cfg.wrappers, resolve=True)))
        _check_declared_action_space(env_cfg, wrapped.action_space)
    except ValueError as error:
        env.close()  # an ALE env holds an emulator until closed
        raise ConfigError(str(error)) from error
    return wrapped


def _make(env_id: str, target: str | gym.envs.registration.EnvSpec, kwargs: dict[str, Any]) -> gym.Env:
    """``gymnasium.make``, its errors as one line naming the key to change."""
    try:
        with quiet_mujoco(target):
            return gym.make(target, **kwargs)
    except gym.error.UnregisteredEnv as error:
        hint = "" if ":" in env_id else OTHER_PACKAGE_HINT
        raise ConfigError(f"env.id={env_id!r}: {_one_line(error)}{hint}") from error
    except TypeError as error:
        unexpected = UNEXPECTED_KWARG.search(str(error))
        if unexpected is None:
            raise ConfigError(_not_made(env_id, error)) from error
        key = unexpected.group(1)
        raise ConfigError(
            f"env.kwargs.{key}: {env_id} takes no keyword argument {key!r} (kept from the env group's own env?); "
            f"drop it with ~env.kwargs.{key}"
        ) from error
    except Exception as error:  # noqa: BLE001  (a user's constructor may raise anything: the line names the env)
        # the env's constructor refusing a value (a corridor of length 0), a dependency it lacks
        raise ConfigError(_not_made(env_id, error)) from error


def _not_made(env_id: str, error: BaseException) -> str:
    known = isinstance(error, (gym.error.Error, ImportError, ValueError, AssertionError, TypeError))
    return f"env.id={env_id!r} could not be made: {'' if known else type(error).__name__ + ': '}{_one_line(error)}"


def _one_line(error: BaseException) -> str:
    """gymnasium appends the creator and kwargs to a constructor's message, sometimes over several lines."""
    text = " ".join(str(error).split())
    return re.sub(r" was raised from the environment creator for .*$", "", text) or type(error).__name__


FLAT_SPACES = (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary, gym.spaces.Dict, gym.spaces.Tuple)


def flat_observations(env: gym.Env) -> gym.Env:
    """``env`` as it is when its observations are vectors or images (a ``Box`` of 1 or 3 dimensions), else with
    gymnasium's ``FlattenObservation``: one-hot for ``Discrete`` (an index fed as a number would tell a net that
    state 3 lies between states 2 and 4), concatenated one-hots for ``MultiDiscrete``, each part flattened and
    concatenated for ``Dict`` and ``Tuple``, any other ``Box`` flattened."""
    space = env.observation_space
    if isinstance(space, gym.spaces.Box) and len(space.shape) in (1, 3):
        return env
    if isinstance(space, (gym.spaces.Box, *FLAT_SPACES)):
        try:
            return gym.wrappers.FlattenObservation(env)
        except (NotImplementedError, TypeError, ValueError):
            pass  # a Dict holding a space that has no flat form (Text, Graph, Sequence)
    name = env.spec.id if env.spec else type(env.unwrapped).__name__
    if isinstance(space, gym.spaces.Dict):
        flat = [key for key, part in space.spaces.items() if _has_flat_form(part)]
        others = ", ".join(f"{key}: {type(part).__name__}" for key, part in space.spaces.items() if key not in flat)
        keep = f"keep the others with +env.wrappers.filter_observation.filter_keys=[{','.join(flat)}]" if flat else ""
        raise ValueError(
            f"env {name}: parts of its Dict observation have no flat form a net can take ({others}); {keep}"
        )
    raise ValueError(
        f"env {name}: its observation space {space} has no flat form that a net can take; wrap the env so that it "
        "observes a Box, Discrete, MultiDiscrete or a Dict/Tuple of those"
    )


def _has_flat_form(space: gym.Space) -> bool:
    try:
        gym.spaces.flatten_space(space)
    except (NotImplementedError, TypeError, ValueError):
        return False
    return True


_SPACES: dict[str, tuple[gym.Space, gym.Space]] = {}


def env_spaces(env_cfg: DictConfig) -> tuple[gym.Space, gym.Space]:
    """The observation and action spaces of the env ``env_cfg`` makes, as an agent sees them (wrappers and
    flattening applied): made once per process for each config, then closed. The config checks read them, so
    a mistake in the env's config is refused before anything is written."""
    key = OmegaConf.to_yaml(env_cfg, resolve=True)
    if key not in _SPACES:
        env = make_env(env_cfg)
        try:
            _SPACES[key] = (env.observation_space, env.action_space)
        finally:
            env.close()
    return _SPACES[key]


# gymnasium's MuJoCo envs take these to choose the camera; one in env.kwargs is the user's choice and stays
USER_CAMERA_KWARGS = frozenset({"camera_name", "camera_id", "default_camera_config"})


def follow_agent_camera(env: gym.Env) -> None:
    """Make a MuJoCo env's renderer film with a camera that follows the agent; other envs are left alone.

    Why: gymnasium 1.4's ``MujocoRenderer``, when no camera is asked for, renders from a still free camera aimed
    where the model stands at reset (it even looks up the model's "track" camera, then sets it aside), so a
    runner such as HalfCheetah leaves the picture within seconds. Preferred here is the model's own camera named
    "track" (``mode="trackcom"`` in gymnasium's locomotion models), exactly as ``camera_name="track"`` would
    choose it. A model without one gets the free camera in tracking mode on its root body: the renderer would
    reset a free camera's type at every frame while its camera id is -1, so that id is cleared (None leaves the
    camera as configured), and the config is only applied when the first frame is rendered, so changing it
    after ``gym.make`` still takes effect."""
    base = env.unwrapped
    renderer, model = getattr(base, "mujoco_renderer", None), getattr(base, "model", None)
    if renderer is None or model is None:
        return
    import mujoco

    track = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
    if track != -1:
        renderer.camera_id = track
        return
    config = dict(renderer.default_cam_config or {})
    if config.get("trackbodyid", -1) <= 0:  # the env's own choice of body stands; 0 is the world (static)
        config["trackbodyid"] = _root_body(model)
    config["type"] = mujoco.mjtCamera.mjCAMERA_TRACKING
    renderer.default_cam_config = config
    renderer.camera_id = None


def _root_body(model: mujoco.MjModel) -> int:
    """The first body under the world that moves (has joints of its own), else the first body under the world."""
    children = [body for body in range(1, model.nbody) if model.body_parentid[body] == 0]
    moving = [body for body in children if model.body_dofnum[body] > 0]
    return (moving or children or [0])[0]


def make_vector_env(env_cfg: DictConfig) -> gym.vector.VectorEnv:
    """``env.num_envs`` copies in one process. SAME_STEP autoreset: a finished env is reset inside the step
    that ended it, and the real final observation comes back in ``info["final_obs"]``."""
    if env_cfg.num_envs < 1:
        raise ConfigError(f"env.num_envs must be at least 1, got {env_cfg.num_envs}")
    return gym.vector.SyncVectorEnv(
        [partial(make_env, env_cfg) for _ in range(env_cfg.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def action_space_kind(space: gym.Space) -> ActionSpace | None:
    """The kind of actions of ``space`` that an agent may support, or None (``MultiDiscrete``, ``Dict``...)."""
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return ActionSpace.continuous
    if isinstance(space, gym.spaces.Discrete):
        return ActionSpace.discrete
    return None


def _check_declared_action_space(env_cfg: DictConfig, space: gym.Space) -> None:
    """``env.action_space`` is optional (the env's own space decides); one written in a config must be true."""
    declared = env_cfg.get("action_space")
    if declared is None:
        return
    actual = action_space_kind(space)
    if actual is not ActionSpace(declared):  # an enum from a schema-checked config, a string otherwise
        raise ValueError(
            f"env {env_cfg.id} has {actual.value if actual else space} actions but its config declares "
            f"env.action_space={ActionSpace(declared).value}: drop the key (the env's own space decides)"
        )
