"""A synthetic rotating machine: vibration windows with harmonics and noise, and faulty windows to detect.

Each channel is a sensor on the same shaft: a sum of the rotation frequency's harmonics with the channel's own
gains and phase offsets (fixed by ``data.seed``), plus white noise. Each window is a separate recording with its
own shaft angle, a little speed and amplitude variation, and fresh noise; windows are laid end to end, so window
``i`` holds rows ``i*window .. (i+1)*window - 1`` of one long recording. Faulty windows are normal ones with one
fault from ``data.faults`` injected (``rl_runner/data/faults.py``); the default sizes are the ones documented in
``conf/data/waveform.yaml``, and tests use them unchanged.

Seeded by ``data.seed`` alone: every run seed of a sweep sees the same data.
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig

from rl_runner.choices import Scaling
from rl_runner.data import DataError, Scaler, WindowData, Windows
from rl_runner.data.faults import check_faults, inject_faults


class RotatingMachine:
    def __init__(self, data_cfg: DictConfig) -> None:
        self.window = int(data_cfg.window)
        self.channels = int(data_cfg.channels)
        self.period = float(data_cfg.period)
        self.harmonics = np.asarray(list(data_cfg.harmonics), dtype=np.float64)  # [K] amplitude of each harmonic
        self.noise = float(data_cfg.noise)
        self.speed_jitter = float(data_cfg.speed_jitter)
        self.amplitude_jitter = float(data_cfg.amplitude_jitter)
        layout = np.random.default_rng([int(data_cfg.seed), 0])  # the machine itself: same for every split
        self.gains = layout.uniform(0.5, 1.5, size=(self.channels, len(self.harmonics)))  # [C, K]
        self.offsets = layout.uniform(0, 2 * np.pi, size=(self.channels, len(self.harmonics)))  # [C, K]

    def record(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` normal windows [count, window, channels] (float64)."""
        steps = np.arange(self.window, dtype=np.float64)
        speed = 1 + self.speed_jitter * rng.uniform(-1, 1, size=(count, 1))  # [N, 1]
        angle = 2 * np.pi * (steps / self.period * speed + rng.uniform(0, 1, size=(count, 1)))  # [N, T] shaft angle
        order = np.arange(1, len(self.harmonics) + 1)  # harmonic k turns k times per revolution
        phases = angle[:, :, None, None] * order + self.offsets  # [N, T, C, K]
        amplitudes = self.harmonics * self.gains  # [C, K]
        signal = (amplitudes * np.sin(phases)).sum(axis=-1)  # [N, T, C]
        signal *= 1 + self.amplitude_jitter * rng.uniform(-1, 1, size=(count, 1, 1))
        return signal + self.noise * rng.standard_normal(signal.shape)


def load_waveform_windows(
    data_cfg: DictConfig, scaler_state: dict | None = None, whole_series: bool = False
) -> WindowData:
    check_faults(data_cfg.faults, "data.faults")
    if not 0 <= float(data_cfg.anomaly_fraction) < 1:
        raise DataError(f"data.anomaly_fraction={data_cfg.anomaly_fraction}: must be in [0, 1)")
    machine = RotatingMachine(data_cfg)
    seed = int(data_cfg.seed)
    train = machine.record(int(data_cfg.train_windows), np.random.default_rng([seed, 1]))
    val, val_labels = _with_faults(machine, data_cfg, int(data_cfg.val_windows), np.random.default_rng([seed, 2]))
    test, test_labels = _with_faults(machine, data_cfg, int(data_cfg.test_windows), np.random.default_rng([seed, 3]))
    scaler = Scaler(machine.channels)
    if scaler_state is not None:
        scaler.load_state_dict(scaler_state)
    elif data_cfg.scaling is Scaling.standard:
        scaler.fit_standard(train.reshape(-1, machine.channels))

    def laid_out(values: np.ndarray, labels: np.ndarray | None, first_window: int) -> Windows:
        ends = (first_window + np.arange(len(values)) + 1) * machine.window - 1
        scaled = scaler.transform(values.reshape(-1, machine.channels)).reshape(values.shape)
        return Windows(scaled, ends, labels)

    splits = {
        "train": laid_out(train, None, 0),
        "val": laid_out(val, val_labels, len(train)),
        "test": laid_out(test, test_labels, len(train) + len(val)),
    }
    if whole_series:  # rl-eval split=all: the test windows are the whole recording it scores
        empty = splits["train"].select(np.zeros(0, dtype=np.int64))
        splits["train"], splits["val"] = empty, empty
    channels = [f"vibration_{i}" for i in range(machine.channels)]
    return WindowData(**splits, channels=channels, scaler=scaler, files=["synthetic"])


def _with_faults(
    machine: RotatingMachine, data_cfg: DictConfig, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` windows, ``anomaly_fraction`` of them faulty (in random places), and their labels."""
    windows = machine.record(count, rng)
    labels = (rng.permutation(count) < round(count * float(data_cfg.anomaly_fraction))).astype(np.int64)
    windows[labels == 1], _ = inject_faults(windows[labels == 1], rng, data_cfg.faults)
    return windows, labels
