"""Gymnasium envs from the ``env`` config group, their wrappers, and snapshots of running envs."""

from rl_runner.envs.make import make_env, make_vector_env
from rl_runner.envs.state import (
    UnsupportedEnvState,
    env_state,
    register_snapshot_handler,
    restore_env_state,
    restore_vector_env_state,
    vector_env_state,
)
from rl_runner.envs.wrappers import WRAPPERS, apply_wrappers

__all__ = [
    "WRAPPERS",
    "UnsupportedEnvState",
    "apply_wrappers",
    "env_state",
    "make_env",
    "make_vector_env",
    "register_snapshot_handler",
    "restore_env_state",
    "restore_vector_env_state",
    "vector_env_state",
]
