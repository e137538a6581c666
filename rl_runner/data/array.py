"""A numeric series from a ``.npy`` or ``.csv`` file (or every such file under a folder), split in time and
cut into sliding windows.

Each file's rows split in time: the first ``data.train_rows`` rows (all of them when null) are the reference
part, whose first ``1 - val_fraction`` train and whose last ``val_fraction`` validate; the rows after it are the
test part. No training or validation window crosses a boundary, so nothing held out leaks into training (a
random split of overlapping windows would). Scaling is fitted on the training rows only. With
``data.label_column`` (0/1 per row, never a feature), training keeps only windows without an anomalous row and
every other window is labelled by its last row. A ``.csv.gz`` is read as the CSV it holds. Every problem with a
file is a ``DataError`` of one line that names the file.
"""

from __future__ import annotations

import csv
import gzip
import logging
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from rl_runner.choices import Scaling
from rl_runner.data import DataError, Scaler, WindowData, Windows
from rl_runner.data.faults import check_faults, inject_faults

log = logging.getLogger(__name__)

DELIMITERS = ",;\t"
CSV_SUFFIXES = (".csv", ".txt")
GZIP_SUFFIXES = (".csv.gz", ".txt.gz")
FOLDER_SUFFIXES = (".csv", ".csv.gz", ".npy")  # what a folder's files are read for (a .txt there may be notes)
GZIP_MAGIC = b"\x1f\x8b"
# control bytes no text file holds (tab, line and page breaks and DOS's end-of-file mark 0x1a are text)
CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0e-\x19\x1b-\x1f]")


@dataclass
class Series:
    """One file's values as read."""

    values: np.ndarray  # [rows, channels] float64, all finite
    channels: list[str]
    labels: np.ndarray | None  # [rows] 0/1 of the label column
    numbers: np.ndarray  # [rows] where each row is in the file, for messages: its line (a CSV) or its index (.npy)
    unit: str  # what ``numbers`` count: "line" or "row"
    skipped: dict[str, str] = field(default_factory=dict)  # the file's columns that are not channels, and why


def file_kind(path: Path) -> str:
    """``.npy``, ``.csv`` (a ``.txt`` too), ``.csv.gz`` (a ``.txt.gz`` too), or the suffix of another file."""
    name = path.name.lower()
    if name.endswith(GZIP_SUFFIXES):
        return ".csv.gz"
    suffix = path.suffix.lower()
    return ".csv" if suffix in CSV_SUFFIXES else suffix


def read_series(path: Path, columns: list[str], dropped: list[str] = (), label_column: str | None = None) -> Series:
    """The finite float64 values, the channel names and the 0/1 labels of ``label_column``. Without ``columns``,
    every numeric column except ``dropped`` (which names the label column too) is a channel."""
    if not path.is_file():
        raise DataError(f"data.path={path}: no such file")
    kind = file_kind(path)
    if kind == ".npy":
        if columns or dropped:
            raise DataError(
                f"data.path={path}: data.columns, data.label_column and data.drop_columns name CSV columns; "
                "a .npy has none"
            )
        if _read_bytes(path, 2) == GZIP_MAGIC:
            raise DataError(f"data.path={path}: a gzip-compressed file, not a .npy array: decompress it")
        try:
            series = np.load(path, allow_pickle=False)
        except Exception as error:  # np.load raises ValueError, OSError, EOFError or a tokenizer error
            reason = " ".join(str(error).split()) or type(error).__name__
            raise DataError(f"data.path={path}: not a readable .npy file ({reason})") from error
        if series.ndim == 1:
            series = series[:, None]
        real = np.issubdtype(series.dtype, np.integer) or np.issubdtype(series.dtype, np.floating)
        if series.ndim != 2 or series.shape[1] == 0 or not real:
            raise DataError(
                f"data.path={path}: expected a real-valued [rows] or [rows, channels] array, "
                f"got {series.dtype}{list(series.shape)}"
            )
        series, channels = series.astype(np.float64), [f"channel_{i}" for i in range(series.shape[1])]
        numbers = np.arange(len(series))
        _check_finite(path, series, channels, "row", numbers)
        return Series(series, channels, None, numbers, "row")
    if kind in (".csv", ".csv.gz"):
        return _read_csv(path, _read_text(path, kind == ".csv.gz"), columns, list(dropped), label_column)
    raise DataError(f"data.path={path}: unknown file type {path.suffix!r} (use .npy, .csv or .csv.gz)")


def _read_bytes(path: Path, count: int = -1) -> bytes:
    """The file's first ``count`` bytes (all of them by default)."""
    try:
        with path.open("rb") as file:
            return file.read(count)
    except OSError as error:  # a permission, a vanished file: still a problem with this file, in one line
        raise DataError(f"data.path={path}: cannot be read ({error.strerror or error})") from error


def _read_text(path: Path, compressed: bool) -> str:
    """The file's text; a gzip file or a binary one named as CSV is refused for what it is (the CSV reader would
    report a field count or a non-numeric value on some line)."""
    raw = _read_bytes(path)
    if compressed:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:  # not gzip, truncated, corrupt
            raise DataError(f"data.path={path}: not a readable gzip file ({error})") from error
    elif raw[:2] == GZIP_MAGIC:
        raise DataError(
            f"data.path={path}: a gzip-compressed file, not CSV text: decompress it or name it {path.name}.gz"
        )
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):  # a spreadsheet's "Unicode text" (UTF-16 with its byte-order mark)
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            pass  # not UTF-16 after all: judged below
    binary = DataError(
        f"data.path={path}: a binary file{' (once decompressed)' if compressed else ''}, not CSV text "
        "(save the data as CSV text)"
    )
    if CONTROL_BYTES.search(raw):  # NUL and the like: no text file holds them
        raise binary
    try:
        return raw.decode("utf-8-sig")  # -sig: a spreadsheet's byte-order mark
    except UnicodeDecodeError:
        # text in a legacy encoding (Latin-1, cp1252) is mostly ASCII: it reads as before, its odd characters
        # replaced, so that a header's degree sign does not stop a run; bytes mostly beyond ASCII are no text
        if (np.frombuffer(raw[:65536], dtype=np.uint8) >= 0x80).mean() > 0.3:
            raise binary from None
        return raw.decode("utf-8-sig", errors="replace")


def _read_csv(path: Path, text: str, columns: list[str], dropped: list[str], label_column: str | None) -> Series:
    numbered = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if len(numbered) < 2:
        raise DataError(f"data.path={path}: empty (a header row and at least one data row are needed)")
    line_numbers, lines = np.array([number for number, _ in numbered[1:]]), [line for _, line in numbered]
    delimiter = max(DELIMITERS, key=lines[0].count)
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        rows = list(reader)
    except csv.Error as error:  # a field past csv's size limit: not a ValueError, and it would keep a traceback
        raise DataError(f"data.path={path}: line {numbered[reader.line_num - 1][0]} is not CSV ({error})") from error
    header, body = [name.strip() for name in rows[0]], rows[1:]
    if any(len(row) != len(header) for row in body):
        bad = next(i for i, row in enumerate(body) if len(row) != len(header))
        raise DataError(
            f"data.path={path}: line {line_numbers[bad]} has {len(body[bad])} fields, the header has {len(header)}"
        )
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise DataError(f"data.path={path}: the header names column {', '.join(duplicated)} more than once")
    # a column whose first non-empty value is a number is a data column (a datetime or label text column is
    # not); any other value in it is then an error, never a reason to drop the whole column silently
    first_filled = [_first_filled(body, i) for i in range(len(header))]  # (row or None, value) per column
    numeric = [name for name, (_, value) in zip(header, first_filled) if _is_numeric([value])]
    unknown = [c for c in [*columns, *dropped] if c not in header]
    if unknown:
        raise DataError(f"data.path={path}: no column {', '.join(unknown)}; it has {', '.join(header)}")
    if columns:
        chosen = list(columns)
    else:
        chosen = [name for name in numeric if name not in dropped]
        if not chosen:
            raise DataError(f"data.path={path}: no numeric column" + (" besides the label" if dropped else ""))
    skipped = {}
    for name, (row, value) in zip(header, first_filled):
        if name in chosen:
            continue
        if name == label_column:
            skipped[name] = "data.label_column"
        elif name in dropped:
            skipped[name] = "in data.drop_columns"
        elif columns:
            skipped[name] = "not in data.columns"
        elif row is None:
            skipped[name] = "empty on every line"
        else:
            skipped[name] = f"not numeric ({value.strip()!r} on line {line_numbers[row]})"
    for name in chosen:
        index = header.index(name)
        bad = next((i for i, row in enumerate(body) if not _is_numeric([row[index]])), None)
        if bad is not None:
            raise DataError(
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
    return Series(series, chosen, labels, line_numbers, "line", skipped)


def _first_filled(body: list[list[str]], column: int) -> tuple[int | None, str]:
    """The first non-empty value of a column and its index in ``body``; ``(None, "")`` for an empty column."""
    return next(((i, row[column]) for i, row in enumerate(body) if row[column].strip()), (None, ""))


def _read_labels(path: Path, values: list[str], column: str, line_numbers: np.ndarray) -> np.ndarray:
    """0/1 labels (``1``, ``1.0``, ``0`` ...); anything else is an error naming the line."""
    labels = np.zeros(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        try:
            number = float(value)
        except ValueError:
            number = None
        if number not in (0.0, 1.0):
            raise DataError(
                f"data.path={path}: label column {column} has {value.strip()!r} on line {line_numbers[i]} "
                f"(labels must be 0 or 1)"
            )
        labels[i] = int(number)
    return labels


def _check_finite(path: Path, series: np.ndarray, channels: list[str], unit: str, numbers: np.ndarray) -> None:
    """Names the first NaN or inf by its ``unit`` (a .npy's row, a CSV's line) ``numbers[row]`` and channel."""
    if not np.isfinite(series).all():
        row, column = np.argwhere(~np.isfinite(series))[0]
        raise DataError(
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
    numbers: np.ndarray  # [rows] each row's line (a CSV) or index (a .npy), for messages
    unit: str  # what ``numbers`` count: "line" or "row"


def load_array_windows(
    data_cfg: DictConfig, scaler_state: dict | None = None, whole_series: bool = False
) -> WindowData:
    """The windows of one file, or of every .csv, .csv.gz or .npy file under a folder (each split the same way; one
    scaler fitted on all their training rows). See ``conf/data/array.yaml`` for the split."""
    path = Path(str(data_cfg.path)).expanduser()
    files = _data_files(path)
    recordings, channels, skipped = [], None, {}
    for file in files:
        recording, names, file_skipped = _read_recording(file, data_cfg, whole_series)
        if channels is not None and names != channels:
            raise DataError(f"data.path={file}: columns {names} differ from {channels} of {files[0]}")
        recordings.append(recording)
        channels = names
        for name, why in file_skipped.items():  # a column left out of several files keeps the first file's reason
            skipped.setdefault(name, why)
    left_out = "; ".join(f"{name} ({why})" for name, why in skipped.items()) or "none"
    log.info("data.path=%s: columns used: %s; left out: %s", path, ", ".join(channels), left_out)
    scaler = Scaler(len(channels))
    if scaler_state is not None:
        try:
            scaler.load_state_dict(scaler_state)
        except ValueError as error:
            raise DataError(f"data.path={path}: {error}") from error
    elif data_cfg.scaling is Scaling.standard and not whole_series:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, by file and column
            scaler.fit_standard(np.concatenate([r.series[: r.train_end] for r in recordings]))
        _check_scaler(scaler, recordings, channels)
    scaling = Scaling(data_cfg.scaling).value
    how = "as the run's training data" if scaler_state is not None else f"with data.scaling={scaling}"
    window, stride = int(data_cfg.window), int(data_cfg.stride)
    splits: dict[str, list[Windows]] = {"train": [], "val": [], "test": []}
    for index, recording in enumerate(recordings):
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = scaler.transform(recording.series)
        _check_scaled(recording, scaled, channels, how)
        for name, part in _cut(recording, scaled, window, stride).items():
            if part is not None:
                part.files = np.full(len(part), index, dtype=np.int64)
                splits[name].append(part)
    train = Windows.concatenate(splits["train"])
    if not whole_series and len(train) == 0:
        raise DataError(
            f"data.path={path}: no normal data to train on (every training window holds a row labelled anomalous "
            f"in {data_cfg.label_column})"
        )
    val = _with_val_faults(Windows.concatenate(splits["val"]), data_cfg, scaler)
    test = Windows.concatenate(splits["test"]) if splits["test"] else None
    files = [str(file) for file in files]
    return WindowData(train, val, channels, scaler, test=test, files=files, columns_skipped=skipped)


def _check_scaler(scaler: Scaler, recordings: list[Recording], channels: list[str]) -> None:
    """Values finite in the file can still be too large to scale: the standard deviation squares them, and past
    about 1e154 that overflows float64. The message names the largest such value, the likeliest culprit."""
    bad = ~(np.isfinite(scaler.shift) & np.isfinite(scaler.scale))
    if not bad.any():
        return
    column = int(np.flatnonzero(bad)[0])
    largest = [np.abs(r.series[: r.train_end, column]).max(initial=0.0) for r in recordings]
    recording = recordings[int(np.argmax(largest))]
    row = int(np.argmax(np.abs(recording.series[: recording.train_end, column])))
    raise DataError(
        f"data.path={recording.path}: value {float(recording.series[row, column])!r} on {recording.unit} "
        f"{recording.numbers[row]}, column {channels[column]}, is too large to scale (the training rows' standard "
        "deviation overflows): rescale the column in the file"
    )


def _check_scaled(recording: Recording, scaled: np.ndarray, channels: list[str], how: str) -> None:
    """Windows are float32: a value that scales beyond about 3.4e38 (or whose scaling overflows float64) would
    become inf and train to NaN."""
    if np.isfinite(scaled).all():
        return
    row, column = np.argwhere(~np.isfinite(scaled))[0]
    raise DataError(
        f"data.path={recording.path}: value {float(recording.series[row, column])!r} on {recording.unit} "
        f"{recording.numbers[row]}, column {channels[column]}, is too large: scaled "
        f"{how}, it overflows the windows' float32: rescale the column in the file"
    )


def _data_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(FOLDER_SUFFIXES))
        if not files:
            raise DataError(f"data.path={path}: a folder with no .csv, .csv.gz or .npy file")
        return files
    return [path]


def _read_recording(
    path: Path, data_cfg: DictConfig, whole_series: bool
) -> tuple[Recording, list[str], dict[str, str]]:
    label_column = data_cfg.label_column
    dropped = [str(name) for name in data_cfg.drop_columns] + ([str(label_column)] if label_column else [])
    columns = [str(name) for name in data_cfg.columns]
    overlap = [name for name in columns if name in dropped]
    if overlap:
        raise DataError(f"data.columns: {overlap[0]} is also a label or dropped column")
    read = read_series(path, columns, dropped, label_column)
    series, channels, labels = read.values, read.channels, read.labels
    window, rows = int(data_cfg.window), len(series)
    if whole_series:  # scoring a whole file with a trained model's scaler: every window is a test window
        _check_length(path, "series", rows, window, data_cfg)
        return Recording(path, series, labels, 0, 0, read.numbers, read.unit), channels, read.skipped
    train_rows = data_cfg.train_rows
    if train_rows is not None and train_rows >= rows:
        raise DataError(f"data.path={path}: data.train_rows={train_rows} leaves no test rows of its {rows}")
    reference = rows if train_rows is None else int(train_rows)
    train_end = reference - max(1, math.floor(reference * float(data_cfg.val_fraction)))
    _check_length(path, "training part", train_end, window, data_cfg)
    _check_length(path, "validation part", reference - train_end, window, data_cfg)
    return Recording(path, series, labels, train_end, reference, read.numbers, read.unit), channels, read.skipped


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
    with np.errstate(over="ignore", invalid="ignore"):  # a fault on values near the float limits: reported below
        raw = normal.values * scaler.scale + scaler.shift  # [N, window, channels]
        faulty, _ = inject_faults(raw, np.random.default_rng(int(data_cfg.fault_seed)), data_cfg.faults)
        faulty = scaler.transform(faulty.reshape(-1, faulty.shape[-1])).reshape(faulty.shape)
    if not np.isfinite(faulty).all():
        raise DataError(
            f"data.path={data_cfg.path}: data.val_faults: a fault injected into the validation windows overflows "
            "(values this large cannot be made faulty): rescale the data, or set data.val_faults=false"
        )
    copies = Windows(faulty, normal.last_rows, np.ones(len(normal), dtype=np.int64), normal.files)
    return Windows.concatenate([Windows(val.values, val.last_rows, labels, val.files), copies])


def _check_length(path: Path, part: str, rows: int, window: int, data_cfg: DictConfig) -> None:
    if rows < window:
        raise DataError(
            f"data.path={path}: the {part} has {rows} rows, fewer than data.window={window} "
            f"(data.train_rows={data_cfg.train_rows}, data.val_fraction={data_cfg.val_fraction})"
        )
