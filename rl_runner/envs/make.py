"""Building gymnasium envs (single and vectorised) from the ``env`` config group.

``make_env`` is ``gymnasium.make`` with the config's kwargs, then the ``env.wrappers`` in order (see
``wrappers.py``), then a check that the env really has the kind of actions the config declares. Every
failure is a ``ValueError`` naming the config key at fault. A rendering MuJoCo env films with a camera that
follows the agent (``follow_agent_camera``).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf

from rl_runner.choices import ActionSpace
from rl_runner.envs.wrappers import apply_wrappers

if TYPE_CHECKING:
    import mujoco  # imported at run time only for MuJoCo envs


def _register_atari() -> None:
    import ale_py  # the ROMs ship inside ale-py

    gym.register_envs(ale_py)


def _register_minatar(env_id: str) -> None:
    """MinAtar registers its gymnasium envs only when asked (and its import takes matplotlib and seaborn)."""
    if env_id in gym.registry:
        return
    try:
        import minatar.gym
    except ImportError as error:
        raise ValueError(f"env.id={env_id!r} needs the minatar package: pip install minatar ({error})") from error
    minatar.gym.register_envs()


def make_env(env_cfg: DictConfig, render_mode: str | None = None) -> gym.Env:
    """One env with the configured wrappers. Seeding happens at ``reset(seed=...)``."""
    kwargs = OmegaConf.to_container(env_cfg.kwargs, resolve=True)
    if env_cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = env_cfg.max_episode_steps
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if env_cfg.id.startswith("ALE/"):
        _register_atari()
    elif env_cfg.id.startswith("MinAtar/"):
        _register_minatar(env_cfg.id)
    try:
        env = gym.make(env_cfg.id, **kwargs)
    except gym.error.Error as error:
        raise ValueError(f"env.id={env_cfg.id!r} could not be made: {error}") from error
    if kwargs.get("render_mode") is not None and not USER_CAMERA_KWARGS & kwargs.keys():
        follow_agent_camera(env)
    try:
        wrapped = apply_wrappers(env, OmegaConf.to_container(env_cfg.wrappers, resolve=True))
        _check_declared_action_space(env_cfg, wrapped.action_space)
    except ValueError:
        env.close()  # an ALE env holds an emulator until closed
        raise
    return wrapped


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
        raise ValueError(f"env.num_envs must be at least 1, got {env_cfg.num_envs}")
    return gym.vector.SyncVectorEnv(
        [partial(make_env, env_cfg) for _ in range(env_cfg.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def _check_declared_action_space(env_cfg: DictConfig, space: gym.Space) -> None:
    actual = ActionSpace.continuous if isinstance(space, gym.spaces.Box) else ActionSpace.discrete
    declared = ActionSpace(env_cfg.action_space)  # an enum from a schema-checked config, a string otherwise
    if actual is not declared:
        raise ValueError(
            f"env {env_cfg.id} has {actual.value} actions but its config declares env.action_space={declared.value}"
        )
