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


# Off-policy cases save their replay (the resume is then exact) and checkpoint only at the stop and the end.
EXACT = ("checkpoint.save_replay=true", "checkpoint.every=0")
PENDULUM = (*TINY, "env=pendulum", "env.max_episode_steps=120", "total_steps=400", "checkpoint.save_replay=true")
RAINBOW = (*TINY, "agent=rainbow", "net.hidden=32", *EXACT)
PIXELS = (*RAINBOW, "agent.batch_size=16", "agent.buffer_size=1000", "agent.target_update=20", "total_steps=320")
PIXELS += ("log.every=40", "eval.every=0")
TMAZE = (*TINY, "agent=drqn", "env=tmaze", "env.kwargs.length=3", "net.hidden=16", "agent.rnn_hidden=16", *EXACT)
TMAZE += ("agent.batch_size=8", "agent.buffer_size=2000", "agent.updates_per_step=0.5", "agent.target_update=20")
TMAZE += ("total_steps=500", "eval.every=250", "eval.episodes=5")
ANOGAN = ("agent=anogan", "device=cpu", "progress=false", "net.width=4", "net.depth=2", "agent.latent_dim=4")
ANOGAN += ("agent.batch_size=16", "agent.gan_steps=30", "agent.encoder_steps=20", "agent.search_steps=5")
ANOGAN += ("agent.search_starts=2", "data.window=16", "data.train_windows=64", "data.val_windows=16")
ANOGAN += ("data.test_windows=16", "log.every=10", "eval.every=25", "checkpoint.every=25")
# BatchNorm and a learning-rate schedule
AUTOENCODER = (*TINY_DATA, "total_steps=120", "checkpoint.every=0", "net.norm=batch")

CASES = {
    # the stop comes at a periodic checkpoint's step, which is not written twice
    "ddpg-pendulum-on-a-checkpoint": Case((*PENDULUM, "checkpoint.every=200"), 200),
    "ddpg-pendulum-2envs": Case((*PENDULUM, "env.num_envs=2", "checkpoint.every=0"), 230),
    "ddpg-halfcheetah-ou": Case(
        (*TINY, "env=halfcheetah", "agent.noise=ou", "env.max_episode_steps=120", "total_steps=400", *EXACT), 230
    ),
    "rainbow-cartpole": Case(
        (
            *RAINBOW,
            "env=cartpole",
            "agent.batch_size=32",
            "agent.buffer_size=5000",
            "agent.target_update=50",
            "agent.v_min=0",
            "agent.v_max=50",
            "total_steps=400",
            "eval.every=200",
        ),
        237,  # mid-window for the n-step accumulator
    ),  # fmt: skip
    "rainbow-minatar": Case((*PIXELS, "env=minatar_breakout"), 217, episodes=3),
    # 160 emulator frames (40 steps) per episode: a few hundred steps cross many episode ends
    "rainbow-breakout": Case(
        (*PIXELS, "env=breakout", "net.channels=[8,8,8]", "env.max_episode_steps=160"), 217, episodes=3
    ),
    # mid-episode: an open episode in the replay, a non-zero acting state
    "drqn-tmaze-episodes": Case(TMAZE, 317, memory_at_stop="acting"),
    "drqn-tmaze-windows": Case(
        (*TMAZE, "agent.replay=windows", "agent.sequence_length=4", "agent.burn_in=3", "agent.stored_state=true"),
        317,
        memory_at_stop="acting",
    ),
    "anogan-waveform-gan-phase": Case(ANOGAN, 20),
    "anogan-waveform-encoder-phase": Case(ANOGAN, 40),
    # stopped within the first epoch (59 batches) and after an epoch boundary
    "autoencoder-array-first-epoch": Case(AUTOENCODER, 40, data_file=True),
    "autoencoder-array-second-epoch": Case(AUTOENCODER, 70, data_file=True),
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
