"""Runner registry: ``agent.runner`` -> the loop that drives that kind of agent, and what it needs.

Each runner module provides ``run(cfg, context) -> summary`` (training, through the shared skeleton in
``runners/base.py``; ``context`` is a ``RunContext``) and ``evaluate(cfg, checkpoint, device, options) -> result``
(``rl-eval``, whose result has a printable ``report``). ``needs`` is checked against the composed config
before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rl_runner.registry import resolve_entry


@dataclass(frozen=True)
class RunnerEntry:
    module: str
    needs: Literal["env", "data"]  # an env group or a data group
    eval_options: tuple[str, ...]  # rl-eval's key=value options besides checkpoint= and device=


RUNNERS = {
    "off_policy": RunnerEntry("rl_runner.runners.off_policy", needs="env", eval_options=("episodes", "video", "seed")),
    "dataset": RunnerEntry("rl_runner.runners.dataset", needs="data", eval_options=("split",)),
}


def runner_entry(name: str) -> RunnerEntry:
    if name not in RUNNERS:
        raise ValueError(f"unknown agent.runner={name!r}; known: {', '.join(sorted(RUNNERS))}")
    return RUNNERS[name]


def runner_function(name: str, function: Literal["run", "evaluate"]) -> Any:
    return resolve_entry({name: f"{runner_entry(name).module}:{function}"}, name, "agent.runner")
