"""A numeric series from a ``.npy`` or ``.csv`` file, split in time and cut into sliding windows.

The series' first ``1 - val_fraction`` of rows train, its last ``val_fraction`` evaluate; no window
crosses the boundary, so nothing of the validation part leaks into training (a random split of
overlapping windows would). Scaling is fitted on the training rows only. Every problem with the file is
a ``ValueError`` of one line that names the file.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from rl_runner.config import Scaling
from rl_runner.data import Scaler, WindowData

DELIMITERS = ",;\t"


def read_series(path: Path, columns: list[str]) -> tuple[np.ndarray, list[str]]:
    """[rows, channels] float64 and the channel names."""
    if not path.is_file():
        raise ValueError(f"data.path={path}: no such file")
    if path.suffix == ".npy":
        if columns:
            raise ValueError(f"data.path={path}: data.columns selects CSV columns; a .npy file has none")
        try:
            series = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise ValueError(f"data.path={path}: not a readable .npy file ({error})") from error
        if series.ndim == 1:
            series = series[:, None]
        if series.ndim != 2 or not np.issubdtype(series.dtype, np.number):
            raise ValueError(f"data.path={path}: expected a numeric [rows] or [rows, channels] array, got {series.dtype}{list(series.shape)}")
        return series.astype(np.float64), [f"channel_{i}" for i in range(series.shape[1])]
    if path.suffix in (".csv", ".txt"):
        return _read_csv(path, columns)
    raise ValueError(f"data.path={path}: unknown file type {path.suffix!r} (use .npy or .csv)")


def _read_csv(path: Path, columns: list[str]) -> tuple[np.ndarray, list[str]]:
    text = path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise ValueError(f"data.path={path}: empty (a header row and at least one data row are needed)")
    delimiter = max(DELIMITERS, key=lines[0].count)
    rows = list(csv.reader(lines, delimiter=delimiter))
    header, body = [name.strip() for name in rows[0]], rows[1:]
    if any(len(row) != len(header) for row in body):
        bad = next(i for i, row in enumerate(body) if len(row) != len(header))
        raise ValueError(f"data.path={path}: row {bad + 2} has {len(body[bad])} fields, the header has {len(header)}")
    numeric = {name: i for i, name in enumerate(header) if _is_numeric([row[i] for row in body])}
    if columns:
        unknown = [c for c in columns if c not in header]
        if unknown:
            raise ValueError(f"data.path={path}: no column {', '.join(unknown)}; it has {', '.join(header)}")
        not_numeric = [c for c in columns if c not in numeric]
        if not_numeric:
            raise ValueError(f"data.path={path}: column {', '.join(not_numeric)} is not numeric")
        chosen = list(columns)
    else:
        chosen = list(numeric)
        if not chosen:
            raise ValueError(f"data.path={path}: no numeric column")
    series = np.array([[float(row[numeric[name]]) for name in chosen] for row in body], dtype=np.float64)
    return series, chosen


def _is_numeric(values: list[str]) -> bool:
    try:
        for value in values:
            float(value)
    except ValueError:
        return False
    return True


def windows(rows: np.ndarray, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """[N, window, channels] windows of consecutive rows every ``stride`` rows, and their start rows."""
    starts = np.arange(0, len(rows) - window + 1, stride)
    view = np.lib.stride_tricks.sliding_window_view(rows, window, axis=0)  # [rows - window + 1, C, window]
    return np.ascontiguousarray(view[starts].transpose(0, 2, 1)), starts


def load_array_windows(data_cfg: DictConfig, scaler_state: dict | None = None) -> WindowData:
    path = Path(str(data_cfg.path)).expanduser()
    series, channels = read_series(path, list(data_cfg.columns))
    if not np.isfinite(series).all():
        row, column = np.argwhere(~np.isfinite(series))[0]
        raise ValueError(f"data.path={path}: non-finite value {series[row, column]} at row {row}, {channels[column]}")
    window, stride = int(data_cfg.window), int(data_cfg.stride)
    split = len(series) - max(1, math.floor(len(series) * float(data_cfg.val_fraction)))
    train_rows, val_rows = series[:split], series[split:]
    for name, part in (("training", train_rows), ("validation", val_rows)):
        if len(part) < window:
            raise ValueError(
                f"data.path={path}: the {name} part has {len(part)} rows, fewer than data.window={window} "
                f"({len(series)} rows, data.val_fraction={data_cfg.val_fraction})"
            )
    scaler = Scaler(series.shape[1])
    if scaler_state is not None:
        scaler.load_state_dict(scaler_state)
    elif data_cfg.scaling is Scaling.standard:
        scaler.fit_standard(train_rows)
    train, _ = windows(scaler.transform(train_rows), window, stride)
    val, val_starts = windows(scaler.transform(val_rows), window, stride)
    return WindowData(train=train, val=val, val_starts=val_starts + split, channels=channels, scaler=scaler)
