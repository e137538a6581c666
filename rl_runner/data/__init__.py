"""Data sources for runs without an env: ``data.source`` -> a loader that returns windowed splits.

A loader is ``load(data_cfg, scaler_state=None, whole_series=False) -> WindowData``. Scaling is fitted on the
training split only; ``rl-eval`` passes the scaler a run was trained with, so new data is scaled the same way,
and ``whole_series=True`` makes ``test`` hold every window of the data (nothing to train on).

Splits: ``train`` holds normal windows only (what a detector learns from); ``val`` holds held-out windows for
the threshold and the run's objective (normal ones, plus labelled faulty ones where the source has them);
``test`` holds the windows the detection metrics are reported on. A window's label is the label of its last
row, and so is its score: a detector that flags a window flags the moment its last row was recorded.

``load_data`` is the one way in, for a run and for a check before a run alike: it reads and validates everything
(files, columns, values, labels, the window against each part) and every problem it finds is a ``DataError`` of
one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from rl_runner.registry import resolve_entry


class DataError(ValueError):
    """Data that cannot give the windows a run needs (a missing, unreadable or malformed file, a bad value or
    label, too few rows for the window, a data key that makes no sense): one line, ``data.path=<file>: ...`` or
    naming the ``data.`` key at fault. A ``ValueError``, so every program already reports it in one line."""


SOURCES = {
    "array": "rl_runner.data.array:load_array_windows",
    "waveform": "rl_runner.data.waveform:load_waveform_windows",
}


class Scaler:
    """Per-channel affine scaling, ``(x - shift) / scale``; the identity until fitted."""

    def __init__(self, channels: int) -> None:
        self.shift = np.zeros(channels, dtype=np.float64)
        self.scale = np.ones(channels, dtype=np.float64)

    def fit_standard(self, rows: np.ndarray) -> "Scaler":
        # A constant channel maps to 0 with scale 1: its computed std is rounding noise (~1e-17), not 0, and
        # dividing by it would send any other value of that channel to ~1e16.
        constant = np.ptp(rows, axis=0) == 0
        std = rows.std(axis=0)
        self.shift = np.where(constant, rows[0], rows.mean(axis=0))
        self.scale = np.where(constant | (std == 0), 1.0, std)
        return self

    def transform(self, rows: np.ndarray) -> np.ndarray:
        return ((rows - self.shift) / self.scale).astype(np.float32)

    def state_dict(self) -> dict:
        return {"shift": self.shift.copy(), "scale": self.scale.copy()}

    def load_state_dict(self, state: dict) -> None:
        if len(state["shift"]) != len(self.shift):
            raise DataError(f"the scaler was fitted on {len(state['shift'])} channels, the data has {len(self.shift)}")
        self.shift, self.scale = np.asarray(state["shift"]), np.asarray(state["scale"])


@dataclass
class Windows:
    """Windows of one split and where they come from."""

    values: np.ndarray  # [N, window, channels] float32, scaled with the training split's statistics
    last_rows: np.ndarray  # [N] the row (of its file) each window ends on
    labels: np.ndarray | None = None  # [N] 0 normal / 1 anomalous (the last row's label); None: unlabelled
    files: np.ndarray | None = None  # [N] index into WindowData.files; None: all from the first file

    def __len__(self) -> int:
        return len(self.values)

    @property
    def file_index(self) -> np.ndarray:
        return np.zeros(len(self), dtype=np.int64) if self.files is None else self.files

    def select(self, keep: np.ndarray) -> "Windows":
        pick = lambda array: None if array is None else array[keep]  # noqa: E731
        return Windows(self.values[keep], self.last_rows[keep], pick(self.labels), pick(self.files))

    @staticmethod
    def concatenate(parts: list["Windows"]) -> "Windows":
        labelled = all(part.labels is not None for part in parts)
        return Windows(
            values=np.concatenate([part.values for part in parts]),
            last_rows=np.concatenate([part.last_rows for part in parts]),
            labels=np.concatenate([part.labels for part in parts]) if labelled else None,
            files=np.concatenate([part.file_index for part in parts]),
        )


@dataclass
class WindowData:
    train: Windows  # normal windows only
    val: Windows  # held out from training: the threshold and the objective
    channels: list[str]
    scaler: Scaler
    test: Windows | None = None  # the windows detection metrics are reported on; None: no test part
    files: list[str] = field(default_factory=list)  # the source of each file index ("synthetic" for waveform)
    # the file columns that are not channels, each with the reason (the label column, data.drop_columns, not
    # numeric, ...); for run.json, next to ``columns_used``
    columns_skipped: dict[str, str] = field(default_factory=dict)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.val.values.shape[1:])

    @property
    def columns_used(self) -> list[str]:
        """The columns that became channels, in channel order (a .npy's are ``channel_0``, ...)."""
        return list(self.channels)


def load_data(
    data_cfg: DictConfig, scaler_state: dict | None = None, whole_series: bool = False, keep_for_run: bool = False
) -> WindowData:
    """The windowed splits of ``data_cfg`` (the ``data`` group), read and validated completely: the window length
    is ``data_cfg.window``. ``scaler_state`` (rl-eval) scales as a trained run did; ``whole_series`` makes
    ``test`` every window. Raises ``DataError`` (one line) for every problem with the data.

    ``keep_for_run`` (the config check, before anything is written): the run that follows gets what was read
    instead of reading the files again, once, if neither its config nor the files have changed meanwhile."""
    training = scaler_state is None and not whole_series
    key = (OmegaConf.to_yaml(data_cfg, resolve=True), _files_signature(data_cfg)) if training else None
    if training and _KEPT and _KEPT[0][0] == key:
        return _KEPT.pop()[1]
    try:
        loader = resolve_entry(SOURCES, data_cfg.source, "data.source")
    except ValueError as error:  # an unknown source
        raise DataError(str(error)) from error
    data = loader(data_cfg, scaler_state, whole_series)
    if keep_for_run and training:
        _KEPT[:] = [(key, data)]
    return data


def _files_signature(data_cfg: DictConfig) -> tuple:
    """What says that the files of ``data.path`` are still those read: each one's path, size and modification time."""
    path = OmegaConf.select(data_cfg, "path", throw_on_missing=False)
    if not isinstance(path, str) or path == "???":
        return ()
    root = Path(path).expanduser()
    files = sorted(root.rglob("*")) if root.is_dir() else [root]
    signature = []
    for file in files:
        try:
            stat = file.stat()
        except OSError:
            continue  # reading it says what is wrong
        signature.append((str(file), stat.st_size, stat.st_mtime_ns))
    return tuple(signature)


# The training data the config check read last, by its config and files, until the run takes it: one entry, so that
# a process checking many configs (every value of a sweep) holds one data set at a time.
_KEPT: list[tuple[tuple, WindowData]] = []
