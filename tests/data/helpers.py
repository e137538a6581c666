"""Helpers shared by the labelled-data, fault and waveform tests: their 8-row window, the small waveform
config and the one-line error check."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from rl_runner.config import compose_config

WINDOW = 8


SMALL_WAVEFORM = ["data.train_windows=64", "data.val_windows=32", "data.test_windows=32"]


def waveform_config(*overrides: str) -> DictConfig:
    """The composed ``data=waveform`` group with small window counts, then the overrides."""
    return compose_config(["agent=anogan", "data=waveform", *SMALL_WAVEFORM, *overrides]).data


def assert_one_line_error(error: pytest.ExceptionInfo, path: Path | None, *words: str) -> None:
    message = str(error.value)
    assert "\n" not in message, message
    if path is not None:
        assert message.startswith(f"data.path={path}: "), message
    for word in words:
        assert word in message, message
