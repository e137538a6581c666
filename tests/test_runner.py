"""What the run skeleton promises every agent: the checkpoint format, run.json, the objective a sweeper reads,
transitions with their context, and returns as the env scores them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_runner.agents.base import Transition
from rl_runner.agents.ddpg import DDPG
from rl_runner.checkpoint import latest_checkpoint, load_state
from rl_runner.clock import Clock, cosine_schedule, linear_schedule
from rl_runner.errors import CheckpointError
from rl_runner.logging import read_scalars
from rl_runner.train import _hydra_main, train


def test_clock_fraction_and_schedules() -> None:
    clock = Clock(horizon=200)
    assert clock.fraction == 0.0
    clock.step = 50
    assert clock.fraction == 0.25 and linear_schedule(1.0, 0.1, clock.fraction) == pytest.approx(0.775)
    assert linear_schedule(1.0, 0.1, clock.fraction, duration=0.25) == pytest.approx(0.1)  # reached its end early
    clock.step = 500  # past the horizon (a resume that raised total_steps): schedules stay at their end
    assert clock.fraction == 1.0 and cosine_schedule(3.0, 1.0, clock.fraction) == pytest.approx(1.0)
    assert cosine_schedule(3.0, 1.0, 0.5) == pytest.approx(2.0)
    restored = Clock(horizon=1)
    restored.load_state_dict(clock.state_dict())
    assert (restored.horizon, restored.step) == (200, 500)


def test_a_checkpoint_of_an_older_format_is_refused_before_anything_loads(tiny_config, tmp_path: Path) -> None:
    train(tiny_config("env=pendulum", "total_steps=150", "eval.every=0"), run_dir=tmp_path)
    checkpoint = latest_checkpoint(tmp_path / "checkpoints")
    progress = load_state(checkpoint, "progress")
    old = {  # the layout of format 1, written by the DDPG-only runner
        "counters": {"step": 150, **progress["counters"]},
        "rng": progress["rng"],
        **{k: v for k, v in progress["loop"].items() if k in ("warmup_rng", "env_state", "obs")},
    }
    torch.save(old, checkpoint / "progress.pt")
    record_before = (tmp_path / "run.json").read_bytes()
    with pytest.raises(CheckpointError, match=r"progress.pt has progress format 1, this rl_runner reads format 2"):
        train(tiny_config("env=pendulum", "total_steps=300", f"resume={tmp_path}"), run_dir=tmp_path)
    assert (tmp_path / "run.json").read_bytes() == record_before  # a failed resume changes nothing


def test_a_learning_only_reward_transform_leaves_the_logged_returns_alone(
    tiny_config, tmp_path: Path, monkeypatch
) -> None:
    """An agent that clips rewards in place (as Atari agents do) learns from clipped rewards, while
    train/episode_return stays the env's own score."""
    cfg = tiny_config("env=pendulum", "total_steps=400", "agent.learning_starts=1000", "checkpoint.save_replay=true")
    train(cfg, run_dir=tmp_path / "plain")
    seen: list[Transition] = []
    original = DDPG.observe

    def clipping_observe(self: DDPG, transition: Transition) -> None:
        seen.append(transition)
        np.clip(transition.rewards, -1.0, 1.0, out=transition.rewards)
        original(self, transition)

    monkeypatch.setattr(DDPG, "observe", clipping_observe)
    train(cfg, run_dir=tmp_path / "clipped")
    plain, clipped = read_scalars(tmp_path / "plain" / "tb"), read_scalars(tmp_path / "clipped" / "tb")
    assert plain["train/episode_return"] == clipped["train/episode_return"]
    assert min(v for _, v in clipped["train/episode_return"]) < -400  # Pendulum: far below what clipping allows
    replay = load_state(latest_checkpoint(tmp_path / "clipped" / "checkpoints"), "replay")
    assert float(replay["storage"][:, 4].min()) >= -1.0  # column 4: the reward, after obs (3) and action (1)
    # transitions carry the infos, and the real final observation where an episode ended
    ends = [t for t in seen if t.truncated.any()]
    assert len(ends) == 2 and all("final_obs" in t.infos for t in ends)
    np.testing.assert_array_equal(ends[0].next_obs[0], ends[0].infos["final_obs"][0])


def test_run_json_records_a_run_that_fails_while_being_set_up(tiny_config, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="env.id='Nope-v0' could not be made"):
        train(tiny_config("env=pendulum", "env.id=Nope-v0"), run_dir=tmp_path)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed" and "Nope-v0" in record["error"]
    assert record["attempts"][-1]["status"] == "failed"


def test_run_json_of_a_failed_resume_is_left_as_it_was(tiny_config, tmp_path: Path) -> None:
    train(tiny_config("env=pendulum", "total_steps=150", "eval.every=0"), run_dir=tmp_path)
    before = (tmp_path / "run.json").read_bytes()
    with pytest.raises(CheckpointError, match="does not fit"):
        train(tiny_config("env=pendulum", "total_steps=300", "net.hidden=64", f"resume={tmp_path}"), run_dir=tmp_path)
    assert (tmp_path / "run.json").read_bytes() == before


def test_the_task_function_returns_the_agents_objective(tiny_config, tiny_data_config, tmp_path: Path) -> None:
    """What a Hydra sweeper (Optuna) optimises: agent.objective.metric of the finished run."""
    for name, make, metric in (
        ("env", lambda *o: tiny_config("env=pendulum", "checkpoint.save_replay=true", *o), "eval/return_mean"),
        ("data", lambda *o: tiny_data_config("agent.lr_schedule=constant", *o), "eval/loss"),
    ):
        run_dir = tmp_path / name
        first = train(make("total_steps=150"), run_dir=run_dir)
        time.sleep(1.1)
        value = _hydra_main(make("total_steps=200", f"resume={run_dir}"))  # a composed config passes straight in
        record = json.loads((run_dir / "run.json").read_text())
        assert isinstance(value, float) and value == record["objective"]["value"] == record["summary"][metric]
        assert record["objective"]["metric"] == metric and value != first[metric]
        assert [a["status"] for a in record["attempts"]] == ["finished", "finished"]
