"""The runner registry, as plain data: ``agent.runner`` -> the modules that train and load that kind of agent and
what the runner needs from a config. Tables name ``"module:attribute"`` strings resolved on first use, so the CLI
imports only what a run needs, and the config checks read a runner's needs without importing any runner.

A runner is two modules (they may be one):

- ``trains``: ``run(cfg, context) -> summary``, training through the shared skeleton (``runners/base.py``);
- ``loads``: ``load_trained(cfg, checkpoint, device) -> TrainedAgent`` (the Python API) and
  ``evaluate(cfg, checkpoint, device, options) -> result`` (``rl-eval``; the result has a printable ``report``).
  Every env runner shares ``runners/env_loop.py`` here: a trained env agent acts the same whoever trained it.

Adding a runner is one entry in ``RUNNERS``; ``docs/architecture.md`` walks through it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Literal

# Keys of every agent config that declare the run rather than configure the agent's constructor.
DECLARATION_KEYS = frozenset({"name", "runner", "nets", "objective"})
ENV_EVAL_OPTIONS = ("episodes", "video", "seed")  # rl-eval's options for any env runner (runners/env_loop.py)


@dataclass(frozen=True)
class RunnerEntry:
    trains: str  # module with run()
    loads: str  # module with load_trained() and evaluate()
    needs: Literal["env", "data"]  # an env group or a data group, checked before anything runs
    owned_keys: frozenset[str]  # agent config keys the runner reads (cadence), not passed to the agent
    eval_options: tuple[str, ...]  # rl-eval's key=value options besides checkpoint= and device=


RUNNERS = {
    "off_policy": RunnerEntry(
        trains="rl_runner.runners.off_policy",
        loads="rl_runner.runners.env_loop",
        needs="env",
        # learning_starts is read by both the runner (warm-up) and the agent (replay fill)
        owned_keys=frozenset({"action_spaces", "updates_per_step"}),
        eval_options=ENV_EVAL_OPTIONS,
    ),
    "dataset": RunnerEntry(
        trains="rl_runner.runners.dataset",
        loads="rl_runner.runners.dataset_scoring",
        needs="data",
        # the dataset loop draws the batches and sets the threshold
        owned_keys=frozenset({"batch_size", "threshold_percentile"}),
        eval_options=("split",),
    ),
}


def resolve_entry(table: dict[str, str], name: str, what: str) -> Any:
    """The attribute a ``"module:attribute"`` table names for ``name``; an unknown name lists the known ones."""
    if name not in table:
        raise ValueError(f"unknown {what}={name!r}; known: {', '.join(sorted(table))}")
    module_name, attribute = table[name].split(":")
    return getattr(importlib.import_module(module_name), attribute)


def runner_entry(name: str) -> RunnerEntry:
    if name not in RUNNERS:
        raise ValueError(f"unknown agent.runner={name!r}; known: {', '.join(sorted(RUNNERS))}")
    return RUNNERS[name]


def runner_function(name: str, function: Literal["run", "load_trained", "evaluate"]) -> Callable[..., Any]:
    """``run`` from the runner's ``trains`` module, ``load_trained`` and ``evaluate`` from its ``loads`` module."""
    entry = runner_entry(name)
    module = entry.trains if function == "run" else entry.loads
    return resolve_entry({name: f"{module}:{function}"}, name, "agent.runner")
