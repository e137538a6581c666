"""Checkpoint files, save -> load, exact resume, crash safety, signals and divergence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_runner.agents.ddpg import DDPG
from rl_runner.checkpoint import (
    PROGRESS_FORMAT,
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_into,
    load_state,
    save_checkpoint,
)
from rl_runner.errors import TrainingDiverged
from rl_runner.logging import read_scalars
from rl_runner.train import train
from tests.conftest import REPO_ROOT, assert_same_state, make_agent, run_cli, run_eval, train_until_sigterm

AGENT_FILES = {
    "actor.pt",
    "critic.pt",
    "target_actor.pt",
    "target_critic.pt",
    "actor_optimizer.pt",
    "critic_optimizer.pt",
    "exploration_noise.pt",
    "progress.pt",
}


def test_run_writes_tensorboard_tags_and_named_checkpoint_files(tiny_config, tmp_path: Path) -> None:
    summary = train(tiny_config("env=halfcheetah", "checkpoint.keep=2", "env.max_episode_steps=100"), run_dir=tmp_path)
    assert summary["step"] == 300 and not summary["interrupted"]
    scalars = read_scalars(tmp_path / "tb")
    for tag in (
        "train/episode_return",
        "train/episode_length",
        "loss/critic",
        "loss/actor",
        "q/mean",
        "charts/sps",
        "eval/return_mean",
    ):
        assert tag in scalars and scalars[tag], tag
    assert {s for s, _ in scalars["eval/return_mean"]} == {150, 300}
    checkpoints = list_checkpoints(tmp_path / "checkpoints")
    assert [c.name for c in checkpoints] == ["step_000000000150", "step_000000000300"]
    assert {p.name for p in checkpoints[-1].iterdir()} == AGENT_FILES
    progress = load_state(checkpoints[-1], "progress")
    assert progress["clock"]["step"] == 300 and set(progress["rng"]) >= {"python", "numpy", "torch"}
    assert progress["format"] == PROGRESS_FORMAT and progress["clock"]["horizon"] == 300
    assert len(progress["loop"]["env_state"]) == 1


def test_hparams_are_logged(tiny_config, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_config("env=pendulum", "total_steps=200", "eval.every=0", "checkpoint.every=0"), run_dir=tmp_path)
    accumulator = EventAccumulator(str(tmp_path / "tb"))
    accumulator.Reload()
    assert accumulator.PluginTagToContent("hparams")
    assert "final/eval/return_mean" in accumulator.Tags()["scalars"]


def test_save_then_load_restores_all_networks_and_optimizers(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config("env=pendulum", "total_steps=250", "eval.every=0")
    train(cfg, run_dir=tmp_path)
    checkpoint = latest_checkpoint(tmp_path / "checkpoints")
    fresh = make_agent(cfg)
    load_into(checkpoint, fresh.state_groups(), map_location="cpu")
    for name, group in fresh.state_groups().items():
        assert_same_state(group.state_dict(), load_state(checkpoint, name))
    assert fresh.actor_optimizer.state_dict()["state"], "optimizer moments were restored"
    assert not torch.equal(fresh.actor.body[0].weight, fresh.target_actor.body[0].weight)  # targets lag behind


def test_resume_without_a_checkpoint_is_a_clear_error(tiny_config, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_config("env=pendulum", f"resume={tmp_path}"), run_dir=tmp_path)


def test_resume_with_other_layer_sizes_names_the_mismatch(tiny_config, tmp_path: Path) -> None:
    train(tiny_config("env=pendulum", "total_steps=150", "eval.every=0"), run_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"actor.pt does not fit this run's actor.*size mismatch"):
        train(tiny_config("env=pendulum", "total_steps=300", "net.hidden=64", f"resume={tmp_path}"), run_dir=tmp_path)


def test_corrupt_checkpoint_file_is_named_in_the_error(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 5, {"actor": {"w": torch.ones(3)}}, keep=2)
    (tmp_path / "step_000000000005" / "actor.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="actor.pt"):
        load_state(tmp_path / "step_000000000005", "actor")


def test_a_second_save_for_the_same_step_replaces_the_first(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 10, {"progress": {"version": 1}}, keep=1)
    save_checkpoint(tmp_path, 10, {"progress": {"version": 2}}, keep=1)
    assert [p.name for p in tmp_path.iterdir()] == ["step_000000000010"]
    assert load_state(latest_checkpoint(tmp_path), "progress") == {"version": 2}


def test_keep_last_k_checkpoints(tmp_path: Path) -> None:
    for step in range(1, 6):
        save_checkpoint(tmp_path, step * 10, {"progress": {"step": step}}, keep=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == [f"step_{s:012d}" for s in (30, 40, 50)]


WRITER = textwrap.dedent(
    """
    import sys, torch
    from pathlib import Path
    from rl_runner.checkpoint import save_checkpoint
    root = Path(sys.argv[1])
    step = 0
    while True:
        step += 1
        big = torch.full((4_000_000,), float(step))  # 16 MB per file: the kill lands mid-write
        save_checkpoint(root, step, {"actor": {"w": big}, "critic": {"w": big}, "progress": {"step": step}}, keep=2)
    """
)


def test_kill_during_checkpoint_write_leaves_the_previous_one_loadable(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for attempt in range(4):
        root = tmp_path / f"attempt{attempt}"
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], cwd=REPO_ROOT)
        deadline = time.time() + 60
        while latest_checkpoint(root) is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(float(rng.uniform(0.0, 0.5)))
        process.send_signal(signal.SIGKILL)
        process.wait()
        latest = latest_checkpoint(root)
        assert latest is not None
        step = load_state(latest, "progress")["step"]
        assert latest.name == f"step_{step:012d}"
        for name in ("actor", "critic"):
            assert torch.all(load_state(latest, name)["w"] == float(step))


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    tiny_config, tmp_path: Path, monkeypatch
) -> None:
    original_update = DDPG.update
    calls = {"n": 0}

    def update_that_diverges(self: DDPG) -> dict:
        calls["n"] += 1
        metrics = original_update(self)
        if calls["n"] > 120:
            metrics["loss/critic"] = metrics["loss/critic"] * float("nan")
        return metrics

    monkeypatch.setattr(DDPG, "update", update_that_diverges)
    with pytest.raises(TrainingDiverged, match=r"loss/critic=nan.*step_000000000150"):
        train(tiny_config("env=pendulum", "total_steps=1000", "eval.every=0"), run_dir=tmp_path)
    assert [c.name for c in list_checkpoints(tmp_path / "checkpoints")] == ["step_000000000150"]
    load_state(latest_checkpoint(tmp_path / "checkpoints"), "actor")


@pytest.mark.slow
def test_cli_run_stops_on_sigterm_with_a_checkpoint_and_resumes(tmp_path: Path) -> None:
    """The real `rl-train` entry point in a subprocess: overrides, SIGTERM, then `resume=<run dir>`."""
    run_dir = tmp_path / "run"
    args = [
        "env=halfcheetah",
        "device=cpu",
        "progress=false",
        "net.hidden=32",
        "agent.batch_size=32",
        "agent.learning_starts=200",
        "total_steps=200000",
        "checkpoint.every=100000",
        "eval.every=0",
        "log.every=100",
        "env.max_episode_steps=200",
        f"hydra.run.dir={run_dir}",
    ]
    returncode, output = train_until_sigterm(args, run_dir, seconds=4.0)
    assert returncode == 130, output
    stopped = latest_checkpoint(run_dir / "checkpoints")
    assert stopped is not None, output
    stopped_step = load_state(stopped, "progress")["clock"]["step"]
    assert 0 < stopped_step < 200000
    assert (run_dir / ".hydra" / "config.yaml").is_file()

    resumed = run_cli(f"resume={run_dir}", f"total_steps={stopped_step + 300}")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = latest_checkpoint(run_dir / "checkpoints")
    assert load_state(final, "progress")["clock"]["step"] == stopped_step + 300
    steps = [s for s, _ in read_scalars(run_dir / "tb")["charts/sps"]]
    assert steps == sorted(set(steps)), "the resumed curve repeats steps"
    assert "net.hidden=32" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    evaluated = run_eval(str(run_dir), "episodes=1", "video=true", env={**os.environ, "MUJOCO_GL": "egl"})
    assert evaluated.returncode == 0, evaluated.stderr
    assert "return" in evaluated.stdout and (run_dir / "videos" / f"{final.name}.mp4").stat().st_size > 10_000
