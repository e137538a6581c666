"""``run.json``: what a run is, where it stands and what it produced, for sweeps, plots and people.

Written atomically (temporary file, then rename) when a run starts or resumes and when it ends:
``status`` is ``running``, ``finished``, ``interrupted`` (a signal; resumable), ``diverged`` (a NaN stop)
or ``failed`` (any other error, named in ``error``). ``attempts`` keeps one entry per start, so a resumed or
requeued run shows its history. A process killed outright leaves ``running`` behind. A failure on a disk too
full for the temporary copy (``failed`` with ``No space left on device``) is written over run.json's own bytes.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rl_runner.dotted import flatten_config
from rl_runner.files import overwrite_in_place, read_json, write_json

log = logging.getLogger(__name__)
RECORD_NAME = "run.json"
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
PACKAGES = ("rl-runner", "torch", "gymnasium", "numpy", "hydra-core", "omegaconf", "mujoco", "ale-py")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit(path: Path) -> dict[str, Any] | None:
    """The commit of the source tree the package runs from, and whether it had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None  # not a git checkout (an installed wheel) or no git
    return {"commit": commit, "dirty": bool(status.strip())}


def provenance() -> dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "cwd": os.getcwd(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "versions": versions,
        "git": git_commit(Path(__file__).resolve().parent),
    }


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


class RunRecord:
    def __init__(self, run_dir: Path, cfg: DictConfig) -> None:
        self.path = run_dir / RECORD_NAME
        self.objective = {"metric": cfg.agent.objective.metric, "direction": cfg.agent.objective.direction.value}
        self.started = False
        previous = read_record(run_dir)
        self.content: dict[str, Any] = {
            "agent": cfg.agent.name,
            "runner": cfg.agent.runner,
            "env": cfg.env.id if cfg.env is not None else None,
            "data": str(cfg.data.path) if cfg.data is not None and "path" in cfg.data else None,
            "seed": cfg.seed,
            "objective": self.objective,
            "attempts": previous.get("attempts", []),
            "config": flatten_config(cfg),  # what a sweep run again compares its job's settings with
        }

    def _write(self) -> None:
        write_json(self.path, self.content)

    def start(self, device: str, details: dict[str, Any] | None = None) -> None:
        """``details``: what the runner found out while it was set up (a data run's columns)."""
        self.content.update(details or {})
        self.content.update(status="running", updated=_now(), device=device, provenance=provenance())
        self.content["attempts"].append({"started": _now(), "status": "running"})
        self._write()
        self.started = True

    def end(self, status: str, summary: dict | None = None, error: str | None = None) -> float | None:
        """Record the outcome; returns the objective's value when the summary has it. Recording a failure never
        hides it: if run.json cannot be written then (a full disk), that is only logged."""
        value = (summary or {}).get(self.objective["metric"])
        self.content.update(status=status, updated=_now())
        if not self.started:  # it failed while being set up
            self.content["attempts"].append({"started": _now()})
        self.content["attempts"][-1].update(ended=_now(), status=status)
        if summary is not None:
            self.content["summary"] = {key: _plain(value) for key, value in summary.items()}
            self.content["objective"] = {**self.objective, "value": value}
        if error is not None:
            self.content["error"] = error
        else:
            self.content.pop("error", None)
        try:
            self._write()
        except OSError as write_error:
            if error is None:
                raise
            if not (write_error.errno in FULL_DISK and self._overwrite()):
                log.warning("%s: %s", write_error.filename, write_error.strerror)
        return value

    def _overwrite(self) -> bool:
        """run.json rewritten over its own bytes, compact if the usual layout no longer fits in them: on a full
        disk the usual temporary copy has no room, and a run left "running" would hide why it stopped."""
        for indent in (2, None):
            text = json.dumps(self.content, indent=indent, separators=None if indent else (",", ":")) + "\n"
            try:
                if overwrite_in_place(self.path, text):
                    return True
            except OSError:
                return False
        return False


def read_record(run_dir: Path) -> dict[str, Any]:
    """A run's ``run.json``, or {} when it has none or it cannot be read."""
    return read_json(run_dir / RECORD_NAME)
