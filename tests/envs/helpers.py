"""Helpers shared by the env tests: env configs without Hydra, pixel env configs, and a trip through torch.save."""

from __future__ import annotations

import io
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from rl_runner.config import compose_config


def env_config(env_id: str, action_space: str, **fields: Any) -> DictConfig:
    """An ``env`` group config without Hydra, for env ids that conf/env has no file for."""
    base = {"id": env_id, "action_space": action_space, "num_envs": 1, "max_episode_steps": None, "wrappers": {}}
    return OmegaConf.create(base | {"kwargs": {}} | fields)


def through_checkpoint(state: Any) -> Any:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def pixel_config(env: str, *overrides: str) -> DictConfig:
    return compose_config(["agent=rainbow", f"env={env}", *overrides]).env
