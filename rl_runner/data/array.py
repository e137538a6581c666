"""A numeric series from a ``.npy`` or ``.csv`` file (or every such file under a folder), split in time and
cut into sliding windows.

Each file's rows split in time: the first ``data.train_rows`` rows (all of them when null) are the reference
part, whose first ``1 - val_fraction`` train and whose last ``val_fraction`` validate; the rows after it are the
test part. No training or validation window crosses a boundary, so nothing held out leaks into training (a
random split of overlapping windows would). Scaling is fitted on the training rows only. With
``data.label_column`` (0/1 per row, never a feature), training keeps only windows without an anomalous row and
every other window is labelled by its last row. Every problem with a file is a ``ValueError`` of one line that
names the file.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from rl_runner.choices import Scaling
from rl_runner.data import Scaler, WindowData, Windows
from rl_runner.data.faults import check_faults, inject_faults

DELIMITERS = ",;\t"


def read_series(
    path: Path, columns: list[str], dropped: list[str] = (), label_column: str | None = None
) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """[rows, channels] float64, all finite, the channel names, and the [rows] 0/1 labels of ``label_column``.
    Without ``columns``, every numeric column except ``dropped`` (which names the label column too) is a
    channel."""
    if not path.is_file():
        raise ValueError(f"data.path={path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if columns or dropped:
            raise ValueError(
                f"data.path={path}: data.columns, data.label_column and data.drop_columns name CSV columns; "
                "a .npy has none"
            )
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
        return series, channels, None
    if suffix in (".csv", ".txt"):
        return _read_csv(path, columns, list(dropped), label_column)
    raise ValueError(f"data.path={path}: unknown file type {path.suffix!r} (use .npy or .csv)")


def _read_csv(
    path: Path, columns: list[str], dropped: list[str], label_column: str | None
) -> tuple[np.ndarray, list[str], np.ndarray | None]:
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
    # a column whose first non-empty value is a number is a data column (a datetime or label text column is
    # not); any other value in it is then an error, never a reason to drop the whole column silently
    numeric = [name for i, name in enumerate(header) if _is_numeric([_first_filled(body, i)])]
    unknown = [c for c in [*columns, *dropped] if c not in header]
    if unknown:
        raise ValueError(f"data.path={path}: no column {', '.join(unknown)}; it has {', '.join(header)}")
    if columns:
        chosen = list(columns)
    else:
        chosen = [name for name in numeric if name not in dropped]
        if not chosen:
            raise ValueError(f"data.path={path}: no numeric column" + (" besides the label" if dropped else ""))
    for name in chosen:
        index = header.index(name)
        bad = next((i for i, row in enumerate(body) if not _is_numeric([row[index]])), None)
        if bad is not None:
            raise ValueError(
                f"data.path={path}: column {name} is not numeric "
                f"({body[bad][index].strip()!r} on line {line_numbers[bad]})"
            )
    indices = [header.index(name) for name in chosen]
    series = np.array([[float(row[index]) for index in indices] for row in body], dtype=np.float64)
    _check_finite(path, series, chosen, "line", line_numbers)
    labels = (
        None
        if not label_column
        else _read_labels(path, [row[header.index(label_column)] for row in body], label_column, line_numbers)
    )
    return series, chosen, labels


def _first_filled(body: list[list[str]], column: int) -> str:
    return next((row[column] for row in body if row[column].strip()), "")


def _read_labels(path: Path, values: list[str], column: str, line_numbers: np.ndarray) -> np.ndarray:
    """0/1 labels (``1``, ``1.0``, ``0`` ...); anything else is an error naming the line."""
    labels = np.zeros(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        try:
            number = float(value)
        except ValueError:
            number = None
        if number not in (0.0, 1.0):
            raise ValueError(
                f"data.path={path}: label column {column} has {value.strip()!r} on line {line_numbers[i]} "
                f"(labels must be 0 or 1)"
            )
        labels[i] = int(number)
    return labels


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
    if len(starts) == 0:  # an empty part (rl-eval split=all trains on nothing)
        return np.zeros((0, window, rows.shape[1]), dtype=rows.dtype), starts
    view = np.lib.stride_tricks.sliding_window_view(rows, window, axis=0)  # [rows - window + 1, C, window]
    return np.ascontiguousarray(view[starts].transpose(0, 2, 1)), starts


@dataclass
class Recording:
    """One file: its rows split in time into a training part, a validation part and a test part."""

    path: Path
    series: np.ndarray  # [rows, channels] float64
    labels: np.ndarray | None  # [rows] 0/1 from data.label_column
    train_end: int  # rows [0, train_end) train
    val_end: int  # rows [train_end, val_end) validate; rows [val_end, end) test (none without data.train_rows)


def load_array_windows(
    data_cfg: DictConfig, scaler_state: dict | None = None, whole_series: bool = False
) -> WindowData:
    """The windows of one file, or of every .csv/.npy file under a folder (each split the same way; one scaler
    fitted on all their training rows). See ``conf/data/array.yaml`` for the split."""
    path = Path(str(data_cfg.path)).expanduser()
    files = _data_files(path)
    recordings, channels = [], None
    for file in files:
        recording, names = _read_recording(file, data_cfg, whole_series)
        if channels is not None and names != channels:
            raise ValueError(f"data.path={file}: columns {names} differ from {channels} of {files[0]}")
        recordings.append(recording)
        channels = names
    scaler = Scaler(len(channels))
    if scaler_state is not None:
        try:
            scaler.load_state_dict(scaler_state)
        except ValueError as error:
            raise ValueError(f"data.path={path}: {error}") from error
    elif data_cfg.scaling is Scaling.standard and not whole_series:
        scaler.fit_standard(np.concatenate([r.series[: r.train_end] for r in recordings]))
    window, stride = int(data_cfg.window), int(data_cfg.stride)
    splits: dict[str, list[Windows]] = {"train": [], "val": [], "test": []}
    for index, recording in enumerate(recordings):
        scaled = scaler.transform(recording.series)
        for name, part in _cut(recording, scaled, window, stride).items():
            if part is not None:
                part.files = np.full(len(part), index, dtype=np.int64)
                splits[name].append(part)
    train = Windows.concatenate(splits["train"])
    if not whole_series and len(train) == 0:
        raise ValueError(
            f"data.path={path}: no normal data to train on (every training window holds a row labelled anomalous "
            f"in {data_cfg.label_column})"
        )
    val = _with_val_faults(Windows.concatenate(splits["val"]), data_cfg, scaler)
    test = Windows.concatenate(splits["test"]) if splits["test"] else None
    return WindowData(train, val, channels, scaler, test=test, files=[str(file) for file in files])


def _data_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".csv", ".npy"))
        if not files:
            raise ValueError(f"data.path={path}: a folder with no .csv or .npy file")
        return files
    return [path]


def _read_recording(path: Path, data_cfg: DictConfig, whole_series: bool) -> tuple[Recording, list[str]]:
    label_column = data_cfg.label_column
    dropped = [str(name) for name in data_cfg.drop_columns] + ([str(label_column)] if label_column else [])
    columns = [str(name) for name in data_cfg.columns]
    overlap = [name for name in columns if name in dropped]
    if overlap:
        raise ValueError(f"data.columns: {overlap[0]} is also a label or dropped column")
    series, channels, labels = read_series(path, columns, dropped, label_column)
    window, rows = int(data_cfg.window), len(series)
    if whole_series:  # scoring a whole file with a trained model's scaler: every window is a test window
        _check_length(path, "series", rows, window, data_cfg)
        return Recording(path, series, labels, 0, 0), channels
    train_rows = data_cfg.train_rows
    if train_rows is not None and train_rows >= rows:
        raise ValueError(f"data.path={path}: data.train_rows={train_rows} leaves no test rows of its {rows}")
    reference = rows if train_rows is None else int(train_rows)
    train_end = reference - max(1, math.floor(reference * float(data_cfg.val_fraction)))
    _check_length(path, "training part", train_end, window, data_cfg)
    _check_length(path, "validation part", reference - train_end, window, data_cfg)
    return Recording(path, series, labels, train_end, reference), channels


def _cut(recording: Recording, scaled: np.ndarray, window: int, stride: int) -> dict[str, Windows | None]:
    """Training and validation windows lie inside their parts, their starts ``stride`` apart from the part's
    first row (no window crosses into another part); test windows end in the test part, the first on its first
    row, and may start before it, so every test row gets a score. Training keeps only windows without an
    anomalous row; the others keep their last row's label."""
    labels = recording.labels
    anomalous_rows = None if labels is None else np.concatenate([[0], np.cumsum(labels)])  # before each row
    first_test_start = max(recording.val_end - window + 1, 0)
    parts = {  # name: (first row, end row) of the rows the part's windows are cut from
        "train": (0, recording.train_end),
        "val": (recording.train_end, recording.val_end),
        "test": (first_test_start, len(recording.series)) if recording.val_end < len(recording.series) else None,
    }
    cut: dict[str, Windows | None] = {}
    for name, rows in parts.items():
        if rows is None:  # no data.train_rows: no test part
            cut[name] = None
            continue
        values, starts = windows(scaled[rows[0] : rows[1]], window, stride)
        starts = starts + rows[0]
        ends = starts + window - 1
        keep = np.ones(len(starts), dtype=bool)
        if name != "test" and labels is not None:
            clean = anomalous_rows[ends + 1] - anomalous_rows[starts] == 0
            # training: normal windows only; validation: no window labelled normal (by its last row) with an
            # anomalous row earlier in it, as it would count as normal when the threshold is chosen
            keep = clean if name == "train" else clean | (labels[ends] == 1)
        window_labels = None if labels is None else labels[ends[keep]]
        cut[name] = Windows(values[keep], ends[keep], window_labels)
    return cut


def _with_val_faults(val: Windows, data_cfg: DictConfig, scaler: Scaler) -> Windows:
    """``data.val_faults``: add a faulty copy of each normal validation window (label 1), so validation has both
    classes even when the file labels nothing there: the run's objective, never computed on test labels. The
    faults act on the recorded values (a dropout reads 0 in the file's units, not the training mean)."""
    if not data_cfg.val_faults or len(val) == 0:
        return val
    check_faults(data_cfg.faults, "data.faults")
    labels = np.zeros(len(val), dtype=np.int64) if val.labels is None else val.labels
    normal = val.select(labels == 0)
    raw = normal.values * scaler.scale + scaler.shift  # [N, window, channels]
    faulty, _ = inject_faults(raw, np.random.default_rng(int(data_cfg.fault_seed)), data_cfg.faults)
    faulty = scaler.transform(faulty.reshape(-1, faulty.shape[-1])).reshape(faulty.shape)
    copies = Windows(faulty, normal.last_rows, np.ones(len(normal), dtype=np.int64), normal.files)
    return Windows.concatenate([Windows(val.values, val.last_rows, labels, val.files), copies])


def _check_length(path: Path, part: str, rows: int, window: int, data_cfg: DictConfig) -> None:
    if rows < window:
        raise ValueError(
            f"data.path={path}: the {part} has {rows} rows, fewer than data.window={window} "
            f"(data.train_rows={data_cfg.train_rows}, data.val_fraction={data_cfg.val_fraction})"
        )
