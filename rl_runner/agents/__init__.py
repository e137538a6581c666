"""Agent registry: ``agent.name`` -> the class that implements it, and how it is built from its config."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from rl_runner.registry import resolve_entry

AGENT_CLASSES = {
    "ddpg": "rl_runner.agents.ddpg:DDPG",
    "rainbow": "rl_runner.agents.rainbow:Rainbow",
    "drqn": "rl_runner.agents.drqn:DRQN",
    "autoencoder": "rl_runner.agents.autoencoder:WindowAutoencoder",
    "anogan": "rl_runner.agents.anogan:AnoGAN",
}

# Agent config keys that declare or drive the run rather than configure the agent's constructor.
RUNNER_OWNED_KEYS = {
    "common": {"name", "runner", "nets", "objective"},
    "off_policy": {"action_spaces", "updates_per_step"},  # learning_starts is read by both (warm-up, replay fill)
    "dataset": {"batch_size", "threshold_percentile"},  # the dataset loop draws the batches and sets the threshold
}


def agent_class(name: str) -> type:
    return resolve_entry(AGENT_CLASSES, name, "agent.name")


def hyperparameters(agent_cfg: DictConfig) -> dict[str, Any]:
    """The agent's constructor keywords: its config minus the runner-owned keys (nested groups stay DictConfig)."""
    owned = RUNNER_OWNED_KEYS["common"] | RUNNER_OWNED_KEYS.get(agent_cfg.runner, set())
    return {key: agent_cfg[key] for key in agent_cfg if key not in owned}


def build_agent(agent_cfg: DictConfig, **context: Any) -> Any:
    """``agent=<name>`` built from its hyperparameters and the run context (net, device, clock, task sizes)."""
    return agent_class(agent_cfg.name)(**hyperparameters(agent_cfg), **context)
