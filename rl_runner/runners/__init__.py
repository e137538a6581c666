"""Runner registry: ``agent.runner`` -> the loop that drives that kind of agent."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig

RunnerFunction = Callable[[DictConfig, Path, torch.device, "Path | None"], dict]

RUNNERS = {
    "off_policy": "rl_runner.runners.off_policy:run_off_policy",
}


def runner_function(name: str) -> RunnerFunction:
    if name not in RUNNERS:
        raise ValueError(f"unknown agent.runner={name!r}; known runners: {', '.join(sorted(RUNNERS))}")
    module_name, function_name = RUNNERS[name].split(":")
    return getattr(importlib.import_module(module_name), function_name)
