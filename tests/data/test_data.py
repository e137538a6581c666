"""The data package's shared types (rl_runner/data/__init__.py): concatenated windows keep their file indices;
``load_data`` is the one loader, and every data error it raises is a ``DataError``."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from rl_runner.data import DataError, Windows, load_data
from tests.data.helpers import WINDOW, assert_one_line_error, waveform_config


def test_windows_concatenate_keeps_file_indices() -> None:
    """Concatenating splits keeps each part's file index; a part without one counts as file 0."""
    first = Windows(np.zeros((2, WINDOW, 1)), np.array([7, 8]), np.array([0, 1]), np.array([1, 1]))
    second = Windows(np.ones((1, WINDOW, 1)), np.array([9]), np.array([1]))
    joined = Windows.concatenate([first, second])
    assert joined.files.tolist() == [1, 1, 0] and joined.labels.tolist() == [0, 1, 1]
    assert joined.last_rows.tolist() == [7, 8, 9]


def test_the_runners_load_through_load_data() -> None:
    """Training and scoring read data through the same ``load_data`` a config check calls, so a check that passes
    it has met every data error the run could meet."""
    from rl_runner.runners import dataset, dataset_scoring

    assert dataset.load_data is load_data and dataset_scoring.load_data is load_data


def test_an_unknown_source_and_a_bad_waveform_are_data_errors() -> None:
    with pytest.raises(DataError) as error:
        load_data(OmegaConf.create({"source": "parquet"}))
    assert_one_line_error(error, None, "data.source='parquet'", "array", "waveform")
    with pytest.raises(DataError) as error:
        load_data(waveform_config("data.anomaly_fraction=1.0"))
    assert_one_line_error(error, None, "data.anomaly_fraction=1.0")


def test_waveform_channels_are_its_columns() -> None:
    data = load_data(waveform_config())
    assert data.columns_used == ["vibration_0", "vibration_1", "vibration_2"] and data.columns_skipped == {}


def test_the_data_the_config_check_read_goes_to_the_run_once_and_changed_files_are_read_again(tmp_path) -> None:
    path = tmp_path / "series.npy"
    np.save(path, np.random.default_rng(0).normal(size=(200, 2)))
    cfg = OmegaConf.merge(OmegaConf.load("conf/data/array.yaml"), {"path": str(path), "window": 16})
    del cfg["defaults"]
    checked = load_data(cfg, keep_for_run=True)  # what rl_runner.config.checks.check_data does
    assert load_data(cfg) is checked  # the run: no second read
    assert load_data(cfg) is not checked  # once only
    load_data(cfg, keep_for_run=True)
    np.save(path, np.random.default_rng(1).normal(size=(300, 2)))  # the file changed between check and run
    assert len(load_data(cfg).train) != len(checked.train)
