"""The config layer: schemas (types and bounds), checks of a composed config, and composition helpers."""

from rl_runner.config.checks import ConfigError, check_compatibility, check_config, check_values, config_warnings
from rl_runner.config.compose import (
    CONF_DIR,
    compose_config,
    describe_error,
    output_directory,
    resume_arguments,
    run_config,
    saved_overrides,
    validate_overrides,
)
from rl_runner.config.schemas import (
    ActionSpace,
    Activation,
    Direction,
    ExplorationNoise,
    Init,
    LRSchedule,
    MatmulPrecision,
    MLPConfig,
    NetOverride,
    Norm,
    Scaling,
)

__all__ = [
    "CONF_DIR",
    "ActionSpace",
    "Activation",
    "ConfigError",
    "Direction",
    "ExplorationNoise",
    "Init",
    "LRSchedule",
    "MLPConfig",
    "MatmulPrecision",
    "NetOverride",
    "Norm",
    "Scaling",
    "check_compatibility",
    "check_config",
    "check_values",
    "config_warnings",
    "compose_config",
    "describe_error",
    "output_directory",
    "resume_arguments",
    "run_config",
    "saved_overrides",
    "validate_overrides",
]
