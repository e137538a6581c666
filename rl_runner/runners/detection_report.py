"""What a detector's evaluation measures, the same for every dataset agent: each split's scores, the threshold
(from the normal validation windows' scores only), the detection metrics and figures, and ``results.json``'s
content. The metrics themselves are ``rl_runner/detection.py``'s."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from rl_runner import detection
from rl_runner.agents.base import DatasetAgent
from rl_runner.data import WindowData, Windows

RESULTS_NAME = "results.json"


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
        report.threshold = validation_threshold(agent, data.val, percentile, report.scores.get("val"))
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


def validation_threshold(
    agent: DatasetAgent, val: Windows, percentile: float, val_scores: np.ndarray | None = None
) -> float | None:
    """The threshold every detector flags at: the ``percentile`` of the scores of the normal validation windows
    (``val_scores``, the scores of all of ``val``, when already known); None when there is no normal one. No test
    label is read."""
    normal = normal_mask(val)
    if not normal.any():
        return None
    scores = val_scores[normal] if val_scores is not None else score_windows(agent, val.select(normal))[0]
    return detection.threshold_at(scores, percentile)


def score_signature(agent: DatasetAgent) -> str | None:
    """What the scale of the agent's scores depends on, where it has choices (AnoGAN's scoring method and
    search settings): a saved threshold applies only to scores with the same signature."""
    signature = getattr(agent, "score_signature", None)
    return None if signature is None else signature()
