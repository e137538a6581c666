"""The run skeleton every runner shares: resume, counters and RNG save/restore, signals, cadence, metric
flushes with the NaN check, evaluation, the final save, divergence and the summary.

A runner contributes a ``Loop``: what one step is (an env transition for the off-policy loop, an optimiser
step on a batch for the dataset loop), how to evaluate, and the loop's own state (env snapshots, episode
counters, an epoch's position). Everything else happens here, once, for every runner.

``progress.pt`` (format ``PROGRESS_FORMAT``) holds ``counters`` (updates, train time, last evaluation),
``clock`` (step and schedule horizon), ``rng`` (python, numpy, torch, CUDA) and ``loop`` (the loop's state).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Protocol

import torch
from omegaconf import DictConfig

from rl_runner.agents.base import Agent
from rl_runner.checkpoint import (
    PROGRESS_FORMAT,
    Stateful,
    checkpoint_name,
    latest_checkpoint,
    load_into,
    load_progress,
    save_checkpoint,
)
from rl_runner.clock import Clock
from rl_runner.logging import MetricAccumulator, NonFiniteLossError, RunLogger, TrainingDiverged
from rl_runner.runners.record import RunRecord
from rl_runner.runtime import StopSignals, restore_rng_state, rng_state

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """Where and how a runner runs: what ``train`` hands to ``<runner module>.run(cfg, context)``."""

    run_dir: Path
    device: torch.device
    resume_from: Path | None
    record: RunRecord


class Loop(Protocol):
    """What a runner adds to the skeleton."""

    def begin(self, saved: dict | None) -> None:
        """Start fresh (``saved is None``) or continue from the state ``state_dict`` returned at a checkpoint."""
        ...

    def advance(self, metrics: MetricAccumulator, logger: RunLogger) -> None:
        """One step of work: move ``clock.step`` on and add each update's metrics to ``metrics``."""
        ...

    def evaluate(self) -> dict[str, float]:
        """Evaluation metrics keyed by TensorBoard tag (``eval/...``); empty when evaluation is switched off."""
        ...

    def state_dict(self) -> dict: ...

    def optional_groups(self) -> Mapping[str, Stateful]:
        """State saved only with ``checkpoint.save_replay=true`` (a replay memory), one file per entry."""
        ...

    def summary(self) -> dict:
        """The loop's entries of the run summary (episodes, returns, epochs)."""
        ...

    def status(self) -> dict[str, float]:
        """A few numbers for the progress bar."""
        ...


def crossed(step: int, previous_step: int, every: int) -> bool:
    """True when a multiple of ``every`` lies in (previous_step, step]: cadence that works for any step size."""
    return every > 0 and step // every > previous_step // every


@dataclass
class Counters:
    updates: int = 0
    train_seconds: float = 0.0
    last_eval: dict[str, float] = field(default_factory=dict)


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

    # ---------------------------------------------------------------- start and checkpoints
    def start(self) -> None:
        """Start fresh or load the latest checkpoint of ``resume_from``; the run is marked running after that."""
        self._load(self.context.resume_from)
        self.context.record.start(str(self.context.device))

    def _load(self, resume_from: Path | None) -> None:
        checkpoint = latest_checkpoint(resume_from / "checkpoints") if resume_from is not None else None
        if resume_from is not None and checkpoint is None:
            raise FileNotFoundError(f"resume={resume_from}: no checkpoint under {resume_from / 'checkpoints'}")
        if checkpoint is None:
            self.loop.begin(None)
            return
        log.info("resuming from %s", checkpoint)
        progress = load_progress(checkpoint)  # an older format is refused before anything is loaded
        load_into(checkpoint, self.agent.state_groups(), map_location=self.agent.device)
        optional = self.loop.optional_groups()
        present = {name: group for name, group in optional.items() if (checkpoint / f"{name}.pt").exists()}
        load_into(checkpoint, present, map_location=self.agent.device)
        if len(present) < len(optional):
            log.warning(
                "%s holds no %s (checkpoint.save_replay=false): refilling from empty",
                checkpoint,
                ", ".join(sorted(set(optional) - set(present))),
            )
        self.counters = Counters(**progress["counters"])
        self.clock.load_state_dict(progress["clock"])  # the saved horizon stays: see rl_runner/clock.py
        restore_rng_state(progress["rng"])
        self.loop.begin(progress["loop"])

    def save(self) -> Path:
        states = {name: group.state_dict() for name, group in self.agent.state_groups().items()}
        if self.cfg.checkpoint.save_replay:
            states.update({name: group.state_dict() for name, group in self.loop.optional_groups().items()})
        states["progress"] = {
            "format": PROGRESS_FORMAT,
            "counters": asdict(self.counters),
            "clock": self.clock.state_dict(),
            "rng": rng_state(),
            "loop": self.loop.state_dict(),
        }
        return save_checkpoint(self.checkpoint_dir, self.clock.step, states, keep=self.cfg.checkpoint.keep)

    # ---------------------------------------------------------------- the run
    def run(self) -> dict:
        cfg, clock = self.cfg, self.clock
        total_steps = int(cfg.total_steps)
        log_every, eval_every, checkpoint_every = int(cfg.log.every), int(cfg.eval.every), int(cfg.checkpoint.every)
        metrics = MetricAccumulator()
        logger = RunLogger(self.tb_dir, total_steps, clock.step, show_progress=cfg.progress)
        interval_start, interval_step = time.perf_counter(), clock.step
        try:
            with StopSignals() as signals:
                while clock.step < total_steps and signals.received is None:
                    previous_step = clock.step
                    self.loop.advance(metrics, logger)
                    logger.advance(clock.step - previous_step)
                    if crossed(clock.step, previous_step, log_every):
                        now = time.perf_counter()
                        sps = (clock.step - interval_step) / (now - interval_start)
                        self.counters.train_seconds += now - interval_start
                        interval_start, interval_step = now, clock.step
                        self._flush(metrics, logger, {"charts/sps": sps})
                    if crossed(clock.step, previous_step, eval_every):
                        self._evaluate(logger)
                    if crossed(clock.step, previous_step, checkpoint_every):
                        self._flush(metrics, logger)
                        self.save()
                # still inside the signal handler: a Ctrl-C during the final evaluation cannot skip the save
                self.counters.train_seconds += time.perf_counter() - interval_start
                self._flush(metrics, logger)
                if signals.received is None and self.counters.last_eval.get("step") != clock.step:
                    self._evaluate(logger)
                latest = latest_checkpoint(self.checkpoint_dir)
                already_saved = latest is not None and latest.name == checkpoint_name(clock.step)
                checkpoint = latest if already_saved else self.save()
                interrupted_by = signals.received
            summary = self._summary(checkpoint, interrupted_by)
            if interrupted_by is None:  # a resumed run reports its hyperparameters once, when it finishes
                logger.hparams(cfg, summary, clock.step)
            return summary
        except NonFiniteLossError as error:
            last_good = latest_checkpoint(self.checkpoint_dir)
            raise TrainingDiverged(
                f"training diverged at step {clock.step}: {error}; last good checkpoint: {last_good or 'none'}"
            ) from error
        finally:
            logger.close()

    def _flush(self, metrics: MetricAccumulator, logger: RunLogger, extra: dict[str, float] | None = None) -> None:
        self.counters.updates += metrics.count
        means = metrics.pop_means()  # raises NonFiniteLossError before anything is saved
        if extra:
            extra = {**extra, "charts/updates": self.counters.updates}
        logger.scalars({**means, **(extra or {})}, self.clock.step)
        status = {"sps": extra["charts/sps"]} if extra else {}
        logger.advance(0, {**status, **self.loop.status()})

    def _evaluate(self, logger: RunLogger) -> None:
        result = self.loop.evaluate()
        if result:
            logger.scalars(result, self.clock.step)
            self.counters.last_eval = {**result, "step": self.clock.step}

    def _summary(self, checkpoint: Path, interrupted_by: int | None) -> dict:
        counters = self.counters
        summary: dict = {
            "step": self.clock.step,
            "updates": counters.updates,
            "sps": self.clock.step / counters.train_seconds if counters.train_seconds > 0 else 0.0,
            "checkpoint": str(checkpoint),
            "interrupted": interrupted_by is not None,
            **self.loop.summary(),
        }
        summary.update({k: v for k, v in counters.last_eval.items() if k != "step"})
        return summary
