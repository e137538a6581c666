"""What a sweep (``rl-train -m``) adds to single runs: short job directory names, the per-job choice of threads and
GPU, and the summary of how the jobs ended.

A job directory is ``<job number>_<the swept values>`` (``3_tau=0.01_seed=1``): the command line marks the
overrides that stay the same across the sweep (``hydra.job.config.override_dirname.exclude_keys``) and the
``job_name`` resolver keeps the rest, keys shortened to their last part where that stays unambiguous. The names
are a function of the command line, so running the same sweep again finds the same directories: finished jobs
are skipped and interrupted ones resumed (``rl_runner.train``).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rl_runner.runners.record import RECORD_NAME, read_record

MAX_NAME_LENGTH = 96  # a readable directory name; longer ones end in a hash of the whole
NOT_FINISHED = ("failed", "diverged", "interrupted", "running")


# ------------------------------------------------------------------------------------------- job names
def constant_keys(overrides: list[str]) -> list[str]:
    """The keys of the overrides that do not sweep: every job has the same value, so no name needs them."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [o.get_key_element().lstrip("+~") for o in parsed if not o.is_sweep_override() and not o.is_hydra_override()]


def _short_value(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    if not re.fullmatch(r"[-+0-9.eE]+", value) or number.is_integer() and "e" not in value.lower():
        return value
    return f"{number:.4g}"  # an Optuna sample such as 0.00035212375 reads as 0.0003521


def job_name(overrides: list[str], excluded: list[str]) -> str:
    """``tau=0.01_seed=1`` for the job overrides ``agent.tau=0.01 seed=1``, leaving out ``excluded`` keys."""
    pairs = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") in excluded or key.startswith("hydra.") or key.lstrip("+~") == "resume":
            continue
        pairs.append((key.lstrip("+"), value))
    parts = [key.split(".") for key, _ in pairs]
    names = []
    for (key, value), part in zip(pairs, parts):
        depth = 1  # the fewest trailing parts that tell this key apart from the other keys
        while depth < len(part) and any(other[-depth:] == part[-depth:] for other in parts if other is not part):
            depth += 1
        names.append(f"{'.'.join(part[-depth:])}={_short_value(value)}")
    name = re.sub(r"[^A-Za-z0-9._=,+-]+", "-", "_".join(names)).strip("-")
    if len(name) > MAX_NAME_LENGTH:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME_LENGTH - 9]}-{digest}"
    return name


def job_name_resolver() -> str:
    """``${job_name:}`` in ``hydra.sweep.subdir``: this job's swept values (Hydra resolves it inside the job)."""
    hydra = HydraConfig.get()
    excluded = list(hydra.job.config.override_dirname.exclude_keys)
    name = job_name(list(hydra.overrides.task), excluded)
    return f"{hydra.job.num}_{name}" if name else str(hydra.job.num)


if not OmegaConf.has_resolver("job_name"):
    OmegaConf.register_new_resolver("job_name", job_name_resolver)


# ------------------------------------------------------------------------------------------- per-job resources
def parallel_jobs(launcher: DictConfig | dict | None, cores: int) -> int:
    """How many jobs of a sweep run at once on this machine: joblib's ``n_jobs`` (negative counts back from the
    cores, as joblib does); 1 for launchers that run jobs one by one or give each its own machine."""
    n_jobs = (launcher or {}).get("n_jobs")
    if n_jobs is None or "joblib" not in str((launcher or {}).get("_target_", "")):
        return 1
    return max(1, min(cores, cores + 1 + n_jobs if n_jobs < 0 else n_jobs))


def threads_per_job(cores: int, jobs: int) -> int:
    """Torch threads for one of ``jobs`` parallel jobs, so that together they do not oversubscribe the cores."""
    return max(1, cores // max(1, jobs))


def device_for_job(requested: str, job_number: int, gpus: int) -> str:
    """Parallel jobs spread over the visible GPUs (job n on GPU n mod count) instead of all landing on GPU 0;
    an explicit ``cuda:N`` or ``cpu`` is kept."""
    if requested in ("auto", "cuda") and gpus > 1:
        return f"cuda:{job_number % gpus}"
    return requested


def available_cores() -> int:
    """The cores this process may use (a SLURM or taskset allocation), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------------------- the summary
@dataclass
class SweepOutcome:
    directory: Path
    statuses: dict[str, str] = field(default_factory=dict)  # run directory (relative) -> run.json status
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.statuses) and all(status == "finished" for status in self.statuses.values())

    def line(self) -> str:
        counts = {status: 0 for status in ("finished", *NOT_FINISHED)}
        for status in self.statuses.values():
            counts[status] = counts.get(status, 0) + 1
        shown = ", ".join(f"{count} {status}" for status, count in counts.items() if count or status == "finished")
        runs = len(self.statuses)
        text = f"sweep {self.directory}: {runs} run{'s' if runs != 1 else ''}: {shown}"
        failed = [name for name, status in self.statuses.items() if status != "finished"]
        if failed:
            first = failed[0]
            text += f"; not finished: {', '.join(failed[:4])}{' ...' if len(failed) > 4 else ''}"
            if first in self.errors:
                text += f" ({first}: {self.errors[first]})"
        return text


def sweep_outcome(sweep_dir: Path) -> SweepOutcome:
    """How each run of a sweep directory ended, from the ``run.json`` files (a job directory without one, or a
    job that runs several seeds, is looked into)."""
    outcome = SweepOutcome(sweep_dir)
    jobs = [path for path in sweep_dir.iterdir() if (path / ".hydra").is_dir()] if sweep_dir.is_dir() else []
    for job in sorted(jobs, key=_job_order):
        records = sorted(job.rglob(RECORD_NAME)) or [job / RECORD_NAME]
        for record in records:
            name = str(record.parent.relative_to(sweep_dir))
            content = read_record(record.parent)
            outcome.statuses[name] = content.get("status", "failed")
            if content.get("error") or not content:
                outcome.errors[name] = content.get("error", "no run.json: the job ended before its run started")
    return outcome


def _job_order(path: Path) -> tuple[int, str]:
    number = path.name.split("_", 1)[0]
    return (int(number) if number.isdigit() else sys.maxsize, path.name)


class SweepSummary(Callback):
    """Prints one line when a sweep ends (finished / failed / diverged / interrupted runs) and keeps the outcome
    for ``rl-train``'s exit status; registered in ``conf/config.yaml`` under ``hydra.callbacks``."""

    last: SweepOutcome | None = None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        outcome = sweep_outcome(Path(str(config.hydra.sweep.dir)))
        SweepSummary.last = outcome
        print(f"rl-train: {outcome.line()}", flush=True)
