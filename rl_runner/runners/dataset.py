"""The epoch loop for agents that learn from a data set instead of an env (the autoencoder, AnoGAN).

One step is one optimiser step on a batch of training windows; epochs visit the windows in a fresh
seeded order each time (full batches only, so BatchNorm never sees a batch of one; a set smaller than a
batch is one batch). Evaluation scores the validation windows (the threshold is a percentile of the normal
ones' scores; with labelled faulty ones, ``eval/val_roc_auc`` is the objective a sweeper may use) and the
test windows (the detection metrics, per-file ROC-AUC, figures), and writes ``results.json``. Checkpoints,
resume, signals, the NaN stop and the summary come from the shared skeleton in ``runners/base.py``.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from omegaconf import DictConfig

from rl_runner import detection
from rl_runner.agents import build_agent
from rl_runner.agents.base import DatasetAgent
from rl_runner.checkpoint import Stateful, load_finite_into, load_progress
from rl_runner.clock import Clock
from rl_runner.data import WindowData, Windows, load_data
from rl_runner.logging import MetricAccumulator, RunLogger
from rl_runner.runners.base import RunContext, RunSkeleton
from rl_runner.runners.record import write_atomically, write_json

RESULTS_NAME = "results.json"
log = logging.getLogger(__name__)


def make_agent(cfg: DictConfig, data: WindowData, device: torch.device, clock: Clock) -> DatasetAgent:
    return build_agent(cfg.agent, net=cfg.net, sample_shape=data.sample_shape, device=device, clock=clock)


def run(cfg: DictConfig, context: RunContext) -> dict:
    data = load_data(cfg.data)
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
        # a checkpoint from before thresholds were saved has none: the next evaluation sets it
        self.threshold, self.threshold_signature = saved.get("threshold"), saved.get("threshold_signature")
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


class DetectionReport:
    """What an evaluation measured: the agent's own metrics on normal validation windows, the threshold from
    their scores, and the detection metrics on labelled validation and test windows."""

    def __init__(self) -> None:
        self.agent_metrics: dict[str, Any] = {}
        self.threshold: float | None = None  # None: no normal validation window to choose it from
        self.percentile = float("nan")
        self.splits: dict[str, Windows | None] = {}
        self.scores: dict[str, np.ndarray] = {}  # split -> [N] scores
        self.seconds: dict[str, float] = {}
        self.metrics: dict[str, dict[str, float]] = {}  # split -> detection metrics, for splits with both classes
        self.per_file: dict[str, dict[int, float]] = {}  # split -> file index -> ROC-AUC

    @staticmethod
    def measure(agent: DatasetAgent, data: WindowData, percentile: float) -> "DetectionReport":
        """Scores the validation and test windows; the threshold is the ``percentile`` of the normal validation
        windows' scores."""
        report = DetectionReport()
        report.percentile = percentile
        report.splits = {"val": data.val, "test": data.test}
        for name, windows in report.splits.items():
            if windows is not None and len(windows):
                report.scores[name], report.seconds[name] = score_windows(agent, windows)
        normal_val = data.val.select(normal_mask(data.val))
        if len(normal_val):
            report.agent_metrics = agent.evaluate(torch.as_tensor(normal_val.values, device=agent.device))
            report.threshold = detection.threshold_at(report.scores["val"][normal_mask(data.val)], percentile)
        for name, windows in report.splits.items():
            if name in report.scores and detection.both_classes(windows.labels):
                report._measure_detection(name, windows)
        return report

    def _measure_detection(self, name: str, windows: Windows) -> None:
        metrics = detection.detection_metrics(windows.labels, self.scores[name], self.threshold)
        self.per_file[name] = detection.per_file_roc_auc(windows.labels, self.scores[name], windows.file_index)
        if len(np.unique(windows.file_index)) > 1 and self.per_file[name]:
            metrics["roc_auc_file_mean"] = float(np.mean(list(self.per_file[name].values())))
        self.metrics[name] = metrics

    def logged(self) -> dict[str, Any]:
        """TensorBoard tags: scalars (floats) and images (arrays)."""
        values: dict[str, Any] = {**self.agent_metrics}
        val = self.splits["val"]
        if self.threshold is not None:
            values["eval/threshold"] = self.threshold
            values["eval/val_normal_score_mean"] = float(self.scores["val"][normal_mask(val)].mean())
        if "val" in self.scores:
            values["charts/score_windows_per_second"] = len(self.scores["val"]) / max(self.seconds["val"], 1e-9)
        if "val" in self.metrics:
            values["eval/val_roc_auc"] = self.metrics["val"]["roc_auc"]
            values["eval/val_pr_auc"] = self.metrics["val"]["pr_auc"]
        for key, value in self.metrics.get("test", {}).items():
            values[f"eval/{key}"] = value
        if "test" in self.metrics:
            scores, labels = self.scores["test"], self.splits["test"].labels
            values["images/score_histogram"] = detection.score_histogram(
                scores[labels == 0], scores[labels == 1], self.threshold
            )
            values["images/roc_curve"] = detection.roc_figure(labels, scores)
        return values

    def results(self, data: WindowData) -> dict[str, Any]:
        """``results.json``: the threshold, what it was chosen from, and each split's metrics."""
        content: dict[str, Any] = {
            "threshold": {
                "value": self.threshold,
                "percentile": self.percentile,
                "chosen_from": "scores of the normal validation windows (no test label is read)"
                if self.threshold is not None
                else "nothing: no normal validation window, so no window is flagged and no F1 is reported",
            },
            "agent": {k: v for k, v in self.agent_metrics.items() if isinstance(v, float)},
        }
        for name, windows in self.splits.items():
            if name not in self.scores:
                continue
            entry: dict[str, Any] = {
                "windows": len(windows),
                "anomalous_windows": None if windows.labels is None else int(windows.labels.sum()),
                "windows_per_second": len(windows) / max(self.seconds[name], 1e-9),
            }
            metrics = self.metrics.get(name)
            if metrics:
                entry.update({k: v for k, v in metrics.items() if not k.startswith("best_f1")})
                entry["peeking_at_labels"] = {
                    "best_f1": metrics["best_f1"],
                    "best_f1_threshold": metrics["best_f1_threshold"],
                    "note": "the best F1 over all thresholds, chosen with these labels: an upper bound, not a result",
                }
                if len(data.files) > 1:
                    per_file = self.per_file[name]
                    entry["roc_auc_per_file"] = {data.files[index]: value for index, value in per_file.items()}
            content["validation" if name == "val" else "test"] = entry
        return content


def normal_mask(windows: Windows) -> np.ndarray:
    return np.ones(len(windows), dtype=bool) if windows.labels is None else windows.labels == 0


def score_windows(agent: DatasetAgent, windows: Windows) -> tuple[np.ndarray, float]:
    """[N] scores (float64) and the seconds they took; a score that is not finite is an error."""
    started = time.perf_counter()
    scores = agent.score(torch.as_tensor(windows.values, device=agent.device)).detach().cpu().numpy()
    seconds = time.perf_counter() - started
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} of {len(scores)} window scores are not finite")
    return scores.astype(np.float64), seconds


# -------------------------------------------------------------------- rl-eval
SPLITS = ("val", "test", "all")


def score_signature(agent: DatasetAgent) -> str | None:
    """What the scale of the agent's scores depends on, where it has choices (AnoGAN's scoring method and
    search settings): a saved threshold applies only to scores with the same signature."""
    signature = getattr(agent, "score_signature", None)
    return None if signature is None else signature()


def named(channels: list[str]) -> bool:
    """Whether channels have names to compare (a CSV's columns), not a .npy's positions (``channel_0``, ...)."""
    return channels != [f"channel_{i}" for i in range(len(channels))]


def load_trained(
    cfg: DictConfig, checkpoint: Path, device: torch.device, whole_series: bool = False
) -> tuple[DatasetAgent, WindowData, dict]:
    """A checkpoint's agent (in evaluation mode, at the checkpoint's step: a checkpoint from AnoGAN's GAN phase
    has no trained encoder), the data of ``cfg.data`` scaled as the run's training data, and the loop state
    saved with it (scaler, threshold, channels)."""
    progress = load_progress(checkpoint)
    saved = progress["loop"]
    data = load_data(cfg.data, scaler_state=saved["scaler"], whole_series=whole_series)
    trained_on = saved.get("channels", data.channels)
    if data.channels != trained_on and named(data.channels) and named(trained_on):
        raise ValueError(
            f"data.path={cfg.data.get('path', cfg.data.source)}: channels {data.channels} differ from the "
            f"{trained_on} this run was trained on"
        )
    clock = Clock(horizon=int(cfg.total_steps))
    clock.load_state_dict(progress["clock"])
    agent = make_agent(cfg, data, device, clock)
    load_finite_into(checkpoint, agent.state_groups(), map_location=device)
    agent.train_mode(False)
    return agent, data, saved


def evaluate(cfg: DictConfig, checkpoint: Path, device: torch.device, options: dict[str, str]) -> dict:
    """Scores windows of the run's data (or of ``data.path=<new file or folder>``) with a checkpoint, scaled as
    the run's training data: ``split=test`` (the default when the data has a test part), ``val``, or ``all``
    (every window of the file). Writes ``<run>/scores/<checkpoint>_<split>.csv`` (each window's file, first and
    last row, score, flag at the run's threshold, and label when known) and reports the metrics when labels
    are present. Scoring another way than the run did (``agent.scoring=...``) recomputes the threshold from the
    normal validation windows of the data."""
    agent, data, saved = load_trained(cfg, checkpoint, device, whole_series=options.get("split") == "all")
    split = options.get("split") or ("test" if data.test is not None else "val")
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: must be one of {', '.join(SPLITS)}")
    if split == "test" and data.test is None:
        raise ValueError("split=test: the data has no test part (set data.train_rows, or use split=val or all)")
    windows = data.val if split == "val" else data.test
    scores, seconds = score_windows(agent, windows)
    lines = [f"{len(scores)} {split} windows scored in {seconds:.2f} s from {checkpoint}"]
    normal = windows.select(normal_mask(windows))
    own = agent.evaluate(torch.as_tensor(normal.values, device=device)) if len(normal) else {}
    own = {name: float(value) for name, value in own.items() if not isinstance(value, np.ndarray)}
    if own:
        lines.append(", ".join(f"{name} {value:.6g}" for name, value in own.items()) + " (normal windows)")
    threshold = saved.get("threshold")
    if threshold is not None and saved.get("threshold_signature") != score_signature(agent):
        normal = data.val.select(normal_mask(data.val))
        threshold = None
        if len(normal):
            percentile = float(cfg.agent.threshold_percentile)
            threshold = detection.threshold_at(score_windows(agent, normal)[0], percentile)
            lines.append(
                f"threshold recomputed for {score_signature(agent)} (the run's was for "
                f"{saved.get('threshold_signature')}): the {percentile:g}th percentile of {len(normal)} normal "
                "validation windows"
            )
    flags = None if threshold is None else scores > threshold
    path = checkpoint.parents[1] / "scores" / f"{checkpoint.name}_{split}.csv"
    write_scores(path, data, windows, int(cfg.data.window), scores, flags)
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "windows": len(scores), "scores": str(path), **own}
    if threshold is None:
        lines.append("no threshold for these scores (saved before an evaluation, or no validation windows)")
    elif detection.both_classes(windows.labels):
        metrics = detection.detection_metrics(windows.labels, scores, threshold)
        result.update(metrics, threshold=threshold)
        lines.append(
            f"threshold {threshold:.6g}: ROC-AUC {metrics['roc_auc']:.4f}, PR-AUC {metrics['pr_auc']:.4f}, "
            f"precision {metrics['precision']:.4f}, recall {metrics['recall']:.4f}, F1 {metrics['f1']:.4f} "
            f"(best F1 over thresholds, peeking at the labels: {metrics['best_f1']:.4f})"
        )
    else:
        result["threshold"] = threshold
        lines.append(f"threshold {threshold:.6g}: {int(flags.sum())} of {len(scores)} windows flagged")
    lines.append(f"scores written to {path}")
    result["report"] = "\n".join(lines)
    return result


def write_scores(
    path: Path, data: WindowData, windows: Windows, window: int, scores: np.ndarray, flags: np.ndarray | None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    files = [data.files[index] if data.files else "" for index in windows.file_index]
    columns = {
        "file": files,
        "first_row": (windows.last_rows - window + 1).tolist(),
        "last_row": windows.last_rows.tolist(),
        "score": scores.tolist(),
    }
    if flags is not None:
        columns["flagged"] = flags.astype(int).tolist()
    if windows.labels is not None:
        columns["label"] = windows.labels.tolist()
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(columns)
    writer.writerows(zip(*columns.values()))
    write_atomically(path, text.getvalue())
