"""The ``array`` data source (rl_runner/data/array.py): reading .npy/.csv series, the time split, scaling,
sliding windows and input errors."""

from __future__ import annotations

import gzip
import io
import logging
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from omegaconf import DictConfig

from rl_runner.config import compose_config
from rl_runner.data import DataError, WindowData, load_data
from rl_runner.data.array import windows
from tests.conftest import write_series

WINDOW = 16


def data_config(path: Path, *overrides: str) -> DictConfig:
    """The composed ``data`` group of an autoencoder run on ``path`` with 16-row windows, then the overrides."""
    return compose_config(["agent=autoencoder", f"data.path={path}", f"data.window={WINDOW}", *overrides]).data


def split_row(rows: int, val_fraction: float = 0.2) -> int:
    """The first validation row, computed independently of the loader (at least one validation row)."""
    return rows - max(1, int(np.floor(rows * val_fraction)))


def training_rows(data: WindowData) -> np.ndarray:
    """Every training row, rebuilt from stride-1 windows: each window's first row, then the last window's rest."""
    return np.concatenate([data.train.values[:, 0], data.train.values[-1, 1:]])


def val_starts(data: WindowData) -> np.ndarray:
    """The first row of each validation window."""
    return data.val.last_rows - WINDOW + 1


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------ windows()
@pytest.mark.parametrize(
    ("rows", "window", "stride"), [(50, 1, 1), (50, 16, 1), (50, 16, 3), (50, 16, 20), (50, 50, 1), (51, 7, 5)]
)
def test_windows_match_a_brute_force_loop(rows: int, window: int, stride: int) -> None:
    """Window i is rows[i*stride : i*stride+window]; every start that fits is used, so the last one fits too."""
    series = np.random.default_rng(0).normal(size=(rows, 3))
    cut, starts = windows(series, window, stride)
    expected = [start for start in range(0, rows, stride) if start + window <= rows]
    assert starts.tolist() == expected
    assert cut.shape == (len(expected), window, 3)
    assert cut.flags.c_contiguous
    for i, start in enumerate(expected):
        np.testing.assert_array_equal(cut[i], series[start : start + window])
    assert starts[-1] + window <= rows < starts[-1] + stride + window  # the last window fits; the next would not


# -------------------------------------------------------------------------------------------- the split
@pytest.mark.parametrize(("rows", "stride", "val_fraction"), [(203, 1, 0.25), (203, 5, 0.25), (1200, 7, 0.2)])
def test_split_keeps_training_and_validation_rows_apart(
    tmp_path: Path, rows: int, stride: int, val_fraction: float
) -> None:
    """No training window reaches the split row, validation windows lie after it and val_starts index the series."""
    path = tmp_path / "series.npy"
    series = np.stack([np.arange(rows, dtype=np.float64), -np.arange(rows, dtype=np.float64)], axis=1)
    np.save(path, series)  # channel 0 holds each row's own index
    data = load_data(
        data_config(path, "data.scaling=none", f"data.stride={stride}", f"data.val_fraction={val_fraction}")
    )
    split = split_row(rows, val_fraction)
    assert data.train.values.shape[1:] == data.val.values.shape[1:] == (WINDOW, 2)
    assert data.train.values[..., 0].max() < split
    assert data.val.values[..., 0].min() >= split
    assert val_starts(data).tolist() == list(range(split, rows - WINDOW + 1, stride))
    assert data.train.values[:, 0, 0].tolist() == list(range(0, split - WINDOW + 1, stride))
    for i, start in enumerate(val_starts(data)):
        np.testing.assert_array_equal(data.val.values[i], series[start : start + WINDOW])


def test_validation_values_do_not_change_the_scaler_or_training_windows(tmp_path: Path) -> None:
    """The scaler is fitted on the training rows only: rewriting the validation part changes only ``val``."""
    path = write_series(tmp_path / "series.npy")
    before = load_data(data_config(path))
    series = np.load(path)
    split = split_row(len(series))
    series[split:] = series[split:] * 100 + 7
    np.save(path, series)
    after = load_data(data_config(path))
    np.testing.assert_array_equal(after.scaler.shift, before.scaler.shift)
    np.testing.assert_array_equal(after.scaler.scale, before.scaler.scale)
    np.testing.assert_array_equal(after.train.values, before.train.values)
    assert not np.allclose(after.val.values, before.val.values)


# -------------------------------------------------------------------------------------------- scaling
def test_standard_scaling_normalises_the_training_rows(tmp_path: Path) -> None:
    """Training rows get mean ~0 and std ~1 per channel; validation rows use the same shift and scale."""
    path = write_series(tmp_path / "series.npy")
    data = load_data(data_config(path))
    rows = training_rows(data)
    series = np.load(path)
    split = split_row(len(series))
    assert rows.dtype == data.val.values.dtype == np.float32
    assert len(rows) == split
    np.testing.assert_allclose(rows.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(rows.std(axis=0), 1.0, atol=1e-4)
    np.testing.assert_allclose(data.scaler.shift, series[:split].mean(axis=0))
    np.testing.assert_allclose(data.scaler.scale, series[:split].std(axis=0))
    expected = (series[val_starts(data)[0] : val_starts(data)[0] + WINDOW] - data.scaler.shift) / data.scaler.scale
    np.testing.assert_allclose(data.val.values[0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("value", [0.0, 0.1, 1e6 + 0.3])
def test_a_constant_channel_scales_to_zero_not_to_noise(tmp_path: Path, value: float) -> None:
    """A channel constant over the training rows maps to 0 there and stays finite and unamplified in validation
    (its float std is rounding noise such as 1e-17 rather than 0, which must not become the divisor)."""
    rows = 600
    series = np.stack([np.full(rows, value), np.random.default_rng(0).normal(size=rows)], axis=1)
    series[split_row(rows) :, 0] += 0.5  # the channel moves only in the validation part
    path = tmp_path / "series.npy"
    np.save(path, series)
    data = load_data(data_config(path))
    assert np.isfinite(data.train.values).all() and np.isfinite(data.val.values).all()
    np.testing.assert_array_equal(data.train.values[..., 0], 0.0)
    np.testing.assert_allclose(data.val.values[..., 0], 0.5, rtol=1e-4)
    assert data.scaler.scale[0] == 1.0


@pytest.mark.parametrize("as_lists", [False, True], ids=["arrays", "lists"])
def test_a_given_scaler_state_is_used_instead_of_refitting(tmp_path: Path, as_lists: bool) -> None:
    """``scaler_state`` (what rl-eval passes for new data) scales every split as the training run did."""
    trained = load_data(data_config(write_series(tmp_path / "train.npy", seed=0)))
    state = trained.scaler.state_dict()
    if as_lists:
        state = {name: value.tolist() for name, value in state.items()}
    path = tmp_path / "new.npy"
    new_series = np.load(write_series(path, seed=1)) * 3 + 5
    np.save(path, new_series)
    data = load_data(data_config(path), scaler_state=state)
    np.testing.assert_allclose(data.scaler.shift, trained.scaler.shift)
    np.testing.assert_allclose(data.scaler.scale, trained.scaler.scale)
    split = split_row(len(new_series))
    expected = (new_series[:split] - trained.scaler.shift) / trained.scaler.scale
    np.testing.assert_allclose(training_rows(data), expected, rtol=1e-5, atol=1e-5)
    assert abs(training_rows(data).mean()) > 1  # not refitted, or the mean would be ~0


def test_a_scaler_state_for_other_channels_is_a_one_line_error(tmp_path: Path) -> None:
    """A scaler fitted on 3 channels cannot scale 2-channel data; the error names the file and both counts."""
    path = write_series(tmp_path / "series.npy")
    state = {"shift": np.zeros(3), "scale": np.ones(3)}
    with pytest.raises(DataError) as info:
        load_data(data_config(path), scaler_state=state)
    message = str(info.value)
    assert message.startswith(f"data.path={path}: ") and "\n" not in message
    assert "3 channels" in message and "has 2" in message


def test_scaling_none_keeps_the_raw_values(tmp_path: Path) -> None:
    """``data.scaling=none`` leaves the identity scaler: windows are the file's values as float32."""
    path = write_series(tmp_path / "series.npy")
    data = load_data(data_config(path, "data.scaling=none"))
    series = np.load(path)
    np.testing.assert_array_equal(data.scaler.shift, 0.0)
    np.testing.assert_array_equal(data.scaler.scale, 1.0)
    np.testing.assert_array_equal(training_rows(data), series[: split_row(len(series))].astype(np.float32))


# -------------------------------------------------------------------------------------------- file formats
@pytest.mark.parametrize("delimiter", [";", ",", "\t"], ids=["semicolon", "comma", "tab"])
def test_csv_delimiters_and_a_skipped_datetime_column(tmp_path: Path, delimiter: str) -> None:
    """A CSV with ';', ',' or tab separators reads the same; the datetime column is skipped."""
    series = np.random.default_rng(0).normal(size=(100, 2))
    lines = [delimiter.join(["datetime", "vibration", "pressure"])]
    lines += [
        delimiter.join([f"2020-01-01 00:{i // 60:02d}:{i % 60:02d}", repr(float(a)), repr(float(b))])
        for i, (a, b) in enumerate(series)
    ]
    path = write_csv(tmp_path / "series.csv", "\n".join(lines) + "\n")
    data = load_data(data_config(path, "data.scaling=none", "data.stride=1"))
    assert data.channels == ["vibration", "pressure"]
    np.testing.assert_array_equal(training_rows(data), series[: split_row(100)].astype(np.float32))


def test_csv_and_npy_of_the_same_series_load_the_same(tmp_path: Path) -> None:
    """conftest's ';' CSV (SKAB's layout) and its .npy twin give identical windows, scaler and val_starts."""
    from_csv = load_data(data_config(write_series(tmp_path / "series.csv"), "data.stride=3"))
    from_npy = load_data(data_config(write_series(tmp_path / "series.npy"), "data.stride=3"))
    assert from_csv.channels == ["vibration", "pressure"]
    assert from_npy.channels == ["channel_0", "channel_1"]
    np.testing.assert_array_equal(from_csv.train.values, from_npy.train.values)
    np.testing.assert_array_equal(from_csv.val.values, from_npy.val.values)
    np.testing.assert_array_equal(val_starts(from_csv), val_starts(from_npy))
    np.testing.assert_array_equal(from_csv.scaler.shift, from_npy.scaler.shift)


@pytest.mark.parametrize(
    ("columns", "order"), [("[pressure,vibration]", [1, 0]), ("[pressure]", [1]), ("[vibration]", [0])]
)
def test_data_columns_picks_and_orders_csv_columns(tmp_path: Path, columns: str, order: list[int]) -> None:
    """``data.columns`` selects CSV columns by header name, in the order given."""
    path = write_series(tmp_path / "series.csv", rows=200)
    every = load_data(data_config(path, "data.scaling=none"))
    picked = load_data(data_config(path, "data.scaling=none", f"data.columns={columns}"))
    assert picked.channels == [every.channels[i] for i in order]
    np.testing.assert_array_equal(picked.train.values, every.train.values[..., order])
    assert picked.sample_shape == (WINDOW, len(order))


@pytest.mark.parametrize("shape", [(300,), (300, 1), (300, 4)])
def test_npy_one_and_two_dimensional(tmp_path: Path, shape: tuple[int, ...]) -> None:
    """A [rows] .npy is one channel, a [rows, channels] one has a channel per column; integers are accepted."""
    path = tmp_path / "series.npy"
    series = np.arange(np.prod(shape)).reshape(shape)
    np.save(path, series)
    data = load_data(data_config(path, "data.scaling=none"))
    channels = shape[1] if len(shape) == 2 else 1
    assert data.channels == [f"channel_{i}" for i in range(channels)]
    assert data.sample_shape == (WINDOW, channels)
    np.testing.assert_array_equal(data.train.values[0], series.reshape(300, channels)[:WINDOW])


def test_csv_with_a_byte_order_mark_and_an_upper_case_suffix(tmp_path: Path) -> None:
    """A spreadsheet's UTF-8 BOM is not part of the first column's name, and ``.CSV`` is a CSV."""
    body = "".join(f"{i},{2 * i}\n" for i in range(100))
    path = tmp_path / "SERIES.CSV"
    path.write_bytes(("a,b\n" + body).encode("utf-8-sig"))
    data = load_data(data_config(path, "data.scaling=none", "data.columns=[a]"))
    assert data.channels == ["a"]
    np.testing.assert_array_equal(data.train.values[0, :, 0], np.arange(WINDOW))


# -------------------------------------------------------------------------------------------- bad input
def _npy(array: np.ndarray) -> Callable[[Path], None]:
    return lambda path: np.save(path, array)


def _text(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text)


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _truncated_npy(path: Path) -> None:
    np.save(path, np.arange(100.0))
    path.write_bytes(path.read_bytes()[:150])


def _skab_csv(path: Path) -> None:
    write_series(path, rows=100)


def _nothing(path: Path) -> None:
    pass


def _inf_npy() -> np.ndarray:
    series = np.zeros((100, 2))
    series[5, 1] = np.inf
    return series


def _huge_csv(value: str, row: int) -> Callable[[Path], None]:
    """100 rows of columns a and b (line 2 is row 0), with ``value`` as b on ``row``: 80 rows train and validate."""
    b = [repr(float(x)) for x in np.sin(np.arange(100) / 5.0)]
    b[row] = value
    return _text("a;b\n" + "".join(f"{i};{x}\n" for i, x in enumerate(b)))


def _huge_npy() -> np.ndarray:
    series = np.random.default_rng(0).normal(size=(100, 2))
    series[5, 1] = 1e308
    return series


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()  # np.save to a path would append .npy to its name
    np.save(buffer, array)
    return buffer.getvalue()


def _gzip(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(gzip.compress(data))


SERIES_CSV = b"a;b\n" + b"".join(b"%d;%d\n" % (i, 2 * i) for i in range(100))


BAD_INPUTS = {
    # id: (file name, writer, overrides, words the message must contain)
    "missing": ("series.csv", _nothing, [], ["no such file"]),
    "empty-csv": ("series.csv", _text(""), [], ["empty"]),
    "blank-csv": ("series.csv", _text("\n \n"), [], ["empty"]),
    "header-only": ("series.csv", _text("a;b\n"), [], ["empty"]),
    "wrong-field-count": ("series.csv", _text("a;b\n1;2\n\n3\n"), [], ["line 4 has 1 fields", "header has 2"]),
    "unknown-column": ("series.csv", _skab_csv, ["data.columns=[vibration,nope]"], ["no column nope", "pressure"]),
    "non-numeric-column": ("series.csv", _skab_csv, ["data.columns=[datetime]"], ["datetime is not numeric", "line 2"]),
    "non-numeric-value": ("series.csv", _text("a;b\n1;2\n3;x\n"), ["data.columns=[b]"], ["b is not numeric", "'x'"]),
    "garbled-value": ("series.csv", _text("t;a;b\nx;1;2\ny;3;?\n"), [], ["b is not numeric", "'?' on line 3"]),
    "duplicate-header": ("series.csv", _text("a;b;a\n1;2;3\n"), [], ["names column a more than once"]),
    "no-numeric-column": ("series.csv", _text("name;kind\nx;y\nz;w\n"), [], ["no numeric column"]),
    "nan-in-csv": ("series.csv", _text("a;b\n1;2\n\n3;nan\n"), [], ["non-finite value nan", "line 4", "column b"]),
    "inf-in-npy": ("series.npy", _npy(_inf_npy()), [], ["non-finite value inf", "row 5", "channel_1"]),
    "window-over-training": ("series.npy", _npy(np.zeros(100)), ["data.val_fraction=0.9"], ["training part has 10"]),
    "window-over-validation": ("series.npy", _npy(np.zeros(50)), [], ["validation part has 10", "data.window=16"]),
    "unknown-suffix": ("series.parquet", _text("a\n1\n"), [], ["unknown file type '.parquet'"]),
    "npy-3-dims": ("series.npy", _npy(np.zeros((4, 5, 6))), [], ["[rows, channels]", "float64[4, 5, 6]"]),
    "npy-no-channels": ("series.npy", _npy(np.zeros((100, 0))), [], ["[rows, channels]", "[100, 0]"]),
    "npy-complex": ("series.npy", _npy(np.ones(100, dtype=complex)), [], ["real-valued", "complex128"]),
    "npy-with-columns": ("series.npy", _npy(np.zeros(100)), ["data.columns=[a]"], ["data.columns", "CSV columns"]),
    "npy-empty-file": ("series.npy", _bytes(b""), [], ["not a readable .npy file"]),
    "npy-garbage": ("series.npy", _bytes(b"not an array at all"), [], ["not a readable .npy file"]),
    "npy-truncated": ("series.npy", _truncated_npy, [], ["not a readable .npy file"]),
    "npy-bad-header": ("series.npy", _bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8',\n  }"), [], [".npy file"]),
    # finite in the file, yet too large for the scaling or for the float32 windows: NaN losses, once trained
    "huge-in-training": ("series.csv", _huge_csv("1e308", 3), [], ["1e+308 on line 5, column b", "too large to scale"]),
    "huge-in-validation": ("series.csv", _huge_csv("1e308", 90), [], ["on line 92, column b", "too large", "float32"]),
    "float32-overflow": ("series.csv", _huge_csv("1e39", 90), [], ["1e+39 on line 92", "float32"]),
    "huge-unscaled": ("series.csv", _huge_csv("1e300", 3), ["data.scaling=none"], ["1e+300 on line 5", "float32"]),
    "huge-npy": ("series.npy", _npy(_huge_npy()), [], ["1e+308 on row 5, column channel_1", "too large"]),
    # what a file really is, rather than a field count or a non-numeric value on some line
    "gzip-named-csv": ("series.csv", _gzip(SERIES_CSV), [], ["gzip-compressed file, not CSV text", "series.csv.gz"]),
    "gzip-named-npy": ("series.npy", _gzip(b"\x93NUMPY"), [], ["gzip-compressed file, not a .npy array"]),
    "corrupt-csv-gz": ("series.csv.gz", _bytes(b"\x1f\x8b\x08\x00garbage"), [], ["not a readable gzip file"]),
    "truncated-csv-gz": ("series.csv.gz", _bytes(gzip.compress(SERIES_CSV)[:40]), [], ["not a readable gzip file"]),
    "binary-csv-gz": ("series.csv.gz", _gzip(b"\x00\x01" * 50), [], ["binary file (once decompressed), not CSV"]),
    "npy-named-csv": ("series.csv", _bytes(_npy_bytes(np.zeros(100))), [], ["a binary file, not CSV text"]),
    "zip-named-csv": ("series.csv", _bytes(b"PK\x03\x04\x14\x00\x06\x00" + bytes(200)), [], ["binary file"]),
    "not-utf8-at-all": ("series.csv", _bytes(bytes(range(0x80, 0x100)) * 40), [], ["a binary file, not CSV text"]),
    "huge-field": ("series.csv", _text("a;b\n1;2\n3;" + "9" * 200_000 + "\n"), [], ["line 3 is not CSV", "limit"]),
}


@pytest.mark.parametrize(("name", "write", "overrides", "words"), list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_is_a_one_line_error_naming_the_file(
    tmp_path: Path, name: str, write: Callable[[Path], None], overrides: list[str], words: list[str]
) -> None:
    """Every problem with the file is one DataError (a ValueError) line, ``data.path=<file>: <problem>``, with the
    details."""
    path = tmp_path / name
    write(path)
    with warnings.catch_warnings(), pytest.raises(DataError) as info:
        warnings.simplefilter("error", RuntimeWarning)  # the error, and no NumPy overflow warning beside it
        load_data(data_config(path, *overrides))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"data.path={path}: ")
    for word in words:
        assert word in message, message


def test_a_value_too_large_for_the_run_s_scaler_is_refused(tmp_path: Path) -> None:
    """rl-eval's new data is scaled with the trained run's scaler: a value that overflows it is refused too."""
    state = load_data(data_config(write_series(tmp_path / "train.npy"))).scaler.state_dict()
    path = tmp_path / "new.csv"
    _huge_csv("1e308", 3)(path)
    with warnings.catch_warnings(), pytest.raises(DataError) as info:
        warnings.simplefilter("error", RuntimeWarning)
        load_data(data_config(path), scaler_state=state)
    message = str(info.value)
    assert message.startswith(f"data.path={path}: ") and "\n" not in message
    assert "line 5, column b" in message and "as the run's training data" in message


def test_a_bad_file_inside_a_folder_is_named(tmp_path: Path) -> None:
    """Every file of a folder is read and checked: the message names the bad one, not the folder."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    write_series(folder / "good.csv", rows=200)
    bad = folder / "bad.csv"
    bad.write_bytes(gzip.compress((folder / "good.csv").read_bytes()))
    with pytest.raises(DataError) as info:
        load_data(data_config(folder))
    assert str(info.value).startswith(f"data.path={bad}: a gzip-compressed file, not CSV text")


# -------------------------------------------------------------------------------------------- text encodings
def test_a_csv_gz_reads_as_the_csv_it_holds(tmp_path: Path) -> None:
    """``.csv.gz`` is decompressed on reading, alone or in a folder, with the same lines, windows and scaler."""
    plain = write_series(tmp_path / "series.csv", rows=200)
    packed = tmp_path / "series.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    expected, got = load_data(data_config(plain)), load_data(data_config(packed))
    assert got.channels == expected.channels == ["vibration", "pressure"]
    np.testing.assert_array_equal(got.train.values, expected.train.values)
    np.testing.assert_array_equal(got.val.values, expected.val.values)
    folder = tmp_path / "folder"
    folder.mkdir()
    packed.rename(folder / "0.csv.gz")
    write_series(folder / "1.csv", rows=200)
    assert load_data(data_config(folder)).files == [str(folder / "0.csv.gz"), str(folder / "1.csv")]


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16"])
def test_text_in_other_encodings_still_reads(tmp_path: Path, encoding: str) -> None:
    """A Latin-1 header is text, not a binary file (its odd character is replaced, as before); a spreadsheet's
    UTF-16 "Unicode text" (with its byte-order mark) reads as the text it is."""
    path = tmp_path / "series.csv"
    path.write_bytes(("flow;temp °C\n" + "".join(f"{i};{i % 7}\n" for i in range(100))).encode(encoding))
    data = load_data(data_config(path, "data.scaling=none"))
    assert data.channels == ["flow", "temp °C" if encoding == "utf-16" else "temp \ufffdC"]
    np.testing.assert_array_equal(data.train.values[0, :, 0], np.arange(WINDOW))


# -------------------------------------------------------------------------------------------- columns used
def test_the_columns_used_and_left_out_are_logged_and_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Without ``data.columns`` a text column is left out: ``columns_used`` and ``columns_skipped`` (for run.json)
    and one log line say which columns became channels, and why each other one did not."""
    lines = ["time;a;note;b;spare;fault;stage"]
    lines += [f"2020-01-01 00:00:{i % 60:02d};{i};{'ok' if i else ''};{i % 5};;0;{i % 3}" for i in range(100)]
    path = write_csv(tmp_path / "series.csv", "\n".join(lines) + "\n")
    caplog.set_level(logging.INFO, logger="rl_runner.data.array")
    data = load_data(data_config(path, "data.label_column=fault", "data.drop_columns=[stage]"))
    assert data.columns_used == data.channels == ["a", "b"]
    assert data.columns_skipped == {
        "time": "not numeric ('2020-01-01 00:00:00' on line 2)",
        "note": "not numeric ('ok' on line 3)",
        "spare": "empty on every line",
        "fault": "data.label_column",
        "stage": "in data.drop_columns",
    }
    (record,) = [r for r in caplog.records if r.name == "rl_runner.data.array"]
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        f"data.path={path}: columns used: a, b; left out: time (not numeric ('2020-01-01 00:00:00' on line 2)); "
        "note (not numeric ('ok' on line 3)); spare (empty on every line); fault (data.label_column); "
        "stage (in data.drop_columns)"
    )
    picked = load_data(data_config(path, "data.columns=[b]", "data.label_column=fault"))
    assert picked.columns_used == ["b"]
    assert picked.columns_skipped == {
        "time": "not in data.columns",
        "a": "not in data.columns",
        "note": "not in data.columns",
        "spare": "not in data.columns",
        "fault": "data.label_column",
        "stage": "not in data.columns",
    }


def test_a_npy_uses_every_channel(tmp_path: Path) -> None:
    data = load_data(data_config(write_series(tmp_path / "series.npy")))
    assert data.columns_used == ["channel_0", "channel_1"] and data.columns_skipped == {}
