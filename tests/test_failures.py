"""Faults a user can meet through the command line, each one line, a non-zero exit and nothing lost: failed
resumes, two processes on one run, full and read-only disks, Ctrl-C while starting, interrupted replaces."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rl_runner.checkpoint import latest_checkpoint, list_checkpoints, load_state
from rl_runner.runners.record import read_record
from rl_runner.training import train
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
    # no room for a temporary copy of run.json either: the failure is written over the old one
    record = read_record(run_dir)
    assert record["status"] == "failed" and "No space left on device" in record["error"]


# Rainbow keeping its replay in every checkpoint: a checkpoint large enough to fill a small disk by itself
RAINBOW_WITH_REPLAY = [
    "agent=rainbow",
    "env=cartpole",
    "device=cpu",
    "progress=false",
    "net.hidden=16",
    "agent.batch_size=16",
    "agent.learning_starts=50",
    "agent.buffer_size=2000",
    "eval.every=0",
    "eval.episodes=1",
    "log.every=50",
    "checkpoint.every=100",
    "checkpoint.save_replay=true",
]

# rl-train with a disk that has ROOM bytes left for FILE of checkpoint CHECKPOINT: run as
# `python -c FULL_DISK_TRAIN CHECKPOINT FILE ROOM <rl-train arguments>`
FULL_DISK_TRAIN = textwrap.dedent(
    """
    import builtins, runpy, sys
    from tests.test_checkpoint import open_on_full_disk
    checkpoint, name, room = sys.argv[1:4]
    sys.argv = ["rl-train", *sys.argv[4:]]
    where = lambda path: path.parent.name == f".tmp-{checkpoint}" and path.name == name
    builtins.open = open_on_full_disk(builtins.open, int(room), where)
    runpy.run_module("rl_runner.train", run_name="__main__")
    """
)


@pytest.mark.slow
def test_a_full_disk_while_the_replay_is_written_is_one_line_and_the_run_resumes(tmp_path: Path) -> None:
    """It was a 44-line traceback of torch's "unexpected pos 64 vs 0" hiding the ENOSPC, a .tmp-step_* directory
    holding the space, and run.json left "running"."""
    run_dir, room = tmp_path / "run", 8192
    args = [*RAINBOW_WITH_REPLAY, "total_steps=300", f"hydra.run.dir={run_dir}"]
    failed = subprocess.run(
        [sys.executable, "-c", FULL_DISK_TRAIN, "step_000000000200", "replay.pt", str(room), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 1, failed.stderr
    root = run_dir / "checkpoints"
    good = root / "step_000000000100"
    line = one_error_line(failed)
    assert line == (
        f"rl-train: error: cannot write checkpoint {root / 'step_000000000200'} (replay.pt): No space left on "
        f"device; the latest good checkpoint is {good}"
    )
    assert (good / "replay.pt").stat().st_size > room  # the disk filled midway through the file
    assert list_checkpoints(root) == [good] and not list(root.glob(".tmp-*"))
    record = read_record(run_dir)
    assert record["status"] == "failed" and record["error"] == f"CheckpointError: {line.split(': error: ', 1)[1]}"

    resumed = run_cli(f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr
    assert latest_checkpoint(root).name == "step_000000000300"
    assert [attempt["status"] for attempt in read_record(run_dir)["attempts"]] == ["failed", "finished"]


@pytest.mark.slow
def test_a_checkpoint_that_fills_the_disk_itself_leaves_the_space_free_again(small_disk: Path) -> None:
    run_dir = small_disk / "run"
    args = [*RAINBOW_WITH_REPLAY, "total_steps=100000000", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(cli(*args), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and latest_checkpoint(run_dir / "checkpoints") is None:
        time.sleep(0.05)
    first = latest_checkpoint(run_dir / "checkpoints")
    size = sum(path.stat().st_size for path in first.glob("*.pt"))
    disk = os.statvfs(small_disk)
    with open(small_disk / "filler", "wb") as filler:  # room for half a checkpoint: the next one fills the disk
        filler.write(b"\0" * (disk.f_bavail * disk.f_frsize - size // 2))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    last_good = latest_checkpoint(run_dir / "checkpoints")
    assert len(lines) == 1 and lines[0].startswith("rl-train: error: cannot write checkpoint"), stderr
    assert lines[0].endswith(f"No space left on device; the latest good checkpoint is {last_good}"), stderr
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    text = (run_dir / "run.json").read_text()
    assert text.startswith("{\n  ")  # written as always: removing the half-written checkpoint made the room
    assert read_record(run_dir)["status"] == "failed"

    (small_disk / "filler").unlink()
    step = load_state(last_good, "progress")["clock"]["step"]
    resumed = run_cli(f"resume={run_dir}", f"total_steps={step + 100}")
    assert resumed.returncode == 0, resumed.stderr
    assert latest_checkpoint(run_dir / "checkpoints").name == f"step_{step + 100:012d}"


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
def test_ctrl_c_while_starting_is_one_line(command: list[str], tmp_path: Path) -> None:
    if command[0] == "rl-train":
        command = [str(Path(sys.executable).parent / "rl-train")]
        if not Path(command[0]).exists():
            pytest.skip("rl-train is not installed in this environment")
    else:
        command = [sys.executable, *command]
    # rl-eval imports torch and gymnasium first; rl-train checks the config (Hydra, then gymnasium and MuJoCo to
    # make the env once) and imports torch once it is good: a Ctrl-C anywhere there writes nothing
    arguments = (
        ["--help"] if "rl_runner.evaluate" in command else ["total_steps=100000", f"hydra.run.dir={tmp_path}/run"]
    )
    process = subprocess.Popen(
        [*command, *arguments], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(0.4)  # inside the imports and the checks
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip() in ("rl-train: interrupted", "rl-eval: interrupted"), stderr
    assert not (tmp_path / "run").exists()


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
