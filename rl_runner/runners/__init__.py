"""Runner registry: ``agent.runner`` -> the loop that drives that kind of agent.

A runner is ``run(cfg, run_dir, device, resume_from) -> summary dict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig

from rl_runner.registry import resolve_entry

RunnerFunction = Callable[[DictConfig, Path, torch.device, "Path | None"], dict]

RUNNERS = {
    "off_policy": "rl_runner.runners.off_policy:run_off_policy",
}


def runner_function(name: str) -> RunnerFunction:
    return resolve_entry(RUNNERS, name, "agent.runner")
