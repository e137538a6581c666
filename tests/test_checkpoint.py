"""Checkpoint files (rl_runner/checkpoint.py): save then load, layer-size mismatches and corrupt files named,
replacing and keeping checkpoints, a kill during a write, and a disk that fills up during one."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

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
    write_checkpoint,
)
from rl_runner.training import train
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


def open_on_full_disk(real_open: Callable[..., Any], room: int, where: Callable[[Path], bool]) -> Callable[..., Any]:
    """``open`` for a disk with ``room`` bytes left to the binary files written where ``where(path)``: as the
    kernel does, a write past them writes what fits, and the next one raises ENOSPC. Other files open as usual."""
    left = [room]

    class FullDisk(io.FileIO):
        def write(self, data: Any) -> int:
            if not left[0]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written = super().write(memoryview(data).cast("B")[: left[0]])
            left[0] -= written
            return written

    def opened(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" in mode and "b" in mode and where(Path(file)):
            return io.BufferedWriter(FullDisk(file, "wb"))
        return real_open(file, mode, *args, **kwargs)

    return opened


def test_a_full_disk_in_any_state_file_names_the_cause_and_the_latest_good_checkpoint(
    tiny_config, one_thread, tmp_path: Path, monkeypatch
) -> None:
    """Torch's zip writer turned a failed write into "RuntimeError: [enforce fail at inline_container.cc:672]
    unexpected pos 64 vs 0", which hid the full disk and left the temporary directory holding its space."""
    import builtins

    cfg = tiny_config("agent=rainbow", "env=cartpole", "total_steps=150", "eval.every=0", "checkpoint.save_replay=true")
    train(cfg, run_dir=tmp_path / "run")
    root = tmp_path / "run" / "checkpoints"
    good = latest_checkpoint(root)
    names = sorted(path.stem for path in good.glob("*.pt"))
    assert {"online", "optimizer", "replay", "progress"} <= set(names)  # every file of a checkpoint, replay too
    states = {name: load_state(good, name) for name in names}
    sizes = {name: (good / f"{name}.pt").stat().st_size for name in names}
    for name in names:
        # none of it, torch's first record, a write buffer, half the file
        for room in sorted(room for room in {0, 64, 8192, sizes[name] // 2} if room < sizes[name]):
            full = open_on_full_disk(builtins.open, room, lambda path: path.name == f"{name}.pt")
            monkeypatch.setattr(builtins, "open", full)
            with pytest.raises(CheckpointError) as failed:
                write_checkpoint(root / "step_000000000300", states)
            monkeypatch.undo()
            assert str(failed.value) == (
                f"cannot write checkpoint {root / 'step_000000000300'} ({name}.pt): No space left on device; "
                f"the latest good checkpoint is {good}"
            ), (name, room)
            assert not list(root.glob(".tmp-*")), (name, room)  # its space is free again
            assert list_checkpoints(root) == [good], (name, room)
    assert_same_state(load_state(good, "replay"), states["replay"])
    write_checkpoint(root / "step_000000000300", states)  # the same states on a disk with room
    assert latest_checkpoint(root).name == "step_000000000300"
