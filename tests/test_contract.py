"""The contract every registered agent keeps, on each kind of env or data it runs on: a few hundred steps compose
and train; stopped by SIGTERM mid-run and resumed, the run ends exactly as one that was never interrupted (every
checkpoint file, replay included, and every TensorBoard scalar); and the trained agent loads for rl-eval and the
Python API. A new agent adds its line to ``CASES``: ``test_every_registered_agent_has_a_case`` fails until it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from rl_runner.agents import AGENT_CLASSES
from rl_runner.checkpoint import load_state
from rl_runner.config import compose_config
from tests.conftest import TINY, TINY_DATA, write_series
from tests.contract import assert_loads_alike, assert_resume_is_exact


@dataclass(frozen=True)
class Case:
    overrides: tuple[str, ...]
    stop_at: int  # the step SIGTERM arrives after: mid-episode, and off the log and checkpoint grid unless said
    data_file: bool = False  # the run reads a CSV series written for it (data.path)
    memory_at_stop: str | None = None  # a state group holding a recurrent state that must be non-zero at the stop
    episodes: int = 0  # at least this many episodes end in the run (the resume crosses episode ends)


RAINBOW_SMALL = ("agent=rainbow", "net.hidden=32", "agent.batch_size=32", "agent.buffer_size=5000")
RAINBOW_PIXELS = ("agent=rainbow", "net.hidden=32", "agent.batch_size=16", "agent.buffer_size=1000")
TMAZE = ("agent=drqn", "env=tmaze", "env.kwargs.length=3", "net.hidden=16", "agent.rnn_hidden=16")
TMAZE_SMALL = (*TMAZE, "agent.batch_size=8", "agent.buffer_size=2000", "agent.updates_per_step=0.5")
ANOGAN = (
    "agent=anogan", "net.width=4", "net.depth=2", "agent.latent_dim=4", "agent.batch_size=16", "agent.gan_steps=30",
    "agent.encoder_steps=20", "agent.search_steps=5", "agent.search_starts=2", "data.window=16",
    "data.train_windows=64", "data.val_windows=16", "data.test_windows=16", "log.every=10", "eval.every=25",
)  # fmt: skip
# Every off-policy case saves its replay (the resume is then exact) and evaluates once before the stop.
EXACT = ("checkpoint.save_replay=true", "checkpoint.every=0")

CASES = {
    "ddpg-pendulum-on-a-checkpoint": Case(  # the stop comes at a periodic checkpoint's step: it is not written twice
        (
            *TINY,
            "env=pendulum",
            "env.max_episode_steps=120",
            "total_steps=400",
            "checkpoint.save_replay=true",
            "checkpoint.every=200",
        ),
        200,
    ),  # fmt: skip
    "ddpg-pendulum-2envs": Case(
        (*TINY, "env=pendulum", "env.num_envs=2", "env.max_episode_steps=120", "total_steps=400", *EXACT), 230
    ),
    "ddpg-halfcheetah-ou": Case(
        (*TINY, "env=halfcheetah", "agent.noise=ou", "env.max_episode_steps=120", "total_steps=400", *EXACT), 230
    ),
    "rainbow-cartpole": Case(
        (
            *TINY,
            *RAINBOW_SMALL,
            "env=cartpole",
            "agent.target_update=50",
            "agent.v_min=0",
            "agent.v_max=50",
            "total_steps=400",
            "eval.every=200",
            *EXACT,
        ),
        237,  # mid-window for the n-step accumulator
    ),  # fmt: skip
    "rainbow-minatar": Case(
        (
            *TINY,
            *RAINBOW_PIXELS,
            "env=minatar_breakout",
            "agent.target_update=20",
            "total_steps=320",
            "log.every=40",
            "eval.every=0",
            *EXACT,
        ),
        217,
        episodes=3,
    ),  # fmt: skip
    "rainbow-breakout": Case(
        # 160 emulator frames (40 steps) per episode: a few hundred steps cross many episode ends
        (
            *TINY,
            *RAINBOW_PIXELS,
            "env=breakout",
            "net.channels=[8,8,8]",
            "agent.target_update=20",
            "env.max_episode_steps=160",
            "total_steps=320",
            "log.every=40",
            "eval.every=0",
            *EXACT,
        ),
        217,
        episodes=3,
    ),  # fmt: skip
    "drqn-tmaze-episodes": Case(
        (*TINY, *TMAZE_SMALL, "agent.target_update=20", "total_steps=500", "eval.every=250", "eval.episodes=5", *EXACT),
        317,  # mid-episode: an open episode in the replay, a non-zero acting state
        memory_at_stop="acting",
    ),  # fmt: skip
    "drqn-tmaze-windows": Case(
        (
            *TINY,
            *TMAZE_SMALL,
            "agent.target_update=20",
            "agent.replay=windows",
            "agent.sequence_length=4",
            "agent.burn_in=3",
            "agent.stored_state=true",
            "total_steps=500",
            "eval.every=250",
            "eval.episodes=5",
            *EXACT,
        ),
        317,
        memory_at_stop="acting",
    ),  # fmt: skip
    "anogan-waveform-gan-phase": Case((*ANOGAN, "checkpoint.every=25", "device=cpu", "progress=false"), 20),
    "anogan-waveform-encoder-phase": Case((*ANOGAN, "checkpoint.every=25", "device=cpu", "progress=false"), 40),
    # BatchNorm and a learning-rate schedule; stopped within the first epoch and after an epoch boundary
    "autoencoder-array-first-epoch": Case(
        (*TINY_DATA, "total_steps=120", "checkpoint.every=0", "net.norm=batch"), 40, data_file=True
    ),
    "autoencoder-array-second-epoch": Case(
        (*TINY_DATA, "total_steps=120", "checkpoint.every=0", "net.norm=batch"), 70, data_file=True
    ),
}


def test_every_registered_agent_has_a_case() -> None:
    assert {compose_config(list(case.overrides)).agent.name for case in CASES.values()} == set(AGENT_CLASSES)


@pytest.mark.parametrize("name", list(CASES))
def test_stopped_and_resumed_run_equals_an_uninterrupted_one_and_loads(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread
) -> None:
    case = CASES[name]
    overrides = list(case.overrides)
    if case.data_file:
        overrides.append(f"data.path={write_series(tmp_path / 'series.csv')}")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"

    stopped, summary, expected = assert_resume_is_exact(straight, resumed, overrides, case.stop_at, monkeypatch)
    if case.memory_at_stop:  # the stop came mid-episode: there was a memory to carry over
        memory = load_state(stopped, case.memory_at_stop)["state"]
        assert memory.abs().sum() > 0
    assert summary.get("episodes", 0) == expected.get("episodes", 0) >= case.episodes
    assert_loads_alike(straight, resumed)
