"""Agent registry: ``agent.name`` -> the class that implements it, and how it is built from its config."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from rl_runner.registry import DECLARATION_KEYS, resolve_entry, runner_entry

AGENT_CLASSES = {
    "ddpg": "rl_runner.agents.ddpg:DDPG",
    "rainbow": "rl_runner.agents.rainbow:Rainbow",
    "drqn": "rl_runner.agents.drqn:DRQN",
    "autoencoder": "rl_runner.agents.autoencoder:WindowAutoencoder",
    "anogan": "rl_runner.agents.anogan:AnoGAN",
}


def agent_class(name: str) -> type:
    return resolve_entry(AGENT_CLASSES, name, "agent.name")


def runner_owned_keys(runner: str) -> frozenset[str]:
    """The agent config keys that declare the run or drive its runner, which the constructor does not take."""
    return DECLARATION_KEYS | runner_entry(runner).owned_keys


def hyperparameters(agent_cfg: DictConfig) -> dict[str, Any]:
    """The agent's constructor keywords: its config minus the runner-owned keys (nested groups stay DictConfig)."""
    owned = runner_owned_keys(agent_cfg.runner)
    return {key: agent_cfg[key] for key in agent_cfg if key not in owned}


def build_agent(agent_cfg: DictConfig, **context: Any) -> Any:
    """``agent=<name>`` built from its hyperparameters and the run context (net, device, clock, task sizes)."""
    return agent_class(agent_cfg.name)(**hyperparameters(agent_cfg), **context)
