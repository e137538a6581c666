"""Building gymnasium envs (single and vectorised) from the ``env`` config group."""

from __future__ import annotations

from functools import partial

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf

from rl_runner.config import ActionSpace, Preprocess


def _register_atari() -> None:
    import ale_py  # the ROMs ship inside ale-py

    gym.register_envs(ale_py)


def make_env(env_cfg: DictConfig, render_mode: str | None = None) -> gym.Env:
    """One env with the configured preprocessing. Seeding happens at ``reset(seed=...)``."""
    kwargs = OmegaConf.to_container(env_cfg.kwargs, resolve=True)
    if env_cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = env_cfg.max_episode_steps
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if env_cfg.id.startswith("ALE/"):
        _register_atari()
    try:
        env = gym.make(env_cfg.id, **kwargs)
    except gym.error.Error as error:
        raise ValueError(f"env.id={env_cfg.id!r} could not be made: {error}") from error
    if env_cfg.preprocess is Preprocess.atari:
        env = gym.wrappers.AtariPreprocessing(env, frame_skip=4, screen_size=84, grayscale_obs=True, noop_max=30)
        env = gym.wrappers.FrameStackObservation(env, env_cfg.frame_stack)
    _check_declared_action_space(env_cfg, env.action_space)
    return env


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
    if actual is not env_cfg.action_space:
        raise ValueError(
            f"env {env_cfg.id} has {actual.value} actions but its config declares "
            f"env.action_space={env_cfg.action_space.value}"
        )
