"""Checks of a composed config that Hydra's type checks cannot make: value bounds, missing values, and
whether the chosen agent, env or data source and net can work together. Each failure is one line.

``check_config`` runs twice: on the command line for every value of a sweep, before Hydra creates a run
directory, and inside every job (a sweeper may sample values the command line never showed).
"""

from __future__ import annotations

import dataclasses

from omegaconf import DictConfig, ListConfig, OmegaConf

from rl_runner.choices import RecurrentCell
from rl_runner.errors import ConfigError
from rl_runner.registry import runner_entry


def _missing_keys(node: DictConfig | ListConfig, prefix: str) -> list[str]:
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    missing = []
    for key in keys:
        path = f"{prefix}{key}"
        if OmegaConf.is_missing(node, key):
            missing.append(path)
        else:
            child = node._get_node(key)
            if isinstance(child, (DictConfig, ListConfig)) and not child._is_none():
                missing += _missing_keys(child, f"{path}.")
    return missing


def _bound_violations(node: DictConfig, prefix: str) -> list[str]:
    problems = []
    schema = OmegaConf.get_type(node)
    checks = (
        {f.name: f.metadata["check"] for f in dataclasses.fields(schema) if "check" in f.metadata}
        if dataclasses.is_dataclass(schema)
        else {}
    )
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none():
            problems += _bound_violations(child, f"{prefix}{key}.")
        elif key in checks:
            value = node[key]
            problem = checks[key](value) if isinstance(value, (int, float)) or value is None else None
            if problem:
                problems.append(f"{prefix}{key}={value} {problem}")
    return problems


def check_values(cfg: DictConfig) -> None:
    """Every value set, and every bounded value within its bounds."""
    missing = _missing_keys(cfg, "")
    if missing:
        raise ConfigError(f"no value for {', '.join(missing)}: set it on the command line ({missing[0]}=...)")
    problems = _bound_violations(cfg, "")
    for group in ("agent", "net"):  # relations between fields, e.g. agent.v_min < agent.v_max
        node = cfg.get(group)
        schema = OmegaConf.get_type(node) if node is not None else None
        if hasattr(schema, "problems"):
            problems += schema.problems(node)
    schema = OmegaConf.get_type(cfg.agent)
    if hasattr(schema, "run_problems"):  # relations with the run's keys, e.g. anogan's total_steps
        problems += schema.run_problems(cfg)
    if problems:
        raise ConfigError("; ".join(problems))


def check_compatibility(cfg: DictConfig) -> None:
    """The agent's runner gets what it needs (an env or a data source), of a kind the agent can use."""
    agent = cfg.agent
    try:
        entry = runner_entry(agent.runner)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    if entry.needs == "env":
        if cfg.env is None:
            raise ConfigError(f"agent={agent.name} learns from an environment: choose one with env=...")
        if cfg.data is not None:
            raise ConfigError(f"agent={agent.name} learns from an environment, not from data: drop data=...")
        supported = list(agent.action_spaces)
        if cfg.env.action_space not in supported:
            names = ", ".join(space.value for space in supported)
            raise ConfigError(
                f"agent={agent.name} cannot run on env={cfg.env.id}: it has {cfg.env.action_space.value} actions "
                f"and {agent.name} supports only {names} actions"
            )
    else:
        if cfg.data is None:
            raise ConfigError(f"agent={agent.name} learns from a data set: choose one with data=...")
        if cfg.env is not None:
            raise ConfigError(f"agent={agent.name} learns from data, not from an environment: drop env={cfg.env.id}")
    if cfg.net.name not in list(agent.nets):  # after the env: a pixel env picks its conv torso itself
        raise ConfigError(f"agent={agent.name} cannot build net={cfg.net.name}; it builds {', '.join(agent.nets)}")


def check_config(cfg: DictConfig, check_device: bool = True) -> None:
    """All of the above; ``check_device=False`` for a saved run's config that is evaluated on another machine."""
    from rl_runner.runtime import resolve_device  # torch, only when a device is checked

    check_values(cfg)
    check_compatibility(cfg)
    if not check_device:
        return
    try:
        resolve_device(cfg.device)  # a malformed or unavailable device
    except ValueError as error:
        raise ConfigError(str(error)) from error


def config_warnings(cfg: DictConfig) -> list[str]:
    """Settings that are legal but most likely not meant."""
    warnings = []
    learning_starts = OmegaConf.select(cfg, "agent.learning_starts")
    if learning_starts is not None and cfg.total_steps <= learning_starts:
        warnings.append(
            f"total_steps={cfg.total_steps} is not above agent.learning_starts={learning_starts}: "
            "the agent acts at random and never learns"
        )
    if OmegaConf.select(cfg, "agent.cell") == RecurrentCell.none and cfg.agent.stored_state:
        warnings.append("agent.stored_state=true has no effect with agent.cell=none: a feed-forward core has no state")
    metric = cfg.agent.objective.metric
    if cfg.env is not None and metric.startswith("eval/") and cfg.eval.episodes == 0:
        warnings.append(f"eval.episodes=0: the objective {metric} is never measured (a sweeper gets no value)")
    if metric.startswith("eval/val_") and cfg.data is not None and not _validation_can_hold_anomalies(cfg.data):
        warnings.append(
            f"the objective {metric} needs anomalous validation windows and this data has none (a sweeper gets no "
            "value): set data.val_faults=true or a data.label_column"
        )
    return warnings


def _validation_can_hold_anomalies(data: DictConfig) -> bool:
    """Whether a data source can give labelled anomalous validation windows (an objective like val_roc_auc)."""
    if OmegaConf.select(data, "anomaly_fraction") is not None:  # the synthetic source
        return data.anomaly_fraction > 0
    return bool(OmegaConf.select(data, "val_faults")) or OmegaConf.select(data, "label_column") is not None
