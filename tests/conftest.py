"""Shared fixtures: real Hydra composition of conf/, shrunk so a run takes seconds on 2 CPU cores."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from rl_runner.envs import make_env
from rl_runner.runners.off_policy import build_agent
from rl_runner.train import CONF_DIR

REPO_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("MUJOCO_GL", "egl")

# Small networks, short warm-up, frequent logging: a few hundred steps exercise every code path.
TINY = [
    "device=cpu",
    "progress=false",
    "net.hidden=32",
    "agent.batch_size=32",
    "agent.learning_starts=100",
    "agent.buffer_size=10000",
    "total_steps=300",
    "log.every=50",
    "eval.every=150",
    "eval.episodes=1",
    "checkpoint.every=150",
]


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture
def tiny_config() -> Callable[..., DictConfig]:
    """``tiny_config("env=pendulum", ...)``: the real config with TINY and then the given overrides."""

    def make(*overrides: str) -> DictConfig:
        return compose_config(TINY + list(overrides))

    return make


def make_agent(cfg: DictConfig, device: str = "cpu") -> Any:
    """The configured agent for one env of the configured kind, as rl-eval builds it."""
    env = make_env(cfg.env)
    return build_agent(cfg, env.observation_space, env.action_space, 1, torch.device(device))


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rl_runner.train", *args]
