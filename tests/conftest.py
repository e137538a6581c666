"""Shared fixtures: real Hydra composition of conf/, shrunk so a run takes seconds on 2 CPU cores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from rl_runner.agents.base import Transition
from rl_runner.clock import Clock
from rl_runner.config import compose_config
from rl_runner.envs.make import make_env
from rl_runner.runners import env_loop
from rl_runner.runners.base import RunSkeleton

REPO_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest-xdist worker per core: each, and every rl-train or rl-eval process it starts, on
    # one torch thread (two threads per worker would oversubscribe the cores). Tests whose trajectory depends on
    # the thread count pin it themselves (one_thread).
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# Small networks, short warm-up, frequent logging: a few hundred steps exercise every code path.
TINY = [
    "device=cpu",
    "progress=false",
    "net.hidden=32",
    "agent.batch_size=32",
    "agent.learning_starts=100",
    "agent.buffer_size=10000",
    "total_steps=300",
    "log.every=50",
    "eval.every=150",
    "eval.episodes=1",
    "checkpoint.every=150",
]


@pytest.fixture
def tiny_config() -> Callable[..., DictConfig]:
    """``tiny_config("env=pendulum", ...)``: the real config with TINY and then the given overrides."""

    def make(*overrides: str) -> DictConfig:
        return compose_config(TINY + list(overrides))

    return make


@pytest.fixture
def one_thread():
    """One torch thread, as the learning benchmarks run: a seed's trajectory can depend on the thread count (the
    order of float sums), and small networks run faster on one thread anyway."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_agent(cfg: DictConfig, device: str = "cpu") -> Any:
    """The configured agent for one env of the configured kind, as rl-eval builds it."""
    return env_loop.make_agent(cfg, make_env(cfg.env), torch.device(device), Clock(horizon=int(cfg.total_steps)))


def write_series(path: Path, rows: int = 1200, seed: int = 0) -> Path:
    """A small two-channel series with a datetime column, as a ';' CSV (SKAB's format) or a .npy file."""
    t = np.arange(rows)
    noise = np.random.default_rng(seed).normal(0, 0.05, (rows, 2))
    series = np.stack([np.sin(t / 7.0), 2 * np.cos(t / 13.0) + 1], axis=1) + noise
    if path.suffix == ".npy":
        np.save(path, series)
    else:
        lines = ["datetime;vibration;pressure"]
        lines += [
            f"2020-01-01 {i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d};{float(a)!r};{float(b)!r}"
            for i, (a, b) in enumerate(series)
        ]
        path.write_text("\n".join(lines) + "\n")
    return path


# The dataset runner's counterpart: steps are optimiser steps on batches of windows.
TINY_DATA = [
    "agent=autoencoder",
    "device=cpu",
    "progress=false",
    "net.hidden=16",
    "agent.batch_size=16",
    "agent.bottleneck=4",
    "data.window=16",
    "total_steps=120",
    "log.every=20",
    "eval.every=60",
    "checkpoint.every=60",
]


@pytest.fixture
def tiny_data_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """``tiny_data_config("agent.lr=1e-2", ...)``: the autoencoder on a small CSV series, then the overrides."""
    series = write_series(tmp_path / "series.csv")

    def make(*overrides: str) -> DictConfig:
        return compose_config(TINY_DATA + [f"data.path={series}"] + list(overrides))

    return make


# a Pendulum run of a few seconds through the real command line (add total_steps, eval and log cadence)
SMALL_PENDULUM = [
    "env=pendulum",
    "device=cpu",
    "progress=false",
    "net.hidden=16",
    "agent.batch_size=16",
    "agent.learning_starts=50",
]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rl_runner.train", *args]


def interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Send this process SIGTERM once a run's loop, whatever its runner, reaches ``step``, as a scheduler stopping
    the job would."""
    original_start = RunSkeleton.start

    def start(self: RunSkeleton) -> None:
        original_start(self)
        advance = self.loop.advance

        def advance_then_signal(metrics: Any, logger: Any) -> None:
            advance(metrics, logger)
            if self.clock.step == step:
                signal.raise_signal(signal.SIGTERM)

        self.loop.advance = advance_then_signal

    monkeypatch.setattr(RunSkeleton, "start", start)


def assert_same_state(left: object, right: object, where: str = "") -> None:
    """Equal to the bit: tensors and arrays element by element, dicts and sequences item by item."""
    assert type(left) is type(right), where
    if isinstance(left, dict):
        assert left.keys() == right.keys(), where
        for key in left:
            assert_same_state(left[key], right[key], f"{where}.{key}")
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right), where
        for index, (a, b) in enumerate(zip(left, right)):
            assert_same_state(a, b, f"{where}[{index}]")
    elif isinstance(left, torch.Tensor):
        assert torch.equal(left, right), where
    elif isinstance(left, np.ndarray):
        np.testing.assert_array_equal(left, right, err_msg=where)
    else:
        assert left == right, where


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def run_eval(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``rl-eval`` in a subprocess (``python -m rl_runner.evaluate``)."""
    command = [sys.executable, "-m", "rl_runner.evaluate", *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)


def train_until_sigterm(args: list[str], run_dir: Path, seconds: float) -> tuple[int, str]:
    """``rl-train`` in a subprocess, sent SIGTERM ``seconds`` after its first TensorBoard event file appears."""
    process = subprocess.Popen(cli(*args), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any((run_dir / "tb").glob("events*")):
        time.sleep(0.2)
    time.sleep(seconds)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    return process.returncode, output


# A small Nature-style torso and short Breakout episodes: the time limit counts emulator frames (4 per step),
# so 160 frames end an episode every ~40 steps and a few hundred steps cross many episode ends.
BREAKOUT = [
    "agent=rainbow",
    "env=breakout",
    "net.channels=[8,8,8]",
    "net.hidden=32",
    "agent.batch_size=8",
    "agent.learning_starts=100",
    "agent.buffer_size=1000",
    "agent.target_update=20",
    "env.max_episode_steps=160",
]
MINATAR = [
    "agent=rainbow",
    "env=minatar_breakout",
    "net.hidden=32",
    "agent.batch_size=16",
    "agent.learning_starts=100",
    "agent.buffer_size=1000",
    "agent.target_update=20",
]


def step_envs(envs: gym.vector.VectorEnv, obs: np.ndarray, rng: np.random.Generator) -> tuple[Transition, np.ndarray]:
    """One random step of every env, as the runner hands it to the agent (real final observations)."""
    actions = rng.integers(envs.single_action_space.n, size=envs.num_envs)
    next_obs, rewards, terminated, truncated, infos = envs.step(actions)
    real_next = next_obs.copy()
    for index in np.flatnonzero(terminated | truncated):
        real_next[index] = infos["final_obs"][index]
    return Transition(obs, actions, rewards, real_next, terminated, truncated, infos), next_obs


# a few seconds of Pendulum through the command line, for the rl-eval and failure tests (with small_run)
SMALL = [*SMALL_PENDULUM, "eval.every=0", "eval.episodes=1", "log.every=50"]


def one_error_line(result: subprocess.CompletedProcess, program: str = "rl-train") -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: "), result.stderr
    return lines[0]


def small_run(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    result = run_cli(*SMALL, "total_steps=200", "checkpoint.every=100", f"hydra.run.dir={run_dir}", *extra)
    assert result.returncode == 0, result.stderr
    return result
