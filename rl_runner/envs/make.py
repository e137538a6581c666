"""Building gymnasium envs (single and vectorised) from the ``env`` config group.

``make_env`` is ``gymnasium.make`` with the config's kwargs, then the ``env.wrappers`` in order (see
``wrappers.py``), then a check that the env really has the kind of actions the config declares. Every
failure is a ``ValueError`` naming the config key at fault.
"""

from __future__ import annotations

from functools import partial

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf

from rl_runner.config import ActionSpace
from rl_runner.envs.wrappers import apply_wrappers


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
    try:
        wrapped = apply_wrappers(env, OmegaConf.to_container(env_cfg.wrappers, resolve=True))
        _check_declared_action_space(env_cfg, wrapped.action_space)
    except ValueError:
        env.close()  # an ALE env holds an emulator until closed
        raise
    return wrapped


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
