"""Runs without an env (rl_runner/runners/dataset.py): the dataset loop's tags, checkpoints, schedule horizon,
NaN stop, SIGTERM and resume through the command line, and scoring by rl-eval."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_runner.agents.autoencoder import WindowAutoencoder
from rl_runner.checkpoint import latest_checkpoint, list_checkpoints, load_state
from rl_runner.errors import TrainingDiverged
from rl_runner.logging import read_scalars
from rl_runner.training import train
from tests.conftest import TINY_DATA, run_cli, run_eval, train_until_sigterm, write_series


def test_dataset_run_writes_tags_checkpoints_and_run_json(tiny_data_config, tmp_path: Path) -> None:
    summary = train(tiny_data_config(), run_dir=tmp_path / "run")
    run_dir = tmp_path / "run"
    assert summary["step"] == 120 and summary["updates"] == 120 and not summary["interrupted"]
    assert summary["epochs"] == 3  # 945 training windows in batches of 16: 59 optimiser steps per epoch
    scalars = read_scalars(run_dir / "tb")
    for tag in ("loss/reconstruction", "charts/lr", "charts/sps", "charts/updates"):
        assert [s for s, _ in scalars[tag]] == [20, 40, 60, 80, 100, 120], tag
    assert [s for s, _ in scalars["eval/loss"]] == [60, 120]
    assert scalars["eval/loss"][-1][1] < scalars["eval/loss"][0][1]
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    assert {p.name for p in checkpoint.iterdir()} == {"encoder.pt", "decoder.pt", "optimizer.pt", "progress.pt"}
    progress = load_state(checkpoint, "progress")
    assert progress["clock"] == {"horizon": 120, "step": 120} and progress["loop"]["epoch"] == 3
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["env"] is None and record["data"].endswith("series.csv")
    assert record["objective"] == {"metric": "eval/loss", "direction": "min", "value": summary["eval/loss"]}
    assert record["provenance"]["versions"]["torch"] == torch.__version__
    assert record["provenance"]["git"] is None or len(record["provenance"]["git"]["commit"]) == 40


def test_schedule_horizon_is_kept_when_a_resume_raises_total_steps(tiny_data_config, tmp_path: Path, caplog) -> None:
    """The learning rate decays to zero over the budget the run started with; more steps continue at zero."""
    cfg = tiny_data_config("agent.lr_schedule=linear", "agent.lr=0.01", "total_steps=60", "checkpoint.every=0")
    train(cfg, run_dir=tmp_path)
    lr = dict(read_scalars(tmp_path / "tb")["charts/lr"])
    assert lr[20] == pytest.approx(0.01 * (1 - 9.5 / 60), rel=1e-6)  # the mean of lr(step) over steps 0..19
    time.sleep(1.1)
    longer = tiny_data_config("agent.lr_schedule=linear", "agent.lr=0.01", "total_steps=100", f"resume={tmp_path}")
    train(longer, run_dir=tmp_path)
    lr = dict(read_scalars(tmp_path / "tb")["charts/lr"])
    assert lr[80] == lr[100] == 0.0
    assert "total_steps=100 is beyond the 60 steps this run started with" in caplog.text
    assert load_state(latest_checkpoint(tmp_path / "checkpoints"), "progress")["clock"] == {"horizon": 60, "step": 100}


def test_non_finite_loss_stops_a_dataset_run_and_records_it(tiny_data_config, tmp_path: Path, monkeypatch) -> None:
    original = WindowAutoencoder.update
    calls = {"n": 0}

    def update_that_diverges(self: WindowAutoencoder, batch: torch.Tensor) -> dict:
        calls["n"] += 1
        metrics = original(self, batch)
        if calls["n"] > 70:
            metrics["loss/reconstruction"] = metrics["loss/reconstruction"] * float("inf")
        return metrics

    monkeypatch.setattr(WindowAutoencoder, "update", update_that_diverges)
    with pytest.raises(TrainingDiverged, match=r"loss/reconstruction=inf.*step_000000000060"):
        train(tiny_data_config(), run_dir=tmp_path)
    assert [c.name for c in list_checkpoints(tmp_path / "checkpoints")] == ["step_000000000060"]
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "diverged" and "loss/reconstruction=inf" in record["error"]


@pytest.mark.slow
def test_cli_dataset_run_stops_on_sigterm_resumes_and_is_scored_by_rl_eval(tmp_path: Path) -> None:
    series = write_series(tmp_path / "series.csv")
    run_dir = tmp_path / "run"
    args = [o for o in TINY_DATA if not o.startswith(("total_steps", "checkpoint.every"))]
    args += [f"data.path={series}", "total_steps=10000000", "checkpoint.every=5000000", f"hydra.run.dir={run_dir}"]
    returncode, output = train_until_sigterm(args, run_dir, seconds=2.0)
    assert returncode == 130, output
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    stopped = load_state(latest_checkpoint(run_dir / "checkpoints"), "progress")["clock"]["step"]
    assert 0 < stopped < 10000000

    resumed = run_cli(f"resume={run_dir}", f"total_steps={stopped + 40}")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and [a["status"] for a in record["attempts"]] == ["interrupted", "finished"]
    assert record["summary"]["step"] == stopped + 40

    evaluated = run_eval(str(run_dir), "device=cpu")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "225 val windows scored" in evaluated.stdout and "eval/loss" in evaluated.stdout
    scores_file = run_dir / "scores" / f"step_{stopped + 40:012d}_val.csv"
    with open(scores_file) as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 225 and rows[0]["first_row"] == "960"  # 240 validation rows, windows of 16
    assert rows[0]["last_row"] == "975" and rows[0]["file"] == str(series)
    assert np.isclose(np.mean([float(r["score"]) for r in rows]), record["summary"]["eval/loss"], rtol=1e-5)

    other = write_series(tmp_path / "other.npy", rows=300, seed=1)  # a new file, scored whole
    scored = run_eval(str(run_dir), "split=all", f"data.path={other}")
    assert scored.returncode == 0, scored.stderr
    assert "285 all windows scored" in scored.stdout  # 300 rows, windows of 16
    with open(run_dir / "scores" / f"step_{stopped + 40:012d}_all.csv") as file:
        assert [row["first_row"] for row in csv.DictReader(file)][:2] == ["0", "1"]
