"""Run-level behaviour: cadence with parallel envs, devices and the progress bar (sweeps: test_sweeps.py)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
import torch

from rl_runner.logging import read_scalars
from rl_runner.runtime import resolve_device
from rl_runner.train import train
from tests.conftest import REPO_ROOT, SMALL_PENDULUM, cli, make_agent


# learning starts at step 100: 201 single-env steps; 51 vector steps of 4 envs at 2 updates each;
# 101 vector steps of 2 envs at half an update each
@pytest.mark.parametrize(
    ("num_envs", "updates_per_step", "expected_updates"), [(1, 1.0, 201), (4, 0.5, 102), (2, 0.25, 50)]
)
def test_update_cadence_counts_transitions_over_parallel_envs(
    tiny_config, tmp_path: Path, num_envs: int, updates_per_step: float, expected_updates: int
) -> None:
    cfg = tiny_config(
        "env=pendulum",
        f"env.num_envs={num_envs}",
        f"agent.updates_per_step={updates_per_step}",
        "total_steps=300",
        "eval.every=0",
        "checkpoint.every=0",
    )
    summary = train(cfg, run_dir=tmp_path)
    assert summary["step"] == 300
    assert summary["updates"] == expected_updates
    assert summary["episodes"] == (300 // num_envs // 200) * num_envs  # Pendulum episodes last 200 steps
    assert read_scalars(tmp_path / "tb")["charts/updates"][-1][1] == expected_updates


def test_device_choice() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_keeps_networks_optimizers_and_replay_on_the_gpu(tiny_config, tmp_path: Path) -> None:
    from rl_runner.checkpoint import latest_checkpoint, load_into

    cfg = tiny_config("env=halfcheetah", "device=cuda", "env.max_episode_steps=100")
    summary = train(cfg, run_dir=tmp_path)
    assert summary["step"] == 300
    agent = make_agent(cfg, device="cuda")
    load_into(latest_checkpoint(tmp_path / "checkpoints"), agent.state_groups(), map_location="cuda")
    tensors = [
        *agent.actor.state_dict().values(),
        *agent.critic.state_dict().values(),
        *agent.target_actor.state_dict().values(),
        *agent.target_critic.state_dict().values(),
        agent.replay.storage,
    ]
    for optimizer in (agent.actor_optimizer, agent.critic_optimizer):
        tensors += [t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t) and t.dim()]
    assert tensors and all(t.is_cuda for t in tensors)
    assert agent.update()["loss/critic"].is_cuda
    # a resume on the GPU: RNG states and counters come back on the CPU, the state groups on the GPU
    time.sleep(1.1)
    resumed = tiny_config(
        "env=halfcheetah", "device=cuda", "env.max_episode_steps=100", "total_steps=400", f"resume={tmp_path}"
    )
    assert train(resumed, run_dir=tmp_path)["step"] == 400


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
