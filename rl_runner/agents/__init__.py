"""Agent registry: ``agent.name`` -> the class that implements it."""

from __future__ import annotations

from rl_runner.registry import resolve_entry

AGENT_CLASSES = {
    "ddpg": "rl_runner.agents.ddpg:DDPG",
}


def agent_class(name: str) -> type:
    return resolve_entry(AGENT_CLASSES, name, "agent.name")
