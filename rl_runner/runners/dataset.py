"""The epoch loop for agents that learn from a data set instead of an env (the autoencoder, AnoGAN).

One step is one optimiser step on a batch of training windows; epochs visit the windows in a fresh
seeded order each time (full batches only, so BatchNorm never sees a batch of one; a set smaller than a
batch is one batch). Evaluation scores the validation windows (the threshold is a percentile of the normal
ones' scores; with labelled faulty ones, ``eval/val_roc_auc`` is the objective a sweeper may use) and the
test windows (the detection metrics, per-file ROC-AUC, figures: ``runners/detection_report.py``), and writes
``results.json``. Checkpoints, resume, signals, the NaN stop and the summary come from the shared skeleton in
``runners/base.py``; rl-eval's scoring of a trained detector is ``runners/dataset_scoring.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig

from rl_runner.agents import build_agent
from rl_runner.agents.base import DatasetAgent
from rl_runner.checkpoint import Stateful
from rl_runner.clock import Clock
from rl_runner.data import WindowData, load_data
from rl_runner.files import write_json
from rl_runner.logging import MetricAccumulator, RunLogger
from rl_runner.runners.base import RunContext, RunSkeleton
from rl_runner.runners.detection_report import RESULTS_NAME, DetectionReport, score_signature

log = logging.getLogger(__name__)


def make_agent(cfg: DictConfig, data: WindowData, device: torch.device, clock: Clock) -> DatasetAgent:
    return build_agent(cfg.agent, net=cfg.net, sample_shape=data.sample_shape, device=device, clock=clock)


def run(cfg: DictConfig, context: RunContext) -> dict:
    data = load_data(cfg.data)
    context.details["columns"] = {"used": data.columns_used, "skipped": data.columns_skipped}
    clock = Clock(horizon=int(cfg.total_steps))
    agent = make_agent(cfg, data, context.device, clock)
    loop = EpochLoop(cfg, agent, data, clock, context.run_dir)
    skeleton = RunSkeleton(cfg, context, agent, loop, clock)
    skeleton.start()
    return skeleton.run()


class EpochLoop:
    def __init__(self, cfg: DictConfig, agent: DatasetAgent, data: WindowData, clock: Clock, run_dir: Path) -> None:
        self.agent = agent
        self.data = data
        self.clock = clock
        self.run_dir = run_dir
        self.percentile = float(cfg.agent.threshold_percentile)
        self.train = torch.as_tensor(data.train.values, device=agent.device)
        self.batch_size = min(int(cfg.agent.batch_size), len(self.train))
        self.batches_per_epoch = len(self.train) // self.batch_size
        self.seed = int(cfg.seed)
        self.shuffle = torch.Generator()  # epoch orders, on the CPU so they are the same on every device
        self.epoch = 0  # epochs started
        self.batch_in_epoch = 0
        self.epoch_rng_state: torch.Tensor | None = None  # the generator before this epoch's order was drawn
        self.order: torch.Tensor | None = None
        self.threshold: float | None = None  # from the last evaluation; rl-eval flags new data with it
        self.threshold_signature: str | None = None  # what the scores it was chosen from depend on

    # ---------------------------------------------------------------- state
    def begin(self, saved: dict | None) -> None:
        self.shuffle.manual_seed(self.seed)
        if saved is None:
            return
        self.epoch, self.batch_in_epoch = saved["epoch"], saved["batch_in_epoch"]
        self.threshold, self.threshold_signature = saved["threshold"], saved["threshold_signature"]
        if saved["epoch_rng_state"] is not None:  # draw the interrupted epoch's order again
            self._new_order(saved["epoch_rng_state"])

    def _new_order(self, rng_state: torch.Tensor) -> None:
        self.epoch_rng_state = rng_state
        self.shuffle.set_state(rng_state)
        self.order = torch.randperm(len(self.train), generator=self.shuffle)

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "epoch_rng_state": self.epoch_rng_state,
            "scaler": self.data.scaler.state_dict(),  # rl-eval scales new data as this run's training data
            "threshold": self.threshold,
            "threshold_signature": self.threshold_signature,
            "channels": self.data.channels,  # rl-eval refuses data whose columns differ
        }

    def replay_groups(self) -> Mapping[str, Stateful]:
        return {}  # the data set is the run's config, not its state

    # ---------------------------------------------------------------- one step
    def advance(self, metrics: MetricAccumulator, logger: RunLogger) -> None:
        if self.order is None or self.batch_in_epoch >= self.batches_per_epoch:
            self._new_order(self.shuffle.get_state())
            self.epoch += 1
            self.batch_in_epoch = 0
        start = self.batch_in_epoch * self.batch_size
        indices = self.order[start : start + self.batch_size].to(self.train.device)
        metrics.add(self.agent.update(self.train[indices]))
        self.batch_in_epoch += 1
        self.clock.step += 1

    # ---------------------------------------------------------------- evaluation and reports
    def evaluate(self) -> dict[str, Any]:
        self.agent.train_mode(False)
        try:
            report = DetectionReport.measure(self.agent, self.data, self.percentile)
        finally:
            self.agent.train_mode(True)
        self.threshold, self.threshold_signature = report.threshold, score_signature(self.agent)
        if report.threshold is None and len(self.data.val):
            log.warning("no normal validation window: no threshold, so nothing is flagged and no F1 is reported")
        write_json(self.run_dir / RESULTS_NAME, {"step": self.clock.step, **report.results(self.data)})
        return report.logged()

    def summary(self) -> dict:
        return {"epochs": self.epoch}

    def status(self) -> dict[str, float]:
        return {"epoch": self.epoch}
