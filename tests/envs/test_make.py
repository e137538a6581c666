"""Building envs from config (rl_runner/envs/make.py): Breakout's and MinAtar's observations and time limits,
optional packages, and config mistakes named by key."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import OmegaConf

from rl_runner.config import compose_config
from rl_runner.envs.make import make_env
from tests.envs.helpers import env_config, pixel_config


def test_breakout_is_preprocessed_as_configured() -> None:
    cfg = compose_config(["env=breakout"]).env
    assert list(cfg.wrappers) == ["atari_preprocessing", "fire_reset", "learning_signals", "frame_stack"]
    env = make_env(cfg)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert isinstance(env.action_space, gym.spaces.Discrete)
    env.close()


def test_env_config_mistakes_name_their_key() -> None:
    with pytest.raises(ValueError, match="env.id='NoSuchEnv-v0': Environment `NoSuchEnv` doesn't exist.*env.imports="):
        make_env(env_config("NoSuchEnv-v0", "continuous"))
    with pytest.raises(ValueError, match="env.action_space=discrete"):
        make_env(env_config("Pendulum-v1", "discrete"))


def test_importing_the_envs_imports_neither_ale_py_nor_minatar() -> None:
    code = "import sys, rl_runner.envs; print(sorted({'ale_py', 'minatar'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


@pytest.mark.parametrize(
    ("name", "shape", "dtype", "actions"),
    [("breakout", (4, 84, 84), np.uint8, 4), ("minatar_breakout", (4, 10, 10), bool, 3)],
)
def test_pixel_observations(name: str, shape: tuple, dtype: type, actions: int) -> None:
    env = make_env(pixel_config(name))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == obs.shape == shape and obs.dtype == env.observation_space.dtype == dtype
    assert obs.flags.c_contiguous and env.action_space == gym.spaces.Discrete(actions)
    obs, *_ = env.step(0)
    assert obs.shape == shape and obs.dtype == dtype and env.observation_space.contains(obs)
    env.close()


def test_minatar_is_cut_at_its_configured_time_limit() -> None:
    env = make_env(pixel_config("minatar_breakout", "env.max_episode_steps=3"))
    env.reset(seed=0)
    assert [env.step(0)[3] for _ in range(3)] == [False, False, True]


def test_minatar_needs_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "minatar", None)  # as if not installed: importing it raises ImportError
    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    cfg = OmegaConf.merge(pixel_config("minatar_breakout"), {"id": "MinAtar/NotRegistered-v0"})
    with pytest.raises(
        ValueError, match=r"^env\.id='MinAtar/NotRegistered-v0' needs the minatar package: pip install"
    ) as error:
        make_env(cfg)
    assert "\n" not in str(error.value)
