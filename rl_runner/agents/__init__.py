"""Agent registry: ``agent.name`` -> the class that implements it, imported only when used."""

from __future__ import annotations

import importlib

AGENT_CLASSES = {
    "ddpg": "rl_runner.agents.ddpg:DDPG",
}


def agent_class(name: str) -> type:
    if name not in AGENT_CLASSES:
        raise ValueError(f"unknown agent.name={name!r}; known agents: {', '.join(sorted(AGENT_CLASSES))}")
    module_name, class_name = AGENT_CLASSES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)
