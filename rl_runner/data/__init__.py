"""Data sources for runs without an env: ``data.source`` -> a loader that returns windowed splits.

A loader is ``load(data_cfg, scaler_state=None, whole_series=False) -> WindowData``. Scaling is fitted on the
training split only; ``rl-eval`` passes the scaler a run was trained with, so new data is scaled the same way,
and ``whole_series=True`` makes ``val`` hold the windows of the whole series (``rl-eval split=all``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig

from rl_runner.registry import resolve_entry

SOURCES = {
    "array": "rl_runner.data.array:load_array_windows",
}


class Scaler:
    """Per-channel affine scaling, ``(x - shift) / scale``; the identity until fitted."""

    def __init__(self, channels: int) -> None:
        self.shift = np.zeros(channels, dtype=np.float64)
        self.scale = np.ones(channels, dtype=np.float64)

    def fit_standard(self, rows: np.ndarray) -> "Scaler":
        # A constant channel maps to 0 with scale 1: its computed std is rounding noise (~1e-17), not 0, and
        # dividing by it would send any other value of that channel to ~1e16.
        constant = np.ptp(rows, axis=0) == 0
        std = rows.std(axis=0)
        self.shift = np.where(constant, rows[0], rows.mean(axis=0))
        self.scale = np.where(constant | (std == 0), 1.0, std)
        return self

    def transform(self, rows: np.ndarray) -> np.ndarray:
        return ((rows - self.shift) / self.scale).astype(np.float32)

    def state_dict(self) -> dict:
        return {"shift": self.shift.copy(), "scale": self.scale.copy()}

    def load_state_dict(self, state: dict) -> None:
        if len(state["shift"]) != len(self.shift):
            raise ValueError(f"the scaler was fitted on {len(state['shift'])} channels, the data has {len(self.shift)}")
        self.shift, self.scale = np.asarray(state["shift"]), np.asarray(state["scale"])


@dataclass
class WindowData:
    train: np.ndarray  # [N, window, channels] float32, scaled
    val: np.ndarray  # [M, window, channels] float32, scaled with the training split's statistics
    val_starts: np.ndarray  # [M] the row of the whole series where each validation window starts
    channels: list[str]
    scaler: Scaler

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])


def load_data(data_cfg: DictConfig, scaler_state: dict | None = None, whole_series: bool = False) -> WindowData:
    return resolve_entry(SOURCES, data_cfg.source, "data.source")(data_cfg, scaler_state, whole_series)
