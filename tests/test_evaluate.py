"""rl-eval (rl_runner/evaluate.py): a named or the latest checkpoint, and checkpoints or options it refuses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from rl_runner.checkpoint import latest_checkpoint
from tests.conftest import REPO_ROOT, SMALL_PENDULUM, cli, one_error_line, run_eval, small_run


def test_rl_eval_reports_a_named_or_the_latest_checkpoint(tmp_path: Path) -> None:
    from rl_runner.evaluate import evaluate_run

    args = [
        *SMALL_PENDULUM,
        "total_steps=200",
        "eval.every=0",
        "eval.episodes=0",
        "checkpoint.every=100",
        f"hydra.run.dir={tmp_path}",
    ]
    assert subprocess.run(cli(*args), cwd=REPO_ROOT, capture_output=True, timeout=120).returncode == 0
    latest = evaluate_run(tmp_path, {"episodes": "2", "device": "cpu"})
    assert latest["checkpoint"].endswith("step_000000000200") and latest["episodes"] == 2
    assert -2000 < latest["return_mean"] < 0 and latest["return_std"] >= 0
    named = evaluate_run(tmp_path, {"episodes": "2", "checkpoint": "step_000000000100", "device": "cpu"})
    assert named["checkpoint"].endswith("step_000000000100")
    assert evaluate_run(tmp_path, {"episodes": "2", "device": "cpu"}) == latest  # seeded episodes: repeatable
    with pytest.raises(FileNotFoundError, match="no checkpoint 'step_7' under .*; available: step_000000000100"):
        evaluate_run(tmp_path, {"checkpoint": "step_7"})
    with pytest.raises(ValueError, match="unknown option split=: runner off_policy takes"):
        evaluate_run(tmp_path, {"split": "all"})


def test_rl_eval_refuses_a_checkpoint_with_non_finite_parameters(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    small_run(run_dir)
    actor_file = latest_checkpoint(run_dir / "checkpoints") / "actor.pt"
    actor = torch.load(actor_file)
    actor["body.0.weight"][0, 0] = float("nan")
    torch.save(actor, actor_file)
    result = run_eval(str(run_dir), "episodes=1")
    assert result.returncode == 2
    assert "actor.pt holds 1 non-finite value" in one_error_line(result, "rl-eval")


def test_rl_eval_refuses_a_corrupt_checkpoint_and_zero_episodes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    small_run(run_dir)
    for arguments, words in (
        (["episodes=0"], "episodes=0: must be at least 1"),
        (["episodes=two"], "episodes='two' is not an integer"),
        (["checkpoint=step_000000000100"], "critic.pt is corrupt"),
    ):
        if "checkpoint=step_000000000100" in arguments:
            (run_dir / "checkpoints" / "step_000000000100" / "critic.pt").write_bytes(b"\x00" * 10)
        result = run_eval(str(run_dir), *arguments)
        assert result.returncode == 2 and words in one_error_line(result, "rl-eval")
