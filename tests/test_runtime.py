"""The runtime helpers (rl_runner/runtime.py): device choice, the run directory lock, Ctrl-C twice in a checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rl_runner.checkpoint import latest_checkpoint
from rl_runner.errors import RunLocked
from rl_runner.runtime import RunLock, resolve_device
from rl_runner.training import train
from tests.conftest import REPO_ROOT


def test_device_choice() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_a_second_process_on_a_run_directory_is_refused_and_a_dead_holder_blocks_nothing(
    tiny_config, tmp_path: Path
) -> None:
    train(tiny_config("env=pendulum", "total_steps=150", "eval.every=0"), run_dir=tmp_path)
    resume = tiny_config("env=pendulum", "total_steps=300", f"resume={tmp_path}")
    before = (tmp_path / "run.json").read_bytes()
    with RunLock(tmp_path):
        with pytest.raises(RunLocked, match=rf"{tmp_path} is in use by process {os.getpid()} on "):
            train(resume, run_dir=tmp_path)
    assert (tmp_path / "run.json").read_bytes() == before
    # a holder killed outright: the operating system drops its lock
    hold = f"from pathlib import Path; from rl_runner.runtime import RunLock; lock = RunLock(Path({str(tmp_path)!r}))"
    holder = subprocess.Popen([sys.executable, "-c", f"{hold}.__enter__(); import time; time.sleep(60)"], cwd=REPO_ROOT)
    deadline = time.time() + 30
    while time.time() < deadline and str(holder.pid) not in (tmp_path / ".lock").read_text():
        time.sleep(0.1)
    with pytest.raises(RunLocked, match=f"process {holder.pid}"):
        train(resume, run_dir=tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert train(resume, run_dir=tmp_path)["step"] == 300


def test_a_second_ctrl_c_during_a_checkpoint_write_waits_for_the_write(
    tiny_config, tmp_path: Path, monkeypatch
) -> None:
    """Two Ctrl-Cs while a checkpoint is written: the first asks for a stop, the second stops at once, but only
    once the checkpoint is complete (it used to leave a .tmp-step_* directory and a traceback)."""
    import rl_runner.checkpoint as checkpoint_module

    original_save = torch.save
    calls = {"n": 0}

    def save_with_two_interrupts(state: object, file: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # mid-way through the checkpoint's files
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        original_save(state, file)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_with_two_interrupts)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config("env=pendulum", "total_steps=1000", "eval.every=0"), run_dir=tmp_path)
    checkpoint = latest_checkpoint(tmp_path / "checkpoints")
    assert checkpoint.name == "step_000000000150" and not list((tmp_path / "checkpoints").glob(".tmp-*"))
    assert {p.name for p in checkpoint.iterdir()} >= {"actor.pt", "critic.pt", "progress.pt", "exploration_noise.pt"}
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "interrupted"
