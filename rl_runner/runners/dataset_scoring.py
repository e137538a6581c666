"""Loading and scoring a trained detector (the dataset runner's ``loads`` module): ``rl-eval`` of a dataset run,
and ``load_trained`` for the Python API. New data is scaled as the run's training data and flagged at the run's
threshold (recomputed from the normal validation windows when the scoring settings differ from the run's)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from rl_runner import detection
from rl_runner.agents.base import DatasetAgent
from rl_runner.checkpoint import load_finite_into, load_progress
from rl_runner.clock import Clock
from rl_runner.data import WindowData, Windows, load_data
from rl_runner.files import write_atomically
from rl_runner.runners.base import TrainedAgent
from rl_runner.runners.dataset import make_agent
from rl_runner.runners.detection_report import normal_mask, score_signature, score_windows, validation_threshold

SPLITS = ("val", "test", "all")


def named(channels: list[str]) -> bool:
    """Whether channels have names to compare (a CSV's columns), not a .npy's positions (``channel_0``, ...)."""
    return channels != [f"channel_{i}" for i in range(len(channels))]


def load_trained(cfg: DictConfig, checkpoint: Path, device: torch.device) -> TrainedAgent:
    """A checkpoint's detector with the run's data scaled as its training data and the threshold saved with it."""
    agent, data, saved = restore(cfg, checkpoint, device)
    threshold = saved["threshold"]
    return TrainedAgent(
        agent, cfg, checkpoint, device, data=data, threshold=None if threshold is None else float(threshold)
    )


def restore(
    cfg: DictConfig, checkpoint: Path, device: torch.device, whole_series: bool = False
) -> tuple[DatasetAgent, WindowData, dict]:
    """A checkpoint's agent (in evaluation mode, at the checkpoint's step: a checkpoint from AnoGAN's GAN phase
    has no trained encoder), the data of ``cfg.data`` scaled as the run's training data, and the loop state
    saved with it (scaler, threshold, channels)."""
    progress = load_progress(checkpoint)
    saved = progress["loop"]
    data = load_data(cfg.data, scaler_state=saved["scaler"], whole_series=whole_series)
    trained_on = saved["channels"]
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
    agent, data, saved = restore(cfg, checkpoint, device, whole_series=options.get("split") == "all")
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
    threshold = saved["threshold"]
    if threshold is not None and saved["threshold_signature"] != score_signature(agent):
        percentile = float(cfg.agent.threshold_percentile)
        threshold = validation_threshold(agent, data.val, percentile)
        if threshold is not None:
            lines.append(
                f"threshold recomputed for {score_signature(agent)} (the run's was for "
                f"{saved['threshold_signature']}): the {percentile:g}th percentile of "
                f"{int(normal_mask(data.val).sum())} normal validation windows"
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
