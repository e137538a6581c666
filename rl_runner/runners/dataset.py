"""The epoch loop for agents that learn from a data set instead of an env (the autoencoder; AnoGAN next).

One step is one optimiser step on a batch of training windows; epochs visit the windows in a fresh
seeded order each time (full batches only, so BatchNorm never sees a batch of one; a set smaller than a
batch is one batch). Evaluation scores the validation split. Checkpoints, resume, signals, the NaN stop and
the summary come from the shared skeleton in ``runners/base.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from omegaconf import DictConfig

from rl_runner.agents import build_agent
from rl_runner.agents.base import DatasetAgent
from rl_runner.checkpoint import Stateful, load_finite_into, load_progress
from rl_runner.clock import Clock
from rl_runner.data import WindowData, load_data
from rl_runner.logging import MetricAccumulator, RunLogger
from rl_runner.runners.base import RunContext, RunSkeleton


def make_agent(cfg: DictConfig, data: WindowData, device: torch.device, clock: Clock) -> DatasetAgent:
    return build_agent(cfg.agent, net=cfg.net, sample_shape=data.sample_shape, device=device, clock=clock)


def run(cfg: DictConfig, context: RunContext) -> dict:
    data = load_data(cfg.data)
    clock = Clock(horizon=int(cfg.total_steps))
    agent = make_agent(cfg, data, context.device, clock)
    skeleton = RunSkeleton(cfg, context, agent, EpochLoop(cfg, agent, data, clock), clock)
    skeleton.start()
    return skeleton.run()


class EpochLoop:
    def __init__(self, cfg: DictConfig, agent: DatasetAgent, data: WindowData, clock: Clock) -> None:
        self.agent = agent
        self.data = data
        self.clock = clock
        self.train = torch.as_tensor(data.train, device=agent.device)
        self.val = torch.as_tensor(data.val, device=agent.device)
        self.batch_size = min(int(cfg.agent.batch_size), len(self.train))
        self.batches_per_epoch = len(self.train) // self.batch_size
        self.seed = int(cfg.seed)
        self.shuffle = torch.Generator()  # epoch orders, on the CPU so they are the same on every device
        self.epoch = 0  # epochs started
        self.batch_in_epoch = 0
        self.epoch_rng_state: torch.Tensor | None = None  # the generator before this epoch's order was drawn
        self.order: torch.Tensor | None = None

    # ---------------------------------------------------------------- state
    def begin(self, saved: dict | None) -> None:
        self.shuffle.manual_seed(self.seed)
        if saved is None:
            return
        self.epoch, self.batch_in_epoch = saved["epoch"], saved["batch_in_epoch"]
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
        }

    def optional_groups(self) -> Mapping[str, Stateful]:
        return {}

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
    def evaluate(self) -> dict[str, float]:
        self.agent.train_mode(False)
        try:
            return self.agent.evaluate(self.val)
        finally:
            self.agent.train_mode(True)

    def summary(self) -> dict:
        return {"epochs": self.epoch}

    def status(self) -> dict[str, float]:
        return {"epoch": self.epoch}


# -------------------------------------------------------------------- rl-eval
def evaluate(cfg: DictConfig, checkpoint: Path, device: torch.device, options: dict[str, str]) -> dict:
    """Scores windows of ``data.path`` (the run's file, or another given as ``data.path=``) with a checkpoint,
    scaled as the run's training data: the validation part (``split=val``, the default) or every window of the
    file (``split=all``). Writes them to ``<run>/scores/<checkpoint>_<split>.csv``."""
    split = options.get("split", "val")
    if split not in ("val", "all"):
        raise ValueError(f"split={split!r}: must be val or all")
    scaler_state = load_progress(checkpoint)["loop"]["scaler"]
    data = load_data(cfg.data, scaler_state=scaler_state, whole_series=split == "all")
    agent = make_agent(cfg, data, device, Clock.at_end(int(cfg.total_steps)))
    load_finite_into(checkpoint, agent.state_groups(), map_location=device)
    agent.train_mode(False)
    samples = torch.as_tensor(data.val, device=device)
    metrics = agent.evaluate(samples)
    scores = agent.score(samples).cpu().numpy()
    if not np.isfinite(scores).all():
        raise ValueError(f"{checkpoint}: {int((~np.isfinite(scores)).sum())} window scores are not finite")
    path = checkpoint.parents[1] / "scores" / f"{checkpoint.name}_{split}.csv"
    write_scores(path, data.val_starts, scores)
    shown = ", ".join(f"{name} {value:.6g}" for name, value in metrics.items())
    which = "validation windows" if split == "val" else "windows of the whole series"
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "windows": len(scores), **metrics, "scores": str(path)}
    result["report"] = f"{len(scores)} {which} from {checkpoint}: {shown}\nscores written to {path}"
    return result


def write_scores(path: Path, starts: np.ndarray, scores: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["window_start_row", "score"])
        writer.writerows(zip(starts.tolist(), scores.tolist()))
