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
    """[rows, channels] float64, all finite, and the channel names."""
    if not path.is_file():
        raise ValueError(f"data.path={path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if columns:
            raise ValueError(f"data.path={path}: data.columns selects CSV columns; a .npy file has none")
        try:
            series = np.load(path, allow_pickle=False)
        except Exception as error:  # np.load raises ValueError, OSError, EOFError or a tokenizer error
            reason = " ".join(str(error).split()) or type(error).__name__
            raise ValueError(f"data.path={path}: not a readable .npy file ({reason})") from error
        if series.ndim == 1:
            series = series[:, None]
        real = np.issubdtype(series.dtype, np.integer) or np.issubdtype(series.dtype, np.floating)
        if series.ndim != 2 or series.shape[1] == 0 or not real:
            raise ValueError(
                f"data.path={path}: expected a real-valued [rows] or [rows, channels] array, "
                f"got {series.dtype}{list(series.shape)}"
            )
        series, channels = series.astype(np.float64), [f"channel_{i}" for i in range(series.shape[1])]
        _check_finite(path, series, channels, "row", np.arange(len(series)))
        return series, channels
    if suffix in (".csv", ".txt"):
        return _read_csv(path, columns)
    raise ValueError(f"data.path={path}: unknown file type {path.suffix!r} (use .npy or .csv)")


def _read_csv(path: Path, columns: list[str]) -> tuple[np.ndarray, list[str]]:
    text = path.read_text(encoding="utf-8-sig", errors="replace")  # -sig: a spreadsheet's byte-order mark
    numbered = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if len(numbered) < 2:
        raise ValueError(f"data.path={path}: empty (a header row and at least one data row are needed)")
    line_numbers, lines = np.array([number for number, _ in numbered[1:]]), [line for _, line in numbered]
    delimiter = max(DELIMITERS, key=lines[0].count)
    rows = list(csv.reader(lines, delimiter=delimiter))
    header, body = [name.strip() for name in rows[0]], rows[1:]
    if any(len(row) != len(header) for row in body):
        bad = next(i for i, row in enumerate(body) if len(row) != len(header))
        raise ValueError(
            f"data.path={path}: line {line_numbers[bad]} has {len(body[bad])} fields, the header has {len(header)}"
        )
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise ValueError(f"data.path={path}: the header names column {', '.join(duplicated)} more than once")
    # a column whose first value is a number is a data column (a datetime or label text column is not); a
    # later value that is not a number is then an error, never a reason to drop the whole column silently
    numeric = {name: i for i, name in enumerate(header) if _is_numeric([body[0][i]])}
    if columns:
        unknown = [c for c in columns if c not in header]
        if unknown:
            raise ValueError(f"data.path={path}: no column {', '.join(unknown)}; it has {', '.join(header)}")
        chosen = list(columns)
    else:
        chosen = list(numeric)
        if not chosen:
            raise ValueError(f"data.path={path}: no numeric column")
    for name in chosen:
        index = header.index(name)
        bad = next((i for i, row in enumerate(body) if not _is_numeric([row[index]])), None)
        if bad is not None:
            raise ValueError(
                f"data.path={path}: column {name} is not numeric "
                f"({body[bad][index].strip()!r} on line {line_numbers[bad]})"
            )
    numeric = {name: header.index(name) for name in chosen}
    series = np.array([[float(row[numeric[name]]) for name in chosen] for row in body], dtype=np.float64)
    _check_finite(path, series, chosen, "line", line_numbers)
    return series, chosen


def _check_finite(path: Path, series: np.ndarray, channels: list[str], unit: str, numbers: np.ndarray) -> None:
    """Names the first NaN or inf by its ``unit`` (a .npy's row, a CSV's line) ``numbers[row]`` and channel."""
    if not np.isfinite(series).all():
        row, column = np.argwhere(~np.isfinite(series))[0]
        raise ValueError(
            f"data.path={path}: non-finite value {series[row, column]} on {unit} {numbers[row]}, "
            f"column {channels[column]}"
        )


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


def load_array_windows(
    data_cfg: DictConfig, scaler_state: dict | None = None, whole_series: bool = False
) -> WindowData:
    path = Path(str(data_cfg.path)).expanduser()
    series, channels = read_series(path, list(data_cfg.columns))
    window, stride = int(data_cfg.window), int(data_cfg.stride)
    scaler = Scaler(series.shape[1])
    if scaler_state is not None:
        try:
            scaler.load_state_dict(scaler_state)
        except ValueError as error:
            raise ValueError(f"data.path={path}: {error}") from error
    if whole_series:  # scoring a whole file with a trained model's scaler: no split, nothing to train on
        _check_length(path, "series", len(series), window, data_cfg)
        every, starts = windows(scaler.transform(series), window, stride)
        empty = np.empty((0, *every.shape[1:]), dtype=np.float32)
        return WindowData(train=empty, val=every, val_starts=starts, channels=channels, scaler=scaler)
    split = len(series) - max(1, math.floor(len(series) * float(data_cfg.val_fraction)))
    train_rows, val_rows = series[:split], series[split:]
    _check_length(path, "training part", len(train_rows), window, data_cfg)
    _check_length(path, "validation part", len(val_rows), window, data_cfg)
    if scaler_state is None and data_cfg.scaling is Scaling.standard:
        scaler.fit_standard(train_rows)
    train, _ = windows(scaler.transform(train_rows), window, stride)
    val, val_starts = windows(scaler.transform(val_rows), window, stride)
    return WindowData(train=train, val=val, val_starts=val_starts + split, channels=channels, scaler=scaler)


def _check_length(path: Path, part: str, rows: int, window: int, data_cfg: DictConfig) -> None:
    if rows < window:
        raise ValueError(
            f"data.path={path}: the {part} has {rows} rows, fewer than data.window={window} "
            f"(data.val_fraction={data_cfg.val_fraction})"
        )
