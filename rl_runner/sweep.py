"""What a sweep (``rl-train -m``) adds to single runs: short job directory names, the per-job choice of threads and
GPU, one job's failure handling (a failed job is reported and the sweep goes on; a preempted one hands over to the
scheduler's requeue), and the summary of how the jobs ended.

A job directory is ``<job number>_<the swept values>`` (``3_tau=0.01_seed=1``): the command line marks the
overrides that stay the same across the sweep (``hydra.job.config.override_dirname.exclude_keys``) and the
``job_name`` resolver keeps the rest, keys shortened to their last part where that stays unambiguous. The names
are a function of the command line, so running the same sweep again finds the same directories: finished jobs
are skipped and interrupted ones resumed (``rl_runner.training``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import signal
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rl_runner.errors import TrainingDiverged, describe_failure, expected_errors
from rl_runner.files import read_json, write_json
from rl_runner.runners.record import RECORD_NAME, read_record

PROGRAM = "rl-train"
log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 96  # a readable directory name; longer ones end in a hash of the whole
NOT_FINISHED = ("failed", "diverged", "interrupted", "running", "not started")


# ------------------------------------------------------------------------------------------- job names
def constant_keys(overrides: list[str]) -> list[str]:
    """The keys of the overrides that do not sweep: every job has the same value, so no name needs them."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [o.get_key_element().lstrip("+~") for o in parsed if not o.is_sweep_override() and not o.is_hydra_override()]


def worker_count_override(overrides: list[str], hydra: DictConfig) -> list[str]:
    """``hydra.launcher.n_jobs=<jobs>`` for a joblib sweep of fewer jobs than it would start workers (``n_jobs=-1``,
    the default, is one per core): a worker that never gets a job has no stop handlers of its own
    (``guard_parallel_worker`` installs them with its first job), so a Ctrl-C would kill it and break the pool."""
    launcher, sweeper = str(hydra.launcher.get("_target_", "")), str(hydra.sweeper.get("_target_", ""))
    if "joblib" not in launcher.lower() or not sweeper.endswith("BasicSweeper"):
        return []
    jobs = 1
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override() and not override.is_hydra_override():
            try:
                jobs *= len(list(override.sweep_string_iterator()))
            except Exception:  # a sweep the basic sweeper expands otherwise: leave the workers as they are
                return []
    requested = int(hydra.launcher.get("n_jobs") or 1)
    workers = requested if requested > 0 else parallel_jobs(hydra.launcher, os.cpu_count() or 1)  # -1: every core
    return [f"hydra.launcher.n_jobs={jobs}"] if jobs < workers else []


def _short_value(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    if not re.fullmatch(r"[-+0-9.eE]+", value) or number.is_integer() and "e" not in value.lower():
        return value
    return f"{number:.4g}"  # an Optuna sample such as 0.00035212375 reads as 0.0003521


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key shortened to its shortest trailing part that no other key ends with (``agent.tau`` ->
    ``tau``, but ``net.hidden`` and ``agent.actor_net.hidden`` keep ``net.hidden`` and ``actor_net.hidden``)."""
    parts = {key: key.split(".") for key in keys}
    names = {}
    for key, own in parts.items():
        names[key] = key
        for length in range(1, len(own)):
            if not any(other != key and theirs[-length:] == own[-length:] for other, theirs in parts.items()):
                names[key] = ".".join(own[-length:])
                break
    return names


def job_name(overrides: list[str], excluded: list[str]) -> str:
    """``tau=0.01_seed=1`` for the job overrides ``agent.tau=0.01 seed=1``, leaving out ``excluded`` keys."""
    pairs = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") in excluded or key.startswith("hydra.") or key.lstrip("+~") == "resume":
            continue
        pairs.append((key.lstrip("+"), value))
    names = short_names([key for key, _ in pairs])
    name = "_".join(f"{names[key]}={_short_value(value)}" for key, value in pairs)
    name = re.sub(r"[^A-Za-z0-9._=,+-]+", "-", name).strip("-")
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


# ------------------------------------------------------------------------------------------- one job
def is_sweep_job() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def device_for_this_job(requested: str) -> str:
    """A sweep's parallel jobs spread over the visible GPUs."""
    import torch  # only a training job needs it; rl-plot reads job names from this module too

    if not is_sweep_job() or requested not in ("auto", "cuda") or not torch.cuda.is_available():
        return requested
    return device_for_job(requested, int(HydraConfig.get().job.num), torch.cuda.device_count())


def threads_for_this_job() -> int | None:
    """Torch threads when this job shares the machine with other jobs of its sweep (joblib), else None."""
    if not is_sweep_job():
        return None
    cores = available_cores()
    jobs = parallel_jobs(HydraConfig.get().launcher, cores)
    return threads_per_job(cores, jobs) if jobs > 1 else None


def scheduler_requeue_handler() -> Callable | None:
    """The handler a job scheduler installed for SIGUSR2 in this process (submitit's requeue), if any."""
    handler = signal.getsignal(signal.SIGUSR2)
    return handler if callable(handler) else None


def hand_on_preemption() -> None:
    """A job scheduler's requeue handler (submitit installs one for SIGUSR2, which SLURM sends before a time
    limit or a preemption) gets the signal once the run has checkpointed and recorded itself as interrupted:
    it requeues the job, and the requeued job finds the checkpoint in the same run directory."""
    handler = scheduler_requeue_handler()
    if handler is not None:
        log.info("passing SIGUSR2 on to the job scheduler's handler (requeue)")
        handler(signal.SIGUSR2, None)


def run_sweep_job(cfg: DictConfig, train: Callable[..., dict]) -> float | None:
    """One job of ``rl-train -m``, trained by ``train(cfg, job_dir, continue_existing=True)``
    (``rl_runner.training``): a failure is recorded (``run.json``) and reported in one line, and the sweep goes on;
    the return value is the objective for a sweeper (None, which Optuna records as a failed trial, when there is
    none). A job stopped by a signal asks the sweep to start no more jobs."""
    hydra = HydraConfig.get()
    job_dir, sweep_dir = Path(hydra.runtime.output_dir), Path(str(hydra.sweep.dir))
    label = f"job {job_dir.name}"
    guard_parallel_worker(sweep_dir)  # before the stop check, so that no stop signal falls between the two
    mark_launched(job_dir)
    if stop_requested(sweep_dir):
        print(f"{PROGRAM}: {label} not started: the sweep was stopped", file=sys.stderr)
        return None
    try:
        summary = train(cfg, job_dir, continue_existing=True)
    except TrainingDiverged as error:
        print(f"{PROGRAM}: {label} diverged: {error}", file=sys.stderr)
        return None
    except expected_errors() as error:
        mark_launched(job_dir, error=describe_failure(error))
        print(f"{PROGRAM}: {label} failed: {describe_failure(error)}", file=sys.stderr)
        return None
    except Exception as error:
        if type(error).__module__.startswith("submitit"):  # submitit's own end of a job (too many requeues)
            raise
        log.exception("%s failed", label)  # a bug, not the user's input: the traceback helps whoever looks into it
        mark_launched(job_dir, error=f"{type(error).__name__}: {error}")
        print(f"{PROGRAM}: {label} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return None
    if summary.get("interrupted"):
        if scheduler_requeue_handler() is None:
            request_stop(sweep_dir)
        print(f"{PROGRAM}: {label} interrupted: it resumes when the sweep runs again", file=sys.stderr)
        return None
    state = "skipped (finished before)" if summary.get("skipped") else "done"
    value = summary.get(cfg.agent.objective.metric)
    print(f"{PROGRAM}: {label} {state}: {cfg.agent.objective.metric}={value}", flush=True)
    return value


# ------------------------------------------------------------------------------------------- one launch
# A sweep directory can hold the jobs of several launches (a sweep run again, values added to it): each job marks
# its directory with the launch it belongs to, so that the summary speaks of this launch only. The id reaches the
# jobs through the environment, which joblib's workers and submitit's jobs inherit from the launching process.
LAUNCH_VARIABLE = "RL_RUNNER_SWEEP_LAUNCH"
LAUNCHER_PROCESS_VARIABLE = "RL_RUNNER_SWEEP_PROCESS"  # rl-train's pid: a job in another process is a worker's
LAUNCH_FILE = ".launch"
STOP_FILE = ".stop-requested"  # in the sweep directory: a signal stopped the sweep, start no more jobs


def mark_launched(job_dir: Path, error: str | None = None) -> None:
    """Mark ``job_dir`` as a job of the current launch, with the error that ended it before its run could say so
    in ``run.json`` (another run's settings in its directory)."""
    launch = os.environ.get(LAUNCH_VARIABLE)
    if launch:
        write_json(job_dir / LAUNCH_FILE, {"launch": launch, **({"error": error} if error else {})})


def request_stop(sweep_dir: Path) -> None:
    (sweep_dir / STOP_FILE).touch()


def stop_requested(sweep_dir: Path) -> bool:
    return (sweep_dir / STOP_FILE).exists()


# Ctrl-C reaches every process of the terminal's group at once, and rl-train passes a stop signal on to joblib's
# workers as SIGTERM. A worker outside a run has no handler of its own for either: Python's default SIGTERM kills
# it (loky then raises TerminatedWorkerError for the whole sweep) and SIGINT raises KeyboardInterrupt into
# whatever it does. Under load rl-train's own handler can run after a worker has already stopped its job, so a
# worker between runs does get these signals: from its first job on, it handles them itself (guard_parallel_worker),
# and rl-train signals only workers that do. One that has run no job yet (more workers than jobs) still has Python's
# defaults: a Ctrl-C then breaks loky's pool, which kills the other workers (their runs resume from their last
# checkpoint), and rl-train still ends as a stopped sweep (SweepSummary.end_stopped_launch).
_guarded_sweep: Path | None = None  # in a worker of joblib's launcher: the sweep of the job it runs or ran last


def in_parallel_worker() -> bool:
    """Whether this job runs in a worker process of joblib's launcher (with ``n_jobs=1`` joblib runs the jobs in
    rl-train's own process, whose handlers are SweepSummary's)."""
    launcher = str(HydraConfig.get().launcher.get("_target_", ""))
    launching = os.environ.get(LAUNCHER_PROCESS_VARIABLE)
    return "joblib" in launcher and launching is not None and launching != str(os.getpid())


def guard_parallel_worker(sweep_dir: Path) -> None:
    """In a worker of joblib's launcher, a stop signal outside a run asks the sweep to stop and ends nothing: the
    worker survives to tell rl-train how its job ended, and starts no other. A run's own handlers take over while it
    runs (rl_runner.runtime.StopSignals) and put these back after it."""
    global _guarded_sweep
    if not in_parallel_worker():
        return
    _guarded_sweep = sweep_dir
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _stop_between_runs)


def _stop_between_runs(number: int, frame: FrameType | None) -> None:
    # no KeyboardInterrupt even on a second Ctrl-C: rl-train itself aborts then, and ends its workers
    try:
        if _guarded_sweep is not None:
            request_stop(_guarded_sweep)
    except OSError:  # raised here it would break the worker all the same; rl-train writes the stop file too
        pass


def handles_signal(pid: int, number: int) -> bool | None:
    """Whether process ``pid`` has a handler of its own for signal ``number`` (Linux's ``/proc/<pid>/status``);
    None where that cannot be told."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    caught = next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), None)
    return None if caught is None else bool(int(caught, 16) >> (number - 1) & 1)


def stop_parallel_jobs() -> int:
    """SIGTERM to the worker processes of joblib's launcher, so that a signal to the launching process alone (a
    `kill`, a container stop) stops the running jobs with a checkpoint too; after Ctrl-C, which the workers got
    already, it changes nothing (a run's first stop signal decides). A worker that has not started a job yet has no
    handler for SIGTERM, which would kill it: it is left alone and finds the stop requested when it starts one.
    Returns how many workers were signalled."""
    try:
        from joblib.externals.loky import reusable_executor  # the executor Hydra's joblib launcher runs jobs on
    except ImportError:
        return 0
    executor = reusable_executor._executor
    workers = list(getattr(executor, "_processes", {}).values()) if executor is not None else []
    told = 0
    for worker in workers:
        if handles_signal(worker.pid, signal.SIGTERM) is False:
            continue
        try:
            os.kill(worker.pid, signal.SIGTERM)
            told += 1
        except OSError:  # it ended meanwhile
            pass
    return told


# ------------------------------------------------------------------------------------------- the summary
@dataclass
class SweepOutcome:
    directory: Path
    statuses: dict[str, str] = field(default_factory=dict)  # run directory (relative) -> run.json status
    errors: dict[str, str] = field(default_factory=dict)
    stopped: bool = False  # a signal stopped the sweep

    @property
    def ok(self) -> bool:
        return not self.stopped and all(status == "finished" for status in self.statuses.values())

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


def sweep_outcome(sweep_dir: Path, launch: str | None = None) -> SweepOutcome:
    """How each run of a sweep directory ended, from the ``run.json`` files (a job that runs several seeds is
    looked into); with ``launch``, only the jobs of that launch count."""
    outcome = SweepOutcome(sweep_dir, stopped=stop_requested(sweep_dir))
    jobs = [path for path in sweep_dir.iterdir() if (path / ".hydra").is_dir()] if sweep_dir.is_dir() else []
    for job in sorted(jobs, key=_job_order):
        marker = read_json(job / LAUNCH_FILE)
        if launch is not None and marker.get("launch") != launch:
            continue
        records = sorted(job.rglob(RECORD_NAME)) or [job / RECORD_NAME]
        for record in records:
            name = str(record.parent.relative_to(sweep_dir))
            content = read_record(record.parent)
            status = content.get("status", "not started")
            error = content.get("error")
            if marker.get("error") and status in ("finished", "not started"):  # it failed before its run began
                status, error = "failed", marker["error"]
            outcome.statuses[name] = status
            if error:
                outcome.errors[name] = error
    return outcome


def _job_order(path: Path) -> tuple[int, str]:
    number = path.name.split("_", 1)[0]
    return (int(number) if number.isdigit() else sys.maxsize, path.name)


class SweepSummary(Callback):
    """Registered in ``conf/config.yaml`` under ``hydra.callbacks``. When a sweep starts: a launch id for its
    jobs, and a first Ctrl-C or SIGTERM in the launching process that asks the sweep to stop instead of killing
    it (the running jobs checkpoint on their own signal, no new job starts; a second signal aborts). When it
    ends: one line on how its runs ended, kept for ``rl-train``'s exit status."""

    last: SweepOutcome | None = None
    current: SweepSummary | None = None  # the sweep this process launched, until it has ended

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        (self.sweep_dir / STOP_FILE).unlink(missing_ok=True)
        self.launch = uuid.uuid4().hex
        os.environ[LAUNCH_VARIABLE] = self.launch
        os.environ[LAUNCHER_PROCESS_VARIABLE] = str(os.getpid())
        # whether this process got a stop signal: the stop file says nothing of that, jobs in joblib's workers write
        # it too (a worker that stopped before this process's handler ran, under load)
        self.signalled = self.aborted = False
        self.full_error = os.environ.get("HYDRA_FULL_ERROR")
        self.previous = {number: signal.signal(number, self._stop) for number in (signal.SIGINT, signal.SIGTERM)}
        SweepSummary.current = self

    def _stop(self, number: int, frame: FrameType | None) -> None:
        if self.signalled:
            self.aborted = True
            raise KeyboardInterrupt
        self.signalled = True
        # joblib may still fail the launch (a worker that had not started a job yet dies of the Ctrl-C): Hydra is
        # to pass that on, not print it, so that rl-train ends as a stopped sweep (end_stopped_launch)
        os.environ["HYDRA_FULL_ERROR"] = "1"
        request_stop(self.sweep_dir)
        told = stop_parallel_jobs()
        jobs = f"the jobs of {told} worker processes checkpoint and stop" if told else "no new job starts"
        print(f"rl-train: stopping the sweep: {jobs} (a second {signal.Signals(number).name} aborts)", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._end()

    def _end(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        if self.full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = self.full_error
        SweepSummary.current = None
        outcome = sweep_outcome(self.sweep_dir, self.launch)
        (self.sweep_dir / STOP_FILE).unlink(missing_ok=True)
        SweepSummary.last = outcome
        print(f"rl-train: {outcome.line()}", flush=True)

    @classmethod
    def end_stopped_launch(cls) -> bool:
        """For rl-train, when the launch raised: True, after the summary line, if a first stop signal had asked the
        sweep to stop (the error is how joblib's workers ended, and the jobs say in run.json how far they got);
        False for any other failure, or when a second signal aborted."""
        summary = cls.current
        if summary is None or not summary.signalled or summary.aborted:
            return False
        summary._end()
        return True
