"""Detection metrics, thresholds and figures (rl_runner/detection.py), against numpy, scikit-learn and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from rl_runner.detection import (
    detection_metrics,
    per_file_roc_auc,
    roc_figure,
    score_histogram,
    threshold_at,
    windows_figure,
)


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    """Labels and overlapping, partly tied scores: anomalies score higher on average."""
    rng = np.random.default_rng(4)
    labels = (rng.random(300) < 0.3).astype(np.int64)
    scores = np.round(rng.normal(size=300) + 1.2 * labels, 1)
    return labels, scores


@pytest.mark.parametrize("percentile", [50.0, 90.0, 99.0, 100.0])
def test_threshold_is_numpys_percentile(percentile: float) -> None:
    """The threshold is exactly numpy's percentile of the normal scores."""
    normal = np.random.default_rng(0).exponential(size=37)
    assert threshold_at(normal, percentile) == float(np.percentile(normal, percentile))


@pytest.mark.parametrize("threshold", [-0.5, 0.6, 1.0, 5.0])
def test_detection_metrics_match_scikit_learn(scored: tuple[np.ndarray, np.ndarray], threshold: float) -> None:
    """AUCs, and precision/recall/F1/flagged fraction of score > threshold, equal scikit-learn's."""
    labels, scores = scored
    flags = scores > threshold
    metrics = detection_metrics(labels, scores, threshold)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert metrics["pr_auc"] == pytest.approx(average_precision_score(labels, scores))
    assert metrics["precision"] == pytest.approx(precision_score(labels, flags, zero_division=0))
    assert metrics["recall"] == pytest.approx(recall_score(labels, flags, zero_division=0))
    assert metrics["f1"] == pytest.approx(f1_score(labels, flags, zero_division=0))
    assert metrics["flagged_fraction"] == pytest.approx(flags.mean())


def brute_force_f1(labels: np.ndarray, flags: np.ndarray) -> float:
    true_positives = int((flags & (labels == 1)).sum())
    if true_positives == 0:
        return 0.0
    precision, recall = true_positives / flags.sum(), true_positives / (labels == 1).sum()
    return 2 * precision * recall / (precision + recall)


def test_best_f1_is_the_maximum_over_every_threshold(scored: tuple[np.ndarray, np.ndarray]) -> None:
    """best_f1 is the largest F1 of score >= t over every distinct score t, reached at best_f1_threshold."""
    labels, scores = scored
    metrics = detection_metrics(labels, scores, 0.0)
    best = max(brute_force_f1(labels, scores >= t) for t in np.unique(scores))
    assert metrics["best_f1"] == pytest.approx(best)
    assert brute_force_f1(labels, scores >= metrics["best_f1_threshold"]) == pytest.approx(best)
    assert metrics["best_f1"] >= metrics["f1"]


def test_per_file_roc_auc_skips_files_with_one_class(scored: tuple[np.ndarray, np.ndarray]) -> None:
    """Only files holding both classes get an AUC, each equal to scikit-learn's on that file's windows."""
    labels, scores = scored
    files = np.arange(len(labels)) % 3
    labels = labels.copy()
    labels[files == 1] = 0
    result = per_file_roc_auc(labels, scores, files)
    assert sorted(result) == [0, 2]
    for file in (0, 2):
        assert result[file] == pytest.approx(roc_auc_score(labels[files == file], scores[files == file]))


def assert_picture(image: np.ndarray) -> None:
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert image.shape[0] > 50 and image.shape[1] > 50
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 5
    assert (image < 128).any() and (image > 200).any()


def test_figures_are_non_blank_rgb_images(scored: tuple[np.ndarray, np.ndarray]) -> None:
    """The histogram, ROC curve and window plots render to [H, W, 3] uint8 pictures with content."""
    labels, scores = scored
    assert_picture(score_histogram(scores[labels == 0], scores[labels == 1], 0.8))
    assert_picture(roc_figure(labels, scores))
    windows = np.random.default_rng(0).normal(size=(3, 16, 2)).astype(np.float32)
    assert_picture(windows_figure(windows, windows[:2] * 0.5))
