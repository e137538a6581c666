"""Faults a user can meet through the command line, each one line, a non-zero exit and nothing lost: failed
resumes, two processes on one run, full and read-only disks, Ctrl-C while starting, interrupted replaces."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rl_runner.checkpoint import latest_checkpoint, list_checkpoints, load_state
from rl_runner.train import train
from tests.conftest import REPO_ROOT, SMALL, cli, one_error_line, run_cli, run_eval, small_run


@pytest.mark.slow
def test_a_failed_resume_leaves_the_run_resumable(tmp_path: Path) -> None:
    """A resume whose overrides do not fit the checkpoint used to write them into .hydra/ first, so every
    later plain resume and rl-eval failed the same way."""
    run_dir = tmp_path / "run"
    small_run(run_dir)
    saved = {
        name: (run_dir / name).read_bytes() for name in (".hydra/overrides.yaml", ".hydra/config.yaml", "run.json")
    }

    failed = run_cli(f"resume={run_dir}", "net.hidden=64", "total_steps=300")
    assert failed.returncode == 1
    assert "does not fit this run's actor" in one_error_line(failed)
    assert {name: (run_dir / name).read_bytes() for name in saved} == saved

    resumed = run_cli(f"resume={run_dir}", "total_steps=300")
    assert resumed.returncode == 0, resumed.stderr
    assert "total_steps=300" in (run_dir / ".hydra" / "overrides.yaml").read_text()  # written once it loaded
    assert "total_steps: 300" in (run_dir / ".hydra" / "config.yaml").read_text()
    evaluated = run_eval(str(run_dir), "episodes=1")
    assert evaluated.returncode == 0, evaluated.stderr


@pytest.mark.slow
def test_cli_refuses_a_second_process_with_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    small_run(run_dir)
    first = subprocess.Popen(
        cli(f"resume={run_dir}", "total_steps=100000000"),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline and str(first.pid) not in (run_dir / ".lock").read_text():
            time.sleep(0.1)
        second = run_cli(f"resume={run_dir}", "total_steps=400")
        assert second.returncode == 1
        assert f"is in use by process {first.pid}" in one_error_line(second)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert run_cli(f"resume={run_dir}", "total_steps=400").returncode == 0


# ------------------------------------------------------------------------------------------- disks
@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MB tmpfs (needs root, as CI has); skips elsewhere."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)]).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)])


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(small_disk: Path) -> None:
    run_dir = small_disk / "run"
    args = [*SMALL, "total_steps=100000000", "checkpoint.every=100", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(cli(*args), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and latest_checkpoint(run_dir / "checkpoints") is None:
        time.sleep(0.05)
    with open(small_disk / "filler", "wb") as filler:  # fill what is left
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "No space left on device" in lines[0] and lines[0].startswith("rl-train: error:"), stderr
    last_good = latest_checkpoint(run_dir / "checkpoints")
    assert f"cannot write checkpoint {run_dir / 'checkpoints'}" in lines[0]
    assert lines[0].endswith(f"the latest good checkpoint is {last_good}")
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    for name in ("actor", "critic", "progress"):
        load_state(last_good, name)


@pytest.mark.slow
def test_a_read_only_run_directory_is_one_line(small_disk: Path) -> None:
    run_dir = small_disk / "run"
    small_run(run_dir, "checkpoint.every=0")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    resumed = run_cli(f"resume={run_dir}", "total_steps=400")
    assert resumed.returncode == 1
    line = one_error_line(resumed)
    assert str(run_dir) in line and "Read-only file system" in line
    fresh = run_cli(*SMALL, "total_steps=100", f"hydra.run.dir={small_disk / 'new'}")
    assert fresh.returncode == 1 and "Read-only file system" in one_error_line(fresh)


@pytest.mark.parametrize("command", [["-m", "rl_runner.train"], ["-m", "rl_runner.evaluate"], ["rl-train"]])
def test_ctrl_c_while_starting_is_one_line(command: list[str]) -> None:
    if command[0] == "rl-train":
        command = [str(Path(sys.executable).parent / "rl-train")]
        if not Path(command[0]).exists():
            pytest.skip("rl-train is not installed in this environment")
    else:
        command = [sys.executable, *command]
    process = subprocess.Popen(
        [*command, "--help"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(0.4)  # inside the imports of torch, gymnasium and hydra
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip() in ("rl-train: interrupted", "rl-eval: interrupted"), stderr


def test_the_last_checkpoint_is_written_once_and_an_interrupted_replace_is_recovered(
    tiny_config, tmp_path: Path, monkeypatch
) -> None:
    from rl_runner.checkpoint import save_checkpoint
    from rl_runner.runners.base import RunSkeleton

    saves = []
    original = RunSkeleton.save
    monkeypatch.setattr(RunSkeleton, "save", lambda self: saves.append(self.clock.step) or original(self))
    train(tiny_config("env=pendulum", "total_steps=300", "checkpoint.every=150"), run_dir=tmp_path / "run")
    assert saves == [150, 300]
    # a kill between moving the old step_300 aside and moving its replacement in
    root = tmp_path / "run" / "checkpoints"
    (root / "step_000000000300").rename(root / ".tmp-replaced-step_000000000300")
    assert latest_checkpoint(root).name == ".tmp-replaced-step_000000000300"  # still found, still loadable
    save_checkpoint(root, 400, {"progress": {"step": 400}}, keep=3)
    assert [c.name for c in list_checkpoints(root)] == [f"step_{s:012d}" for s in (150, 300, 400)]
