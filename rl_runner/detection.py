"""Anomaly detection results from scores: the threshold (from normal validation scores only), metrics
(scikit-learn's), and figures for TensorBoard. Shared by every dataset agent and the benchmark scripts.

The threshold never reads a test label. ``best_f1`` does (it tries every threshold on the test labels) and is
reported under its own name, as an upper bound, never as the detector's result.
"""

from __future__ import annotations

import io

import numpy as np

# imported with this module, not on first use: importing sklearn.metrics draws from Python's global random stream,
# which a run seeds and checkpoints, and a first use mid-run would make the stream depend on the process's history
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)


def threshold_at(normal_scores: np.ndarray, percentile: float) -> float:
    """The ``percentile`` of the normal validation windows' scores: a score above it is flagged."""
    return float(np.percentile(normal_scores, percentile))


def both_classes(labels: np.ndarray | None) -> bool:
    return labels is not None and len(np.unique(labels)) == 2


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores))


def detection_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float | None) -> dict[str, float]:
    """ROC-AUC and PR-AUC (average precision) of the scores; precision, recall and F1 of ``score > threshold``
    (none without a threshold); the best F1 over all thresholds (it peeks at the labels) and that threshold."""
    metrics = {"roc_auc": roc_auc(labels, scores), "pr_auc": float(average_precision_score(labels, scores))}
    if threshold is not None:
        flags = scores > threshold
        precision, recall, f1, _ = precision_recall_fscore_support(labels, flags, average="binary", zero_division=0)
        metrics.update(precision=float(precision), recall=float(recall), f1=float(f1))
        metrics["flagged_fraction"] = float(flags.mean())
    curve_precision, curve_recall, curve_thresholds = precision_recall_curve(labels, scores)
    curve_f1 = 2 * curve_precision * curve_recall / np.maximum(curve_precision + curve_recall, 1e-12)
    best = int(np.argmax(curve_f1[:-1]))
    metrics.update(best_f1=float(curve_f1[best]), best_f1_threshold=float(curve_thresholds[best]))
    return metrics


def per_file_roc_auc(labels: np.ndarray, scores: np.ndarray, files: np.ndarray) -> dict[int, float]:
    """ROC-AUC of each file that has both normal and anomalous windows (SKAB's protocol averages these)."""
    return {
        int(file): roc_auc(labels[files == file], scores[files == file])
        for file in np.unique(files)
        if both_classes(labels[files == file])
    }


# -------------------------------------------------------------------------------------------- figures
def _render(figure) -> np.ndarray:  # noqa: ANN001 (a matplotlib Figure; matplotlib is imported lazily)
    import matplotlib.pyplot as plt
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))  # [H, W, 3] uint8


def _figure(columns: int = 1, rows: int = 1, size: tuple[float, float] = (5.0, 3.5)):  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=size, squeeze=False)


def score_histogram(normal: np.ndarray, anomalous: np.ndarray, threshold: float | None) -> np.ndarray:
    figure, axes = _figure()
    ax = axes[0, 0]
    edges = np.histogram_bin_edges(np.concatenate([normal, anomalous]), bins=40)
    ax.hist(normal, bins=edges, alpha=0.6, label=f"normal ({len(normal)})", density=True)
    ax.hist(anomalous, bins=edges, alpha=0.6, label=f"anomalous ({len(anomalous)})", density=True)
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label="threshold")
    ax.set_xlabel("anomaly score")
    ax.legend()
    figure.tight_layout()
    return _render(figure)


def roc_figure(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    false_positive, true_positive, _ = roc_curve(labels, scores)
    figure, axes = _figure(size=(4.0, 4.0))
    ax = axes[0, 0]
    ax.plot(false_positive, true_positive, label=f"AUC {roc_auc(labels, scores):.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    figure.tight_layout()
    return _render(figure)


def windows_figure(real: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """Real windows [N, window, channels] in the top row, generated ones below, every channel drawn."""
    columns = max(len(real), len(generated), 1)
    figure, axes = _figure(columns, 2, size=(2.5 * columns, 4.0))
    for row, (title, windows) in enumerate((("real", real), ("generated", generated))):
        for column in range(columns):
            ax = axes[row, column]
            if column < len(windows):
                ax.plot(windows[column])
            ax.set_title(title, fontsize=8)
            ax.tick_params(labelsize=6)
    figure.tight_layout()
    return _render(figure)
