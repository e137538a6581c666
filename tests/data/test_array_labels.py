"""The ``array`` data source with labels (rl_runner/data/array.py): label alignment, the train/validation/test
split, folders of files, faulty validation copies and bad labelled input."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from omegaconf import DictConfig

from rl_runner.config import compose_config
from rl_runner.data import DataError, WindowData, load_data
from tests.data.helpers import WINDOW, assert_one_line_error

ROWS = 120
TRAIN_ROWS = 80
TRAIN_END = 60  # TRAIN_ROWS - floor(TRAIN_ROWS * 0.25)
ANOMALOUS_STRETCHES = [(20, 25), (65, 68), (95, 105)]  # [first, end) rows labelled 1: train, val and test parts
LABELLED = [
    "data.label_column=anomaly",
    "data.drop_columns=[changepoint]",
    f"data.train_rows={TRAIN_ROWS}",
    "data.val_fraction=0.25",
    f"data.window={WINDOW}",
]


def array_config(path: Path, *overrides: str) -> DictConfig:
    """The composed ``data=array`` group of an anogan run on ``path``, then the overrides."""
    return compose_config(["agent=anogan", "data=array", f"data.path={path}", *overrides]).data


def labelled_series(rows: int = ROWS, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """[rows, 2] features whose channel a is ``offset`` + the row index, and the 0/1 anomaly label of each row."""
    index = np.arange(rows, dtype=np.float64)
    features = np.stack([offset + index, np.round(np.sin(index / 5.0) * 3, 3)], axis=1)
    labels = np.zeros(rows, dtype=np.int64)
    for first, end in ANOMALOUS_STRETCHES:
        labels[first:end] = 1
    return features, labels


def write_labelled_csv(path: Path, features: np.ndarray, labels: np.ndarray) -> Path:
    """SKAB's layout: ';'-separated, datetime text first, then the features, ``anomaly`` and ``changepoint``."""
    changepoints = np.diff(labels, prepend=0) == 1
    lines = ["datetime;a;b;anomaly;changepoint"]
    lines += [
        f"2020-03-09 10:{i // 60:02d}:{i % 60:02d};{a!r};{b!r};{label};{int(change)}"
        for i, ((a, b), label, change) in enumerate(zip(features.tolist(), labels.tolist(), changepoints))
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def rows_of(series: np.ndarray, last_rows: np.ndarray) -> np.ndarray:
    """The raw window ending on each of ``last_rows``, as float32."""
    return np.stack([series[end - WINDOW + 1 : end + 1] for end in last_rows]).astype(np.float32)


# -------------------------------------------------------------------------------------------- label alignment
@pytest.fixture
def labelled(tmp_path: Path) -> tuple[WindowData, np.ndarray, np.ndarray]:
    features, labels = labelled_series()
    path = write_labelled_csv(tmp_path / "run.csv", features, labels)
    return load_data(array_config(path, *LABELLED, "data.scaling=none")), features, labels


def test_labels_and_dropped_columns_are_never_channels(labelled: tuple[WindowData, np.ndarray, np.ndarray]) -> None:
    """The label and dropped columns stay out of the features, and the datetime text is skipped."""
    data, _, _ = labelled
    assert data.channels == ["a", "b"]
    assert data.sample_shape == (WINDOW, 2)


def test_training_keeps_exactly_the_normal_windows_of_the_training_rows(
    labelled: tuple[WindowData, np.ndarray, np.ndarray],
) -> None:
    """Training holds every window inside rows [0, train_end) without an anomalous row, and nothing else."""
    data, features, labels = labelled
    expected_ends = [
        start + WINDOW - 1
        for start in range(0, TRAIN_END - WINDOW + 1)
        if not any(labels[row] for row in range(start, start + WINDOW))
    ]
    assert data.train.last_rows.tolist() == expected_ends
    assert data.train.last_rows.max() < TRAIN_END
    assert len(expected_ends) < TRAIN_END - WINDOW + 1
    np.testing.assert_array_equal(data.train.values, rows_of(features, data.train.last_rows))
    for end in data.train.last_rows:
        assert labels[end - WINDOW + 1 : end + 1].sum() == 0
    assert data.train.labels.tolist() == [0] * len(expected_ends)


def test_validation_windows_lie_in_the_validation_rows_labelled_by_their_last_row(
    labelled: tuple[WindowData, np.ndarray, np.ndarray],
) -> None:
    """Validation windows start at or after train_end, end before train_rows and carry their last row's label;
    a window whose last row is normal but holds an earlier anomalous row is left out (it would pass for normal
    when the threshold is chosen)."""
    data, features, labels = labelled
    expected_ends = [
        end
        for end in range(TRAIN_END + WINDOW - 1, TRAIN_ROWS)
        if labels[end] == 1 or not labels[end - WINDOW + 1 : end + 1].any()
    ]
    assert len(expected_ends) < TRAIN_ROWS - (TRAIN_END + WINDOW - 1)
    assert data.val.last_rows.tolist() == expected_ends
    assert (data.val.last_rows - WINDOW + 1).min() == TRAIN_END
    assert data.val.labels.tolist() == [int(labels[end]) for end in data.val.last_rows]
    assert set(data.val.labels.tolist()) == {0, 1}
    np.testing.assert_array_equal(data.val.values, rows_of(features, data.val.last_rows))


def test_test_windows_end_on_every_test_row_labelled_by_their_last_row(
    labelled: tuple[WindowData, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """One test window ends on each row after train_rows (the first starts before it), labelled by that row."""
    data, features, labels = labelled
    assert data.test.last_rows.tolist() == list(range(TRAIN_ROWS, ROWS))
    assert data.test.last_rows[0] - WINDOW + 1 < TRAIN_ROWS
    assert data.test.labels.tolist() == labels[TRAIN_ROWS:].tolist()
    np.testing.assert_array_equal(data.test.values, rows_of(features, data.test.last_rows))
    assert data.files == [str(tmp_path / "run.csv")]
    assert data.test.file_index.tolist() == [0] * len(data.test)


# -------------------------------------------------------------------------------------------- scaling
def test_standard_scaling_is_fitted_on_the_training_rows_only(tmp_path: Path) -> None:
    """The scaler is the mean/std of rows [0, train_end); rewriting later rows changes neither it nor training."""
    features, labels = labelled_series()
    path = write_labelled_csv(tmp_path / "run.csv", features, labels)
    before = load_data(array_config(path, *LABELLED, "data.scaling=standard"))
    mean, std = features[:TRAIN_END].mean(axis=0), features[:TRAIN_END].std(axis=0)
    np.testing.assert_allclose(before.scaler.shift, mean, rtol=1e-12)
    np.testing.assert_allclose(before.scaler.scale, std, rtol=1e-12)
    expected = (rows_of(features, before.train.last_rows) - mean) / std
    np.testing.assert_allclose(before.train.values, expected, rtol=1e-5, atol=1e-6)

    changed = features.copy()
    changed[TRAIN_END:] = changed[TRAIN_END:] * 50 - 3
    write_labelled_csv(path, changed, labels)
    after = load_data(array_config(path, *LABELLED, "data.scaling=standard"))
    np.testing.assert_array_equal(after.scaler.shift, before.scaler.shift)
    np.testing.assert_array_equal(after.scaler.scale, before.scaler.scale)
    np.testing.assert_array_equal(after.train.values, before.train.values)
    assert not np.allclose(after.test.values, before.test.values)


def test_skab_config_applies_the_benchmark_protocol(tmp_path: Path) -> None:
    """data=skab: 60-row windows, rows [0, 320) train, [320, 400) validate, the rest test; labels never features."""
    rows = 470
    features, labels = labelled_series(rows)
    labels[430:450] = 1
    path = write_labelled_csv(tmp_path / "skab.csv", features, labels)
    data = load_data(compose_config(["agent=anogan", "data=skab", f"data.path={path}", "data.scaling=none"]).data)
    assert data.channels == ["a", "b"] and data.sample_shape == (60, 2)
    normal_val = list(range(320 + 59, 400))
    assert data.val.last_rows.tolist() == normal_val + normal_val
    assert data.val.labels.tolist() == [0] * len(normal_val) + [1] * len(normal_val)
    assert data.train.last_rows.max() == 319
    assert data.test.last_rows.tolist() == list(range(400, rows))
    assert data.test.labels.tolist() == labels[400:].tolist()


# -------------------------------------------------------------------------------------------- folders
FOLDER = [f"data.window={WINDOW}", "data.train_rows=40", "data.val_fraction=0.25", "data.scaling=none"]


def test_a_folder_loads_every_file_with_its_own_rows(tmp_path: Path) -> None:
    """Each window's values are rows of the file ``files`` names, ending on its ``last_rows``; files are sorted."""
    folder = tmp_path / "runs"
    folder.mkdir()
    lengths = {"b_run.csv": 70, "c_run.csv": 60, "a_run.csv": 55}  # written out of order
    series = {}
    for offset, (name, rows) in enumerate(lengths.items(), 1):
        series[name], _ = labelled_series(rows=rows, offset=1000.0 * offset)
        write_labelled_csv(folder / name, series[name], np.zeros(rows, dtype=np.int64))
    names = sorted(lengths)
    data = load_data(array_config(folder, *FOLDER, "data.drop_columns=[anomaly,changepoint]"))
    assert data.files == [str(folder / name) for name in names]
    for split in (data.train, data.val, data.test):
        assert sorted(set(split.file_index.tolist())) == [0, 1, 2]
        expected = [rows_of(series[names[file]], split.last_rows[i : i + 1])[0] for i, file in enumerate(split.files)]
        np.testing.assert_array_equal(split.values, np.stack(expected))
    for file, name in enumerate(names):
        assert data.train.last_rows[data.train.files == file].tolist() == list(range(WINDOW - 1, 30))
        assert data.val.last_rows[data.val.files == file].tolist() == list(range(30 + WINDOW - 1, 40))
        assert data.test.last_rows[data.test.files == file].tolist() == list(range(40, lengths[name]))

    scaled = load_data(
        array_config(folder, *FOLDER, "data.drop_columns=[anomaly,changepoint]", "data.scaling=standard")
    )
    training_rows = np.concatenate([series[name][:30] for name in names])
    np.testing.assert_allclose(scaled.scaler.shift, training_rows.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaled.scaler.scale, training_rows.std(axis=0), rtol=1e-12)


def test_a_folder_file_with_other_columns_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    """A file whose columns differ from the first file's is refused by name."""
    folder = tmp_path / "runs"
    folder.mkdir()
    features, labels = labelled_series(rows=60)
    write_labelled_csv(folder / "a_run.csv", features, labels)
    odd = folder / "b_run.csv"
    odd.write_text("x;y;anomaly;changepoint\n" + "".join(f"{i};{2 * i};0;0\n" for i in range(60)))
    with pytest.raises(DataError) as error:
        load_data(array_config(folder, *FOLDER, "data.drop_columns=[anomaly,changepoint]"))
    assert_one_line_error(error, odd, "differ")


def test_a_dropped_column_missing_from_the_header_is_a_one_line_error(tmp_path: Path) -> None:
    """A typo in data.drop_columns would silently make the column it meant a feature: it is refused by name."""
    features, labels = labelled_series(rows=60)
    path = write_labelled_csv(tmp_path / "run.csv", features, labels)
    with pytest.raises(DataError) as error:
        load_data(array_config(path, "data.drop_columns=[changepiont]"))
    assert_one_line_error(error, path, "no column changepiont")


# -------------------------------------------------------------------------------------------- val_faults
def test_val_faults_add_one_labelled_faulty_copy_per_normal_validation_window(tmp_path: Path) -> None:
    """Labelled validation windows stay; each normal one gains a differing copy labelled 1 at the same row."""
    features, labels = labelled_series()
    path = write_labelled_csv(tmp_path / "run.csv", features, labels)
    plain = load_data(array_config(path, *LABELLED)).val
    faulty = load_data(array_config(path, *LABELLED, "data.val_faults=true")).val
    normal = plain.labels == 0
    originals, copies = len(plain), int(normal.sum())
    assert 0 < copies < originals
    assert len(faulty) == originals + copies
    np.testing.assert_array_equal(faulty.values[:originals], plain.values)
    assert faulty.labels[:originals].tolist() == plain.labels.tolist()
    assert faulty.labels[originals:].tolist() == [1] * copies
    assert faulty.last_rows[originals:].tolist() == plain.last_rows[normal].tolist()
    assert faulty.values.dtype == np.float32
    for copy, original in zip(faulty.values[originals:], plain.values[normal]):
        assert not np.array_equal(copy, original)


def test_val_faults_without_labels_mark_every_original_normal(tmp_path: Path) -> None:
    """Without a label column every validation window is normal (0) and gets one faulty copy (1)."""
    features, _ = labelled_series()
    path = tmp_path / "run.npy"
    np.save(path, features)
    val = load_data(array_config(path, f"data.window={WINDOW}", "data.val_faults=true")).val
    half = len(val) // 2
    assert val.labels.tolist() == [0] * half + [1] * half
    assert val.last_rows[:half].tolist() == val.last_rows[half:].tolist()


def test_val_fault_copies_are_seeded_by_fault_seed(tmp_path: Path) -> None:
    """The same fault_seed gives identical copies, another fault_seed different ones."""
    features, labels = labelled_series()
    path = write_labelled_csv(tmp_path / "run.csv", features, labels)

    def faulty_val(seed: int) -> np.ndarray:
        overrides = [*LABELLED, "data.val_faults=true", f"data.fault_seed={seed}"]
        return load_data(array_config(path, *overrides)).val.values

    np.testing.assert_array_equal(faulty_val(3), faulty_val(3))
    assert not np.array_equal(faulty_val(3), faulty_val(4))


# -------------------------------------------------------------------------------------------- bad input
def _labels_column(value: str) -> Callable[[Path], list[str]]:
    def write(path: Path) -> list[str]:
        features, labels = labelled_series()
        write_labelled_csv(path, features, labels)
        lines = path.read_text().splitlines()
        fields = lines[31].split(";")
        fields[3] = value
        lines[31] = ";".join(fields)
        path.write_text("\n".join(lines) + "\n")
        return LABELLED

    return write


def _labelled_csv(*overrides: str, rows: int = ROWS, anomalous_from: int | None = None) -> Callable[[Path], list[str]]:
    def write(path: Path) -> list[str]:
        features, labels = labelled_series(rows)
        if anomalous_from is not None:
            labels[:] = 0
            labels[anomalous_from : anomalous_from + 1] = 1
        write_labelled_csv(path, features, labels)
        return [*LABELLED, *overrides]

    return write


def _nan_feature(path: Path) -> list[str]:
    features, labels = labelled_series()
    features[44, 1] = np.nan
    write_labelled_csv(path, features, labels)
    return LABELLED


def _npy_with_label_column(path: Path) -> list[str]:
    np.save(path, labelled_series()[0])
    return ["data.label_column=anomaly", f"data.window={WINDOW}"]


def _all_training_windows_anomalous(path: Path) -> list[str]:
    features, labels = labelled_series()
    labels[WINDOW - 1 : TRAIN_END : WINDOW - 1] = 1
    write_labelled_csv(path, features, labels)
    return LABELLED


BAD_INPUTS = {
    # id: (writer returning the overrides, words the message must contain)
    "label-column-missing": (_labelled_csv("data.label_column=fault"), ["no column fault", "anomaly"]),
    "label-two": (_labels_column("2"), ["label column anomaly", "'2'", "line 32", "0 or 1"]),
    "label-yes": (_labels_column("yes"), ["label column anomaly", "'yes'", "line 32"]),
    "label-half": (_labels_column("0.5"), ["'0.5'", "line 32"]),
    "label-for-npy": (_npy_with_label_column, ["data.label_column", ".npy"]),
    "train-rows-all": (_labelled_csv(f"data.train_rows={ROWS}"), [f"data.train_rows={ROWS}", "no test rows"]),
    "train-rows-over": (_labelled_csv("data.train_rows=500"), ["data.train_rows=500", f"of its {ROWS}"]),
    "all-train-anomalous": (_all_training_windows_anomalous, ["no normal data to train on", "anomaly"]),
    "window-over-training": (_labelled_csv("data.window=61"), ["training part has 60", "data.window=61"]),
    "window-over-validation": (_labelled_csv("data.window=21"), ["validation part has 20", "data.window=21"]),
    "nan-feature": (_nan_feature, ["non-finite value nan", "line 46", "column b"]),
}


@pytest.mark.parametrize(("write", "words"), list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_labelled_input_is_a_one_line_error_naming_the_file(
    tmp_path: Path, write: Callable[[Path], list[str]], words: list[str]
) -> None:
    """Each problem is one ``data.path=<file>: <problem>`` line with the details."""
    path = tmp_path / ("run.npy" if write is _npy_with_label_column else "run.csv")
    overrides = write(path)
    with pytest.raises(DataError) as error:
        load_data(array_config(path, *overrides))
    assert_one_line_error(error, path, *words)


def test_an_empty_folder_is_a_one_line_error(tmp_path: Path) -> None:
    """A folder without .csv, .csv.gz or .npy files is refused by name."""
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.md").write_text("nothing here\n")
    with pytest.raises(DataError) as error:
        load_data(array_config(folder, f"data.window={WINDOW}"))
    assert_one_line_error(error, folder, "no .csv, .csv.gz or .npy file")
