"""Training runs: ``train(cfg)`` does the work of ``rl-train`` (and is what tests and benchmarks call in-process):
one run, a group of seeds, a sweep job continued, each in its run directory with ``run.json`` and ``.hydra/``.

The command line (``rl_runner/train.py``) imports this module only once a config has passed its checks, so a
refused value or ``--help`` never waits for torch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from rl_runner.checkpoint import list_checkpoints
from rl_runner.config import ConfigError, check_config, saved_overrides
from rl_runner.dotted import flatten_config
from rl_runner.errors import TrainingDiverged
from rl_runner.files import write_atomically
from rl_runner.registry import runner_function
from rl_runner.runners.base import RunContext
from rl_runner.runners.record import RunRecord, read_record
from rl_runner.runtime import RunLock, resolve_device, seed_everything, set_matmul_precision
from rl_runner.sweep import device_for_this_job, hand_on_preemption, threads_for_this_job

log = logging.getLogger(__name__)


def train(cfg: DictConfig, run_dir: Path | None = None, continue_existing: bool = False) -> dict:
    """Train with a composed config; returns the run summary (step, metrics, sps, checkpoint path).

    With ``seeds=N`` (N > 1) the run directory holds one run per seed (``seed_<n>/``) and the summary's
    objective is their mean. ``continue_existing`` (sweep jobs, the seeds of a group) skips a run that
    finished and resumes one that has a checkpoint, so a sweep can simply be run again; a run there that was
    trained with other settings is an error, never continued.

    One process at a time per run directory. ``run.json`` records the outcome; a resume that fails before its
    checkpoint has loaded leaves the run as it was (``run.json`` and ``.hydra/``)."""
    resume_from = Path(cfg.resume).resolve() if cfg.resume else None
    if run_dir is None:
        run_dir = resume_from or Path(HydraConfig.get().runtime.output_dir)
    if int(cfg.seeds) > 1:  # an explicit resume of a group may change settings, as a resume of one run may
        return train_seeds(cfg, run_dir, continue_existing or resume_from is not None, same_settings=not cfg.resume)
    on_start = [lambda: write_run_config(run_dir, cfg, job_overrides(run_dir))]
    if not HydraConfig.initialized() or HydraConfig.get().output_subdir is not None:
        on_start = []  # Hydra wrote .hydra/ itself (a new run), or there is no Hydra (train() called from Python)
    return train_continuing(cfg, run_dir, resume_from, continue_existing, on_start)


def train_continuing(
    cfg: DictConfig,
    run_dir: Path,
    resume_from: Path | None,
    continue_existing: bool,
    on_start: list[Callable],
    same_settings: bool = True,
) -> dict:
    """``train_run``, except that with ``continue_existing`` a run already in ``run_dir`` is skipped when it
    finished (at ``total_steps`` or beyond) and resumed when it has a checkpoint (with ``same_settings``, only
    if it was trained with the settings of ``cfg``)."""
    if continue_existing and resume_from is None:
        if same_settings:
            check_same_settings(run_dir, cfg)
        previous = read_record(run_dir)
        summary = previous.get("summary", {})
        if previous.get("status") == "finished" and summary.get("step", 0) >= int(cfg.total_steps):
            log.info("%s finished before: skipped", run_dir)
            return {**summary, "interrupted": False, "skipped": True}
        if list_checkpoints(run_dir / "checkpoints"):
            resume_from = run_dir
    return train_run(cfg, run_dir, resume_from, on_start)


# Keys that do not change what a run learns: a run continued with other values of these is the same run.
BOOKKEEPING_KEYS = ("resume", "device", "threads", "progress", "total_steps", "seeds", "matmul_precision")
BOOKKEEPING_PREFIXES = ("checkpoint.", "log.", "eval.", "stop.")


def check_same_settings(run_dir: Path, cfg: DictConfig) -> None:
    """A sweep run again must find its own runs in its job directories: one trained with other settings (the same
    directory name, other values of the keys every job shares) is refused with the keys that differ."""
    saved = read_record(run_dir).get("config")
    if not saved:
        return
    current = flatten_config(cfg)
    differ = [
        key
        for key in sorted(set(saved) | set(current))
        if key not in BOOKKEEPING_KEYS
        and not key.startswith(BOOKKEEPING_PREFIXES)
        and saved.get(key) != current.get(key)
    ]
    if differ:
        shown = ", ".join(f"{key}={saved.get(key)} (now {current.get(key)})" for key in differ[:3])
        raise ConfigError(
            f"{run_dir} holds a run trained with other settings: {shown}{' ...' if len(differ) > 3 else ''}; "
            "run this sweep in a directory of its own (hydra.sweep.dir=...)"
        )


def train_run(cfg: DictConfig, run_dir: Path, resume_from: Path | None, on_start: list[Callable] = ()) -> dict:
    """One run in ``run_dir``, fresh or continued from ``resume_from``'s latest readable checkpoint; ``on_start``
    runs once it has started (after the checkpoint has loaded)."""
    try:
        check_config(cfg)  # again inside the job: a sweeper may have sampled these values
    except ConfigError as error:
        if run_dir.is_dir() and resume_from is None:  # a sweep job's directory (Hydra made it): say why it failed
            with RunLock(run_dir):
                RunRecord(run_dir, cfg).end("failed", error=f"{type(error).__name__}: {error}")
        raise
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        record = RunRecord(run_dir, cfg)
        try:
            device = resolve_device(device_for_this_job(cfg.device))
            threads = int(cfg.threads) or threads_for_this_job()
            if threads:
                torch.set_num_threads(threads)
            set_matmul_precision(cfg.matmul_precision)
            run = runner_function(cfg.agent.runner, "run")  # its imports before the seeding: some draw from `random`
            seed_everything(cfg.seed)
            log.info("run directory %s, device %s, %d threads", run_dir, device, torch.get_num_threads())
            context = RunContext(run_dir=run_dir, device=device, resume_from=resume_from)
            context.on_start += [lambda: record.start(str(device), context.details), *on_start]
            summary = run(cfg, context)
        except BaseException as error:
            if record.started or not cfg.resume:  # an explicit resume that failed to load leaves the run as it was
                record.end(outcome(error), error=f"{type(error).__name__}: {error}")
            raise
        summary["run_dir"] = str(run_dir)
        record.end("interrupted" if summary["interrupted"] else "finished", summary)
    if summary.get("stopped_by") == "SIGUSR2":
        hand_on_preemption()
    return summary


def train_seeds(cfg: DictConfig, group_dir: Path, continue_existing: bool, same_settings: bool) -> dict:
    """``cfg.seeds`` runs in ``group_dir/seed_<n>`` one after the other; the summary holds each run's and the mean
    of the objective (a sweeper's value: a setting is judged over seeds, not tuned to one). A run that fails ends
    the group with its error; a signal stops it after the run it interrupted."""
    metric = str(cfg.agent.objective.metric)
    overrides = job_overrides(group_dir)
    group_config_pending = HydraConfig.initialized() and HydraConfig.get().output_subdir is None

    def save_group_config() -> None:  # a group resumed or run again: its .hydra/ once one of its runs has started
        nonlocal group_config_pending
        if group_config_pending:
            write_run_config(group_dir, cfg, overrides)
            group_config_pending = False

    seed_overrides = [o for o in overrides if not o.startswith(("resume=", "seed=", "seeds="))]
    runs: dict[int, dict] = {}
    for seed in range(int(cfg.seed), int(cfg.seed) + int(cfg.seeds)):
        seed_cfg = cfg.copy()  # a copy per seed: the composed config itself stays as composed
        with open_dict(seed_cfg):
            seed_cfg.seed, seed_cfg.seeds, seed_cfg.resume = seed, 1, None
        run_dir = group_dir / f"seed_{seed}"
        saved = [*seed_overrides, f"seed={seed}", "seeds=1"]
        on_start = [lambda: write_run_config(run_dir, seed_cfg, saved), save_group_config]
        runs[seed] = train_continuing(seed_cfg, run_dir, None, continue_existing, on_start, same_settings)
        if runs[seed]["interrupted"]:
            break
    values = [run.get(metric) for run in runs.values()]
    complete = len(runs) == int(cfg.seeds) and all(isinstance(v, (int, float)) for v in values)
    summary: dict = {
        "seeds": list(runs),
        "interrupted": any(run["interrupted"] for run in runs.values()),
        "run_dir": str(group_dir),
        "checkpoint": next(reversed(runs.values()))["checkpoint"],
    }
    if complete:
        summary[metric] = float(np.mean(values))
        summary[f"{metric}/std_over_seeds"] = float(np.std(values))
    summary["runs"] = {seed: run.get(metric) for seed, run in runs.items()}
    return summary


def job_overrides(run_dir: Path) -> list[str]:
    """The overrides this job was composed from: Hydra's inside ``rl-train``, else those saved in the run."""
    if HydraConfig.initialized():  # with the config search path: a user's own config folder is part of the run
        overrides = HydraConfig.get().overrides
        searchpath = [o for o in overrides.hydra if o.lstrip("+").startswith("hydra.searchpath=")]
        return [*searchpath, *(o for o in overrides.task if not o.startswith("resume="))]
    return saved_overrides(run_dir) if (run_dir / ".hydra" / "overrides.yaml").is_file() else []


def write_run_config(run_dir: Path, cfg: DictConfig, overrides: list[str]) -> None:
    """``.hydra/`` (the overrides and the composed config) for a run whose directory Hydra did not write, so that
    ``rl-eval`` and ``rl-train resume=`` can compose its config again: a seed of a group, a resumed run."""
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    for name, content in (("overrides.yaml", OmegaConf.create(overrides)), ("config.yaml", cfg)):
        write_atomically(hydra_dir / name, OmegaConf.to_yaml(content))


def outcome(error: BaseException) -> str:
    """run.json's status for a run that ended with ``error``."""
    if isinstance(error, TrainingDiverged):
        return "diverged"
    if isinstance(error, KeyboardInterrupt) or (isinstance(error, SystemExit) and error.code == 130):
        return "interrupted"  # a second Ctrl-C, or one while the run was being set up (rl_runner.cli)
    return "failed"
