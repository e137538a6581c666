"""Composing and checking configs: Hydra composition outside ``@hydra.main`` (the command line's up-front check, a
run's saved overrides, the tests), the value and compatibility checks of a composed config, and the registration
of the schemas (``rl_runner/schemas.py``) with Hydra. Runners and agents never compose: they receive a config."""

from rl_runner.config.checks import check_compatibility, check_config, check_values, config_warnings
from rl_runner.config.compose import (
    CONF_DIR,
    CheckedOverrides,
    check_overrides,
    compose_config,
    config_groups,
    describe_error,
    hydra_settings,
    is_sweep_directory,
    output_directory,
    resume_arguments,
    run_config,
    saved_overrides,
    sweep_arguments,
    validate_overrides,
)
from rl_runner.errors import ConfigError

__all__ = [
    "CONF_DIR",
    "CheckedOverrides",
    "check_overrides",
    "config_groups",
    "ConfigError",
    "check_compatibility",
    "check_config",
    "check_values",
    "config_warnings",
    "compose_config",
    "describe_error",
    "hydra_settings",
    "is_sweep_directory",
    "output_directory",
    "resume_arguments",
    "run_config",
    "saved_overrides",
    "sweep_arguments",
    "validate_overrides",
]
