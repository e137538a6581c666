"""The run skeleton every runner shares: resume, counters and RNG save/restore, signals, cadence, metric
flushes with the NaN check, evaluation, the final save, divergence and the summary.

A runner contributes a ``Loop``: what one step is (a step of every env for env runners, ``runners/env_loop.py``;
an optimiser step on a batch for the dataset loop), how to evaluate, and the loop's own state (env snapshots,
episode counters, an epoch's position). Everything else happens here, once, for every runner. ``TrainedAgent`` is
what every runner's ``load_trained`` gives rl-eval and the Python API.

``progress.pt`` holds ``format`` (``PROGRESS_FORMAT``), ``counters`` (updates, train time, the unfinished log
interval, last evaluation), ``metrics`` (the unfinished interval's sums), ``clock`` (step and schedule horizon),
``rng`` (python, numpy, torch, CUDA) and ``loop`` (the loop's state).

A resume applies the run's current config to the restored optimisers (a new learning rate takes effect).
"""

from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Protocol

import numpy as np
import torch
from omegaconf import DictConfig

from rl_runner.agents.base import Agent
from rl_runner.checkpoint import (
    BEST,
    CORRUPT_PREFIX,
    PROGRESS_FORMAT,
    Stateful,
    apply_states,
    check_progress_format,
    checkpoint_name,
    latest_checkpoint,
    list_checkpoints,
    non_finite_entries,
    read_checkpoint,
    save_checkpoint,
    write_checkpoint,
)
from rl_runner.clock import Clock
from rl_runner.errors import CheckpointError, CorruptCheckpoint, NonFiniteLossError, TrainingDiverged
from rl_runner.logging import MetricAccumulator, RunLogger, Video
from rl_runner.registry import runner_entry
from rl_runner.runtime import StopSignals, restore_rng_state, rng_state

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """Where and how a runner runs: what ``train`` hands to ``<runner module>.run(cfg, context)``."""

    run_dir: Path
    device: torch.device
    resume_from: Path | None
    on_start: list[Callable[[], None]] = field(default_factory=list)  # once a resume's checkpoint has loaded
    details: dict[str, Any] = field(default_factory=dict)  # what the runner found out, for run.json (data columns)


@dataclass(frozen=True)
class TrainedAgent:
    """A checkpoint's agent, in evaluation mode on ``device``, with what was needed to build it: what a runner's
    ``load_trained`` returns to ``rl-eval`` and the Python API (``rl_runner.api``)."""

    agent: Any  # an EnvAgent or a DatasetAgent (rl_runner/agents/base.py)
    cfg: DictConfig  # the run's config, re-composed as rl-eval does (plus any overrides given)
    checkpoint: Path  # <run>/checkpoints/<name>
    device: torch.device
    # env runs: the spaces of one env, which the agent was built for; None for dataset runs
    observation_space: Any = None
    action_space: Any = None
    # dataset runs: the run's data scaled as its training data was (``data.val.values`` are ready for
    # ``agent.score``), and the threshold saved with the checkpoint (scores above it are anomalies; None when the
    # run saved none, and valid only for the run's own scoring settings); None for env runs
    data: Any = None
    threshold: float | None = None

    @property
    def run_dir(self) -> Path:
        return self.checkpoint.parents[1]

    @property
    def kind(self) -> Literal["env", "data"]:
        """``env`` for an agent that acts in an env, ``data`` for one that scores samples of a data set."""
        return runner_entry(self.cfg.agent.runner).needs


class Loop(Protocol):
    """What a runner adds to the skeleton."""

    def begin(self, saved: dict | None) -> None:
        """Start fresh (``saved is None``) or continue from the state ``state_dict`` returned at a checkpoint."""
        ...

    def advance(self, metrics: MetricAccumulator, logger: RunLogger) -> None:
        """One step of work: move ``clock.step`` on and add each update's metrics to ``metrics``."""
        ...

    def evaluate(self) -> dict[str, Any]:
        """Evaluation metrics keyed by TensorBoard tag (``eval/...``): numbers, figures as [H, W, 3] uint8
        arrays (``images/...``) and ``Video`` clips (``videos/...``); empty when evaluation is switched off."""
        ...

    def state_dict(self) -> dict: ...

    def replay_groups(self) -> Mapping[str, Stateful]:
        """State saved only with ``checkpoint.save_replay=true`` (a replay memory), one file per entry."""
        ...

    def summary(self) -> dict:
        """The loop's entries of the run summary (episodes, returns, epochs)."""
        ...

    def status(self) -> dict[str, float]:
        """A few numbers for the progress bar."""
        ...


def _is_optimizer(group: object) -> bool:
    return isinstance(group, torch.optim.Optimizer)


def _hyperparameters(optimizer: torch.optim.Optimizer) -> list[dict]:
    """Each parameter group's settings (lr, betas, weight_decay, ...), which load_state_dict would overwrite."""
    return [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]


def crossed(step: int, previous_step: int, every: int) -> bool:
    """True when a multiple of ``every`` lies in (previous_step, step]: cadence that works for any step size."""
    return every > 0 and step // every > previous_step // every


@dataclass
class Counters:
    updates: int = 0  # logged updates; the unfinished log interval holds the rest (MetricAccumulator.count)
    train_seconds: float = 0.0  # of finished log intervals
    interval_step: int = 0  # where the unfinished log interval began
    interval_seconds: float = 0.0  # how long it has run (saved, so its sps after a resume is right)
    last_eval: dict[str, float] = field(default_factory=dict)
    best_objective: float | None = None  # the best evaluation of the agent's objective so far (checkpoints/best)


class RunSkeleton:
    def __init__(self, cfg: DictConfig, context: RunContext, agent: Agent, loop: Loop, clock: Clock) -> None:
        self.cfg = cfg
        self.context = context
        self.checkpoint_dir = context.run_dir / "checkpoints"
        self.tb_dir = context.run_dir / "tb"
        self.agent = agent
        self.loop = loop
        self.clock = clock
        self.counters = Counters()
        self.metrics = MetricAccumulator()
        self.signals = StopSignals()
        self.interval_start = time.perf_counter()
        self.objective = str(cfg.agent.objective.metric)
        self.maximise = cfg.agent.objective.direction.value == "max"
        self.stop_reason: str | None = None  # an early stop: "at_objective" or "after_minutes"
        minutes = cfg.stop.after_minutes
        self.deadline = time.monotonic() + 60 * float(minutes) if minutes is not None else math.inf

    # ---------------------------------------------------------------- start and checkpoints
    def start(self) -> None:
        """Start fresh or load the latest readable checkpoint of ``resume_from``; only then is the run marked
        as running (and, from the command line, its saved config updated): a failed resume changes nothing."""
        resume_from = self.context.resume_from
        if resume_from is None:
            self.loop.begin(None)
        else:
            checkpoint, states, skipped = self._read_latest_readable(resume_from / "checkpoints")
            self._load(checkpoint, states)
            for corrupt in skipped:  # out of the way of "latest checkpoint", kept for a look
                corrupt.rename(corrupt.with_name(f"{CORRUPT_PREFIX}{corrupt.name}"))
        for started in self.context.on_start:
            started()

    def _read_latest_readable(self, root: Path) -> tuple[Path, dict[str, dict], list[Path]]:
        """The newest checkpoint whose files all read, and the corrupt newer ones it skipped (said so)."""
        checkpoints = list_checkpoints(root)
        if not checkpoints:
            raise FileNotFoundError(f"resume={root.parent}: no checkpoint under {root}")
        names = list(self.agent.state_groups())
        replay = list(self.loop.replay_groups())
        problems, skipped = [], []
        for checkpoint in reversed(checkpoints):
            present = [name for name in replay if (checkpoint / f"{name}.pt").exists()]
            try:
                states = read_checkpoint(checkpoint, names + present, map_location=self.agent.device)
                # RNG states and counters stay on the CPU whatever the training device
                states.update(read_checkpoint(checkpoint, ["progress"], map_location="cpu"))
            except CorruptCheckpoint as error:
                problems.append(str(error))
                skipped.append(checkpoint)
                log.warning("%s; trying the checkpoint before it", error)
                continue
            if problems:
                log.warning("resuming from %s, the newest checkpoint that reads", checkpoint)
            return checkpoint, states, skipped
        raise CheckpointError(f"no readable checkpoint under {root}: {'; '.join(problems)}")

    def _load(self, checkpoint: Path, states: dict[str, dict]) -> None:
        log.info("resuming from %s", checkpoint)
        progress = check_progress_format(checkpoint, states.pop("progress"))  # before anything is applied
        groups = self.agent.state_groups()
        configured = {name: _hyperparameters(group) for name, group in groups.items() if _is_optimizer(group)}
        apply_states(checkpoint, groups, states)
        for name, param_groups in configured.items():  # the config's learning rates win over the saved ones
            for group, values in zip(groups[name].param_groups, param_groups):
                group.update(values)
        replay = self.loop.replay_groups()
        apply_states(checkpoint, {name: group for name, group in replay.items() if name in states}, states)
        missing = sorted(set(replay) - set(states))
        if missing:
            log.warning("%s holds no %s (checkpoint.save_replay=false): refilling from empty", checkpoint, missing)
        self.counters = Counters(**progress["counters"])
        saved_best = self._best_saved()
        if saved_best is not None and self._better(saved_best, self.counters.best_objective):
            self.counters.best_objective = saved_best
        self.metrics.load_state_dict(progress["metrics"], self.agent.device)
        self.clock.load_state_dict(progress["clock"])  # the saved horizon stays: see rl_runner/clock.py
        if int(self.cfg.total_steps) > self.clock.horizon:
            log.warning(
                "total_steps=%d is beyond the %d steps this run started with: annealed schedules stay at their "
                "end values (rl_runner/clock.py)",
                int(self.cfg.total_steps),
                self.clock.horizon,
            )
        restore_rng_state(progress["rng"])
        self.loop.begin(progress["loop"])

    def save(self) -> Path:
        """A checkpoint of everything, refused (as divergence) if a metric or a parameter is not finite."""
        states = self._states(with_replay=bool(self.cfg.checkpoint.save_replay))
        with self.signals.protect():  # a second Ctrl-C waits for a complete checkpoint
            return save_checkpoint(self.checkpoint_dir, self.clock.step, states, keep=self.cfg.checkpoint.keep)

    def save_best(self) -> Path:
        """``checkpoints/best``: a full checkpoint (no replay) of the evaluation with the best objective."""
        states = self._states(with_replay=False)
        with self.signals.protect():
            return write_checkpoint(self.checkpoint_dir / BEST, states)

    def _states(self, with_replay: bool) -> dict[str, Any]:
        self.metrics.check_finite()
        states = {name: group.state_dict() for name, group in self.agent.state_groups().items()}
        broken = non_finite_entries(states)
        if broken:
            shown = ", ".join(f"{name} ({count} value{'s' if count > 1 else ''})" for name, count in broken.items())
            raise NonFiniteLossError(f"non-finite values in {shown}")
        if with_replay:
            states.update({name: group.state_dict() for name, group in self.loop.replay_groups().items()})
        counters = replace(self.counters, interval_seconds=time.perf_counter() - self.interval_start)
        states["progress"] = {
            "format": PROGRESS_FORMAT,
            "counters": asdict(counters),
            "metrics": self.metrics.state_dict(),
            "clock": self.clock.state_dict(),
            "rng": rng_state(),
            "loop": self.loop.state_dict(),
        }
        return states

    # ---------------------------------------------------------------- the run
    def run(self) -> dict:
        cfg, clock, counters = self.cfg, self.clock, self.counters
        total_steps = int(cfg.total_steps)
        log_every, eval_every, checkpoint_every = int(cfg.log.every), int(cfg.eval.every), int(cfg.checkpoint.every)
        logger = RunLogger(self.tb_dir, total_steps, clock.step, show_progress=cfg.progress)
        self.interval_start = time.perf_counter() - counters.interval_seconds
        try:
            with self.signals as signals:
                while clock.step < total_steps and signals.received is None and self.stop_reason is None:
                    previous_step = clock.step
                    self.loop.advance(self.metrics, logger)
                    if time.monotonic() >= self.deadline:
                        self.stop_reason = "after_minutes"
                        log.info("stop.after_minutes=%s reached at step %d", cfg.stop.after_minutes, clock.step)
                    logger.advance(clock.step - previous_step)
                    if crossed(clock.step, previous_step, log_every):
                        self._flush(logger)
                    if crossed(clock.step, previous_step, eval_every):
                        self._evaluate(logger)
                    if crossed(clock.step, previous_step, checkpoint_every) and clock.step < total_steps:
                        self.save()  # the unfinished log interval goes into the checkpoint, not into TensorBoard
                # still inside the signal handler: a Ctrl-C during the final evaluation cannot skip the save
                interrupted_by = signals.received
                if interrupted_by is None:
                    self._flush(logger)  # the last, possibly shorter, interval
                    if counters.last_eval.get("step") != clock.step:
                        self._evaluate(logger)
                latest = latest_checkpoint(self.checkpoint_dir)
                already_saved = latest is not None and latest.name == checkpoint_name(clock.step)
                checkpoint = latest if already_saved and interrupted_by is not None else self.save()
            summary = self._summary(checkpoint, interrupted_by)
            if interrupted_by is None:  # a resumed run reports its hyperparameters once, when it finishes
                logger.hparams(cfg, summary, clock.step)
            return summary
        except NonFiniteLossError as error:
            last_good = latest_checkpoint(self.checkpoint_dir)
            raise TrainingDiverged(
                f"training diverged at step {clock.step}: {error}; last good checkpoint: {last_good or 'none'}"
            ) from error
        except BaseException:
            logger.close(quietly=True)  # the error that ended the run is the one to report, not the log's
            raise
        finally:
            logger.close()

    def _flush(self, logger: RunLogger) -> None:
        """The means of the log interval that ends here, its steps per second and the update count."""
        counters, now = self.counters, time.perf_counter()
        if self.clock.step == counters.interval_step:
            return
        sps = (self.clock.step - counters.interval_step) / max(now - self.interval_start, 1e-9)
        counters.train_seconds += now - self.interval_start
        counters.updates += self.metrics.count
        means = self.metrics.pop_means()  # raises NonFiniteLossError before anything is saved
        logger.scalars({**means, "charts/sps": sps, "charts/updates": counters.updates}, self.clock.step)
        self.interval_start, counters.interval_step = now, self.clock.step
        logger.advance(0, {"sps": sps, **self.loop.status()})

    def _evaluate(self, logger: RunLogger) -> None:
        result = self.loop.evaluate()
        images = {tag: value for tag, value in result.items() if isinstance(value, np.ndarray)}
        videos = {tag: value for tag, value in result.items() if isinstance(value, Video)}
        scalars = {tag: float(value) for tag, value in result.items() if tag not in images and tag not in videos}
        logger.images(images, self.clock.step)
        logger.videos(videos, self.clock.step)
        if scalars:
            logger.scalars(scalars, self.clock.step)
            self.counters.last_eval = {**scalars, "step": self.clock.step}
        if self.objective in scalars:
            self._judge(scalars[self.objective])

    def _judge(self, value: float) -> None:
        """Keep the best checkpoint, and stop early once the objective reaches ``stop.at_objective`` (a NaN
        evaluation is neither: it would compare worse than nothing and better than nothing)."""
        if not math.isfinite(value):
            return
        if self._better(value, self.counters.best_objective):
            self.counters.best_objective = value
            if self.cfg.checkpoint.best:
                self.save_best()
        target = self.cfg.stop.at_objective
        early = self.clock.step < int(self.cfg.total_steps) and self.stop_reason is None
        if early and target is not None and not self._better(target, value):
            self.stop_reason = "at_objective"
            log.info("%s=%.4g reached stop.at_objective=%s at step %d", self.objective, value, target, self.clock.step)

    def _better(self, value: float, than: float | None) -> bool:
        return than is None or (value > than if self.maximise else value < than)

    def _best_saved(self) -> float | None:
        """The objective of ``checkpoints/best``: a run killed outright may have kept a best newer than the
        checkpoint it resumes from, which a worse evaluation must not replace."""
        try:
            progress = read_checkpoint(self.checkpoint_dir / BEST, ["progress"], "cpu")["progress"]
            return progress["counters"]["best_objective"]
        except (CheckpointError, KeyError, TypeError):
            return None

    def _summary(self, checkpoint: Path, interrupted_by: int | None) -> dict:
        counters = self.counters
        seconds = counters.train_seconds + (time.perf_counter() - self.interval_start if interrupted_by else 0.0)
        summary: dict = {
            "step": self.clock.step,
            "updates": counters.updates + self.metrics.count,
            "sps": self.clock.step / seconds if seconds > 0 else 0.0,
            "checkpoint": str(checkpoint),
            "interrupted": interrupted_by is not None,
            "stopped_by": signal.Signals(interrupted_by).name if interrupted_by is not None else self.stop_reason,
            **self.loop.summary(),
        }
        summary.update({k: v for k, v in counters.last_eval.items() if k != "step"})
        return summary
