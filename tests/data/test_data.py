"""The data package's shared types (rl_runner/data/__init__.py): concatenated windows keep their file indices."""

from __future__ import annotations

import numpy as np

from rl_runner.data import Windows
from tests.data.helpers import WINDOW


def test_windows_concatenate_keeps_file_indices() -> None:
    """Concatenating splits keeps each part's file index; a part without one counts as file 0."""
    first = Windows(np.zeros((2, WINDOW, 1)), np.array([7, 8]), np.array([0, 1]), np.array([1, 1]))
    second = Windows(np.ones((1, WINDOW, 1)), np.array([9]), np.array([1]))
    joined = Windows.concatenate([first, second])
    assert joined.files.tolist() == [1, 1, 0] and joined.labels.tolist() == [0, 1, 1]
    assert joined.last_rows.tolist() == [7, 8, 9]
