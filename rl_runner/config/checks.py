"""Checks of a composed config that Hydra's type checks cannot make: value bounds, missing values, and
whether the chosen agent, env or data source and net can work together. Each failure is one line.

``check_config`` runs twice: on the command line for every value of a sweep, before Hydra creates a run
directory, and inside every job (a sweeper may sample values the command line never showed).
"""

from __future__ import annotations

import dataclasses

from omegaconf import DictConfig, ListConfig, OmegaConf

from rl_runner.choices import ActionSpace, RecurrentCell
from rl_runner.config.groups import option_values
from rl_runner.errors import ConfigError
from rl_runner.registry import runner_entry
from rl_runner.schemas import PixelNetConfig


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


def check_compatibility(cfg: DictConfig, sources: bool = True) -> None:
    """The agent's runner gets what it needs (an env or a data source), of a kind the agent can use; with
    ``sources``, the env is made (its spaces decide) or the data read, so that every mistake in them shows now."""
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
    else:
        if cfg.data is None:
            raise ConfigError(f"agent={agent.name} learns from a data set: choose one with data=...")
        if cfg.env is not None:
            env = OmegaConf.select(cfg, "env.id", throw_on_missing=False) or "..."
            raise ConfigError(f"agent={agent.name} learns from data, not from an environment: drop env={env}")
    if entry.needs == "env" and sources:
        check_env(cfg)
    else:
        check_net(cfg)
        if sources:
            check_data(cfg)


def check_data(cfg: DictConfig) -> None:
    """The data is read and checked completely (every file, every value), so that a bad file is refused before
    anything is written; the run then uses what was read (``rl_runner.data.load_data``)."""
    from rl_runner.data import DataError, load_data  # numpy: only once the values are good

    try:
        load_data(cfg.data, keep_for_run=True)
    except DataError as error:
        raise ConfigError(str(error)) from error


def check_net(cfg: DictConfig) -> None:
    agent = cfg.agent
    if cfg.net.name not in list(agent.nets):  # after the env's actions: a pixel env picks its conv torso itself
        raise ConfigError(f"agent={agent.name} cannot build net={cfg.net.name}; it builds {', '.join(agent.nets)}")


def check_env(cfg: DictConfig) -> None:
    """The env the config makes exists, takes its kwargs, and has spaces the agent and its net can take: the env's
    own spaces decide, read from one env made for the check (``rl_runner.envs.make.env_spaces``), so that any
    gymnasium env needs no YAML of its own."""
    from rl_runner.envs.make import action_space_kind, env_spaces  # gymnasium: only once the values are good

    agent, env_id = cfg.agent, cfg.env.id
    observation_space, action_space = env_spaces(cfg.env)
    kind = action_space_kind(action_space)
    if kind not in list(agent.action_spaces):
        names = ", ".join(space.value for space in agent.action_spaces)
        has = f"{kind.value} actions ({action_space})" if kind else f"actions {action_space}"
        raise ConfigError(f"agent={agent.name} cannot run on env.id={env_id}: it has {has}; {agent.name} takes {names}")
    if kind is ActionSpace.continuous and not (_finite(action_space.low) and _finite(action_space.high)):
        raise ConfigError(  # the actor squashes its actions into the bounds, and warm-up draws uniformly within them
            f"agent={agent.name} needs bounded actions; env.id={env_id} has {action_space}: give the env finite "
            "action bounds"
        )
    check_net(cfg)
    shape = tuple(getattr(observation_space, "shape", None) or ())
    pixel_agent = any(str(net) != "mlp" for net in agent.nets)
    if pixel_agent and len(shape) == 3 and shape[-1] <= 4 < shape[0]:  # height x width x channels
        raise ConfigError(
            f"env.id={env_id} observes images {observation_space} with their channels last; conv torsos read "
            "[channels, height, width]: add +env.wrappers.channels_first={}"
        )
    fitting = pixel_nets_that_fit(agent, shape)
    if "channels" in cfg.net and len(shape) != 3:  # a conv torso (PixelNetConfig)
        raise ConfigError(
            f"net={cfg.net.name} needs image observations [channels, height, width]; env.id={env_id} observes "
            f"{observation_space}: choose net=mlp"
        )
    if "channels" in cfg.net and PixelNetConfig.feature_map(*shape[1:], cfg.net.kernels, cfg.net.strides) is None:
        choose = f": choose net={fitting[0]}" if fitting else ""
        raise ConfigError(
            f"net={cfg.net.name}: its conv layers (kernels {list(cfg.net.kernels)}, strides {list(cfg.net.strides)}) "
            f"do not fit the {shape[1]}x{shape[2]} images of env.id={env_id}{choose}"
        )
    if "channels" not in cfg.net and len(shape) == 3:
        choose = f"choose a conv torso (net={fitting[0]}) or " if fitting else ""
        raise ConfigError(
            f"agent={agent.name}'s net={cfg.net.name} needs vector observations; env.id={env_id} observes images "
            f"{observation_space}: {choose}flatten them with +env.wrappers.flatten_observation={{}}"
        )


def _finite(values: object) -> bool:
    import numpy as np  # with gymnasium: only once an env was made

    return bool(np.all(np.isfinite(values)))


def pixel_nets_that_fit(agent: DictConfig, shape: tuple[int, ...]) -> list[str]:
    """The conv torsos the agent builds (as this project's ``conf/net/`` defines them) that fit images of
    ``shape`` [channels, height, width]: the ones a refusal can suggest."""
    if len(shape) != 3:
        return []
    fitting = []
    for name in agent.nets:
        values = option_values("net", str(name))
        if values is not None and "kernels" in values:
            if PixelNetConfig.feature_map(*shape[1:], values.kernels, values.strides) is not None:
                fitting.append(str(name))
    return fitting


def check_config(cfg: DictConfig, check_device: bool = True, sources: bool = True) -> None:
    """All of the above; ``check_device=False`` for a saved run's config that is evaluated on another machine,
    ``sources=False`` to leave the env unmade and the data unread (``rl-train --cfg job``)."""
    check_values(cfg)
    check_compatibility(cfg, sources)
    if not check_device or cfg.device in ("auto", "cpu"):  # these are always there; only others need torch to check
        return
    from rl_runner.runtime import resolve_device

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
