"""Checkpoint files (rl_runner/checkpoint.py): save then load, layer-size mismatches and corrupt files named,
replacing and keeping checkpoints, and a kill during a write."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_runner.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_into,
    load_state,
    save_checkpoint,
)
from rl_runner.train import train
from tests.conftest import REPO_ROOT, assert_same_state, make_agent


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
