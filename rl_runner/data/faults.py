"""Equipment faults injected into windows: the anomalies of the synthetic source, and the labelled faulty
validation windows that give a run without labelled validation data an objective (``data.val_faults``).

Each fault acts on a copy of a window [window, channels] and is sized relative to that window, so the same
sizes mean the same on raw and on scaled data. ``faults`` maps a kind to its keyword arguments (``data.faults``
in the config); each faulty window gets one kind, drawn uniformly.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from rl_runner.data import DataError


def spike(window: np.ndarray, rng: np.random.Generator, *, height: float, count: int) -> np.ndarray:
    """``count`` single-sample impulses of ``height`` standard deviations of one channel (a knock, a loose part)."""
    channel = rng.integers(window.shape[1])
    where = rng.choice(len(window), size=min(count, len(window)), replace=False)
    signs = rng.choice([-1.0, 1.0], size=len(where))
    window[where, channel] += signs * height * max(float(window[:, channel].std()), 1e-6)
    return window


def drift(window: np.ndarray, rng: np.random.Generator, *, amount: float) -> np.ndarray:
    """The machine slows down across the window: its frequencies fall linearly to ``1 - amount`` of their start
    (the window is resampled along a warped time axis, so every channel keeps its shape, stretched)."""
    steps = np.arange(len(window), dtype=np.float64)
    warped = steps - amount * steps**2 / (2 * max(len(window) - 1, 1))  # d(warped)/dt = 1 - amount * t / T
    for channel in range(window.shape[1]):
        window[:, channel] = np.interp(warped, steps, window[:, channel])
    return window


def amplitude(window: np.ndarray, rng: np.random.Generator, *, factor: float) -> np.ndarray:
    """Every channel's oscillation around its mean grows (or shrinks) by ``factor`` (an imbalance, a loose mount)."""
    mean = window.mean(axis=0, keepdims=True)
    window[:] = mean + factor * (window - mean)
    return window


def saturation(window: np.ndarray, rng: np.random.Generator, *, level: float) -> np.ndarray:
    """One channel clips at ``level`` of its largest excursion from its mean (a sensor or amplifier saturating)."""
    channel = rng.integers(window.shape[1])
    mean = window[:, channel].mean()
    limit = level * np.abs(window[:, channel] - mean).max()
    window[:, channel] = np.clip(window[:, channel], mean - limit, mean + limit)
    return window


def dropout(window: np.ndarray, rng: np.random.Generator, *, length: int) -> np.ndarray:
    """One channel reads zero for ``length`` consecutive samples (a dropped connection)."""
    channel = rng.integers(window.shape[1])
    length = min(length, len(window))
    start = rng.integers(len(window) - length + 1)
    window[start : start + length, channel] = 0.0
    return window


FAULTS: dict[str, Callable[..., np.ndarray]] = {
    "spike": spike,
    "drift": drift,
    "amplitude": amplitude,
    "saturation": saturation,
    "dropout": dropout,
}


def check_faults(faults: Mapping[str, Mapping[str, Any]], where: str) -> None:
    unknown = [name for name in faults if name not in FAULTS]
    if unknown:
        raise DataError(f"{where}: unknown fault {unknown[0]!r}; known: {', '.join(FAULTS)}")
    if not faults:
        raise DataError(f"{where}: no fault kinds to inject")


def inject_faults(
    windows: np.ndarray, rng: np.random.Generator, faults: Mapping[str, Mapping[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """Faulty copies of ``windows`` [N, window, channels] and the index (into ``faults``) of each one's kind."""
    kinds = list(faults)
    drawn = rng.integers(len(kinds), size=len(windows))
    faulty = windows.astype(np.float64, copy=True)
    for i, kind in enumerate(drawn):
        FAULTS[kinds[kind]](faulty[i], rng, **dict(faults[kinds[kind]]))
    return faulty.astype(windows.dtype), drawn
