"""The fault injectors (rl_runner/data/faults.py): what each fault changes in a window, and how kinds are drawn."""

from __future__ import annotations

import numpy as np
import pytest

from rl_runner.data import DataError, load_data
from rl_runner.data.faults import FAULTS, amplitude, check_faults, drift, dropout, inject_faults, saturation, spike
from tests.data.helpers import assert_one_line_error, waveform_config


def hand_made_window(length: int = 32) -> np.ndarray:
    """[length, 3] float64 without a zero: a sine, a ramp and a cosine, each offset away from 0."""
    t = np.arange(length, dtype=np.float64)
    return np.stack([5 + np.sin(t / 3), 1 + t / 10, -4 + 2 * np.cos(t / 5)], axis=1)


def changed_cells(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.argwhere(before != after)


@pytest.mark.parametrize(("height", "count"), [(4.0, 1), (4.0, 2), (2.5, 5), (3.0, 100)])
def test_spike_moves_count_samples_of_one_channel_by_height_stds(height: float, count: int) -> None:
    """Exactly ``count`` samples (at most the window) of one channel move by +-height * that channel's std."""
    window = hand_made_window()
    result = spike(window.copy(), np.random.default_rng(1), height=height, count=count)
    cells = changed_cells(window, result)
    channels = set(cells[:, 1].tolist())
    assert len(channels) == 1 and len(cells) == min(count, len(window))
    channel = channels.pop()
    rows = cells[:, 0]
    np.testing.assert_allclose(np.abs(result[rows, channel] - window[rows, channel]), height * window[:, channel].std())


@pytest.mark.parametrize("length", [1, 8, 32, 50])
def test_dropout_zeroes_length_consecutive_samples_of_one_channel(length: int) -> None:
    """One channel reads exactly 0 on ``length`` (at most the window) consecutive samples; nothing else changes."""
    window = hand_made_window()
    result = dropout(window.copy(), np.random.default_rng(2), length=length)
    cells = changed_cells(window, result)
    assert len(set(cells[:, 1].tolist())) == 1
    rows = sorted(cells[:, 0].tolist())
    assert rows == list(range(rows[0], rows[0] + min(length, len(window))))
    assert (result[rows, cells[0, 1]] == 0).all()


@pytest.mark.parametrize("factor", [1.4, 0.5, 0.0])
def test_amplitude_scales_every_channel_around_its_mean(factor: float) -> None:
    """Each sample becomes mean + factor * (sample - mean), per channel; the means stay."""
    window = hand_made_window()
    mean = window.mean(axis=0)
    result = amplitude(window.copy(), np.random.default_rng(0), factor=factor)
    np.testing.assert_allclose(result, mean + factor * (window - mean), atol=1e-12)
    np.testing.assert_allclose(result.mean(axis=0), mean, atol=1e-12)


@pytest.mark.parametrize("level", [0.7, 0.3])
def test_saturation_clips_one_channel_at_level_of_its_largest_excursion(level: float) -> None:
    """One channel is clipped to mean +- level * max |sample - mean|; the others are untouched."""
    window = hand_made_window()
    result = saturation(window.copy(), np.random.default_rng(3), level=level)
    channels = set(changed_cells(window, result)[:, 1].tolist())
    assert len(channels) == 1
    channel = channels.pop()
    column = window[:, channel]
    limit = level * np.abs(column - column.mean()).max()
    expected = [min(max(value, column.mean() - limit), column.mean() + limit) for value in column]
    np.testing.assert_allclose(result[:, channel], expected, rtol=0, atol=1e-12)
    assert np.abs(result[:, channel] - column.mean()).max() == pytest.approx(limit)


def zero_crossings(signal: np.ndarray) -> np.ndarray:
    """The (linearly interpolated) times a signal crosses 0 upwards or downwards."""
    sign_change = np.nonzero(np.signbit(signal[:-1]) != np.signbit(signal[1:]))[0]
    return sign_change + signal[sign_change] / (signal[sign_change] - signal[sign_change + 1])


def test_drift_keeps_the_first_sample_and_slows_a_sinusoid() -> None:
    """Drift resamples at t - amount t^2 / 2T: the first sample stays and zero crossings spread out."""
    t = np.arange(256, dtype=np.float64)
    period, amount = 16.0, 0.5
    window = np.stack([np.sin(2 * np.pi * t / period + 0.3), np.cos(2 * np.pi * t / period)], axis=1)
    result = drift(window.copy(), np.random.default_rng(0), amount=amount)
    np.testing.assert_array_equal(result[0], window[0])
    warped = t - amount * t**2 / (2 * (len(t) - 1))
    np.testing.assert_allclose(result[:, 0], np.sin(2 * np.pi * warped / period + 0.3), atol=0.03)
    gaps = np.diff(zero_crossings(result[:, 0]))
    assert gaps[0] == pytest.approx(period / 2, rel=0.05)
    assert gaps[-1] > period / 2 / (1 - amount) * 0.9
    assert (np.diff(gaps) > -0.1).all()
    assert len(zero_crossings(result[:, 1])) < len(zero_crossings(window[:, 1]))


def test_inject_faults_draws_every_kind_uniformly_and_keeps_its_input() -> None:
    """Kinds are drawn uniformly over ``faults``; the input windows are never modified and the dtype kept."""
    faults = {"spike": {"height": 4.0, "count": 2}, "amplitude": {"factor": 1.4}, "dropout": {"length": 3}}
    windows = np.random.default_rng(0).normal(5.0, 1.0, size=(600, 16, 2)).astype(np.float32)
    untouched = windows.copy()
    faulty, kinds = inject_faults(windows, np.random.default_rng(7), faults)
    np.testing.assert_array_equal(windows, untouched)
    assert faulty.dtype == np.float32 and faulty.shape == windows.shape
    counts = np.bincount(kinds, minlength=3)
    assert counts.sum() == 600 and (np.abs(counts - 200) < 50).all(), counts
    for i in np.nonzero(kinds == 1)[0]:
        expected = amplitude(windows[i].astype(np.float64), np.random.default_rng(0), factor=1.4)
        np.testing.assert_array_equal(faulty[i], expected.astype(np.float32))
    for i in np.nonzero(kinds == 2)[0]:
        assert (faulty[i] == 0).sum() == 3
    for i in np.nonzero(kinds == 0)[0]:
        assert (faulty[i] != windows[i]).sum() == 2


def test_inject_faults_with_every_kind_uses_all_of_them() -> None:
    """With the default fault list, each of the five kinds appears over many windows."""
    faults = dict(waveform_config().faults)
    assert list(faults) == list(FAULTS)
    windows = np.random.default_rng(0).normal(size=(200, 16, 3))
    _, kinds = inject_faults(windows, np.random.default_rng(1), faults)
    assert sorted(set(kinds.tolist())) == list(range(len(FAULTS)))


def test_an_unknown_fault_is_a_value_error_listing_the_known_ones() -> None:
    """``check_faults`` and the loaders name the unknown kind and every known one."""
    with pytest.raises(DataError) as error:
        check_faults({"spike": {"height": 1.0, "count": 1}, "wobble": {}}, "data.faults")
    assert_one_line_error(error, None, "data.faults", "'wobble'", *FAULTS)
    with pytest.raises(DataError) as error:
        load_data(waveform_config("+data.faults.wobble={}"))
    assert_one_line_error(error, None, "'wobble'", *FAULTS)
