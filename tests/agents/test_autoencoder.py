"""The window autoencoder (rl_runner/agents/autoencoder.py): a linear one reaches the principal-component optimum."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rl_runner.data import load_data
from rl_runner.training import train
from tests.conftest import TINY_DATA, write_series


def test_linear_autoencoder_reaches_the_principal_component_optimum(tmp_path: Path) -> None:
    """With net.depth=0 the autoencoder is linear: its best reconstruction error is that of projecting onto the
    top principal components of the training windows (brute force, by SVD). Training gets close to it."""
    series = write_series(tmp_path / "series.npy", rows=1200)
    overrides = [o for o in TINY_DATA if not o.startswith(("total_steps", "eval.every"))] + [
        f"data.path={series}",
        "net.depth=0",
        "agent.bottleneck=3",
        "agent.lr=0.01",
        "agent.batch_size=64",
        "total_steps=1500",
        "eval.every=0",
        "checkpoint.every=0",
        "log.every=500",
    ]
    from rl_runner.config import compose_config

    cfg = compose_config(overrides)
    summary = train(cfg, run_dir=tmp_path / "run")
    data = load_data(cfg.data)
    train_windows = data.train.values.reshape(len(data.train), -1)
    val_windows = data.val.values.reshape(len(data.val), -1)
    mean = train_windows.mean(axis=0)
    _, _, components = np.linalg.svd(train_windows - mean, full_matrices=False)
    top = components[:3]  # [k, features]
    projected = (val_windows - mean) @ top.T @ top + mean
    optimum = float(((projected - val_windows) ** 2).mean())
    untrained = float((val_windows**2).mean())  # what a zero reconstruction scores
    assert optimum < 0.5 * untrained
    assert summary["eval/loss"] < optimum * 1.05, (summary["eval/loss"], optimum)  # measured: within 0.1%
