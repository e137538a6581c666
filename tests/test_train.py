"""rl-train end to end (rl_runner/train.py): one-line errors, --help and --cfg, values checked inside the job,
Ctrl-C, SIGTERM and resume, the progress bar, and pixel envs through the command line."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest

from rl_runner.checkpoint import latest_checkpoint, load_state
from rl_runner.config import CheckedOverrides, ConfigError, validate_overrides
from rl_runner.logging import read_scalars
from tests.conftest import BREAKOUT, REPO_ROOT, TINY, cli, one_error_line, run_cli, run_eval, train_until_sigterm


def test_values_are_checked_again_inside_the_job(tiny_config, tmp_path: Path) -> None:
    """A sweeper may sample values the command line never showed: train() checks what it is given."""
    from rl_runner.training import train

    with pytest.raises(ConfigError, match="agent.gamma=2.0 must be in"):
        train(tiny_config("env=pendulum", "agent.gamma=2.0"), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_cli_rejects_a_bad_override_with_one_line_and_no_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = subprocess.run(
        cli("agent.alpha=abc", f"hydra.run.dir={run_dir}"), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "agent.alpha" in lines[0] and lines[0].startswith("rl-train: error:")
    assert not run_dir.exists()


def test_cli_help_lists_groups_and_cfg_prints_the_composed_config() -> None:
    help_text = subprocess.run(cli("--help"), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120).stdout
    groups = (
        "agent: anogan, autoencoder, ddpg",
        "env: ",
        "halfcheetah",
        "net: conv1d, data_efficient_cnn",
        "data: array",
    )
    for group in groups:
        assert group in help_text
    printed = subprocess.run(
        cli("--cfg", "job", "net.hidden=48"), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    ).stdout
    assert "hidden: 48" in printed and "name: ddpg" in printed


def test_cli_value_error_exits_2_without_a_run_directory_and_useless_settings_warn(tmp_path: Path) -> None:
    result = run_cli("agent.batch_size=-5", f"hydra.run.dir={tmp_path / 'bad'}")
    assert result.returncode == 2 and "agent.batch_size=-5 must be positive" in one_error_line(result)
    assert not (tmp_path / "bad").exists()
    assert validate_overrides(["total_steps=1000", "agent.learning_starts=5000"]) == [
        "total_steps=1000 is not above agent.learning_starts=5000: the agent acts at random and never learns"
    ]


def test_cli_turns_a_second_ctrl_c_into_one_line(monkeypatch, capsys) -> None:
    import rl_runner.train as train_module

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_hydra_main", interrupted)
    monkeypatch.setattr(
        train_module, "check_overrides", lambda overrides, sources=True: CheckedOverrides(overrides, [])
    )
    with pytest.raises(SystemExit) as exit_info:
        train_module.main(["env=pendulum"])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "rl-train: interrupted\n"


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


def test_progress_bar_shows_on_a_terminal_only(tmp_path: Path) -> None:
    args = [
        "env=pendulum",
        "device=cpu",
        "net.hidden=16",
        "agent.batch_size=16",
        "agent.learning_starts=50",
        "total_steps=400",
        "eval.every=0",
        "eval.episodes=0",
        "checkpoint.every=0",
        "log.every=100",
    ]
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0 columns wide
    process = subprocess.Popen(
        cli(*args, f"hydra.run.dir={tmp_path / 'tty'}"), cwd=REPO_ROOT, stdout=follower, stderr=subprocess.DEVNULL
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=120) == 0
    terminal = b"".join(chunks).decode(errors="replace")
    assert "400/400" in terminal and "step/s" in terminal
    piped = subprocess.run(
        cli(*args, f"hydra.run.dir={tmp_path / 'pipe'}"), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert "400/400" not in piped.stdout and "rl-train: done" in piped.stdout


def test_breakout_and_minatar_through_the_command_line(tmp_path: Path) -> None:
    breakout = run_cli(*TINY, *BREAKOUT, "total_steps=300", "eval.every=0", f"hydra.run.dir={tmp_path / 'breakout'}")
    assert breakout.returncode == 0, breakout.stderr[-2000:]
    minatar = run_cli(
        *TINY, "experiment=rainbow_minatar_breakout", "total_steps=600", "agent.learning_starts=200", "eval.every=300",
        "eval.episodes=2", f"hydra.run.dir={tmp_path / 'minatar'}",
    )  # fmt: skip
    assert minatar.returncode == 0, minatar.stderr[-2000:]
    for run in ("breakout", "minatar"):
        scalars = read_scalars(tmp_path / run / "tb")
        assert scalars["loss/q"] and scalars["train/episode_return"], run
        assert all(np.isfinite(value) for _, value in scalars["loss/q"])


def test_hydra_info_takes_overrides_and_a_config_dir_flag_is_refused(monkeypatch, capsys) -> None:
    from rl_runner.train import main

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    main(["agent=rainbow", "--info", "searchpath"])  # the topic stays right after the flag
    assert "Config search path" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:  # not saved with a run: rl-eval could not find the folder again
        main(["--config-dir", "my_conf", "env=my_env"])
    assert exited.value.code == 2 and "hydra.searchpath=[file://DIR]" in capsys.readouterr().err
