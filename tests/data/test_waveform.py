"""The synthetic rotating machine (rl_runner/data/waveform.py): seeding, splits, labels, layout and scaling."""

from __future__ import annotations

import numpy as np
import pytest

from rl_runner.config import compose_config
from rl_runner.data import WindowData, load_data
from tests.data.helpers import SMALL_WAVEFORM, waveform_config


def split_arrays(data: WindowData) -> list[np.ndarray]:
    return [array for split in (data.train, data.val, data.test) for array in (split.values, split.last_rows)]


def test_waveform_is_seeded_by_data_seed_alone() -> None:
    """The same data.seed gives identical windows whatever the run seed; another data.seed different ones."""
    first = load_data(compose_config(["agent=anogan", "data=waveform", "seed=1", *SMALL_WAVEFORM]).data)
    again = load_data(compose_config(["agent=anogan", "data=waveform", "seed=9", *SMALL_WAVEFORM]).data)
    for one, other in zip(split_arrays(first), split_arrays(again)):
        np.testing.assert_array_equal(one, other)
    np.testing.assert_array_equal(first.val.labels, again.val.labels)
    other_seed = load_data(waveform_config("data.seed=5"))
    for split in ("train", "val", "test"):
        assert not np.allclose(getattr(first, split).values, getattr(other_seed, split).values)


@pytest.mark.parametrize("fraction", [0.5, 0.25])
def test_waveform_splits_shapes_labels_and_layout(fraction: float) -> None:
    """Train is unlabelled; val/test have round(n * anomaly_fraction) anomalies; windows lie end to end."""
    data = load_data(waveform_config(f"data.anomaly_fraction={fraction}"))
    window, channels = 64, 3
    assert data.train.values.shape == (64, window, channels)
    assert data.val.values.shape == (32, window, channels) and data.test.values.shape == (32, window, channels)
    assert data.train.labels is None
    assert data.val.labels.sum() == data.test.labels.sum() == round(32 * fraction)
    assert set(data.val.labels.tolist()) == {0, 1}
    assert data.channels == ["vibration_0", "vibration_1", "vibration_2"] and data.files == ["synthetic"]
    ends = np.concatenate([data.train.last_rows, data.val.last_rows, data.test.last_rows])
    assert ends.tolist() == [(i + 1) * window - 1 for i in range(64 + 32 + 32)]


def test_waveform_training_windows_are_standardised() -> None:
    """Standard scaling is fitted on the training windows: mean ~0 and std ~1 per channel there."""
    data = load_data(waveform_config())
    rows = data.train.values.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(rows.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(rows.std(axis=0), 1.0, atol=1e-5)
    raw = load_data(waveform_config("data.scaling=none"))
    np.testing.assert_allclose(data.scaler.shift, raw.train.values.reshape(-1, 3).mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(data.scaler.scale, raw.train.values.reshape(-1, 3).std(axis=0), rtol=1e-5)
