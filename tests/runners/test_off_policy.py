"""The off-policy loop (rl_runner/runners/off_policy.py): update cadence over parallel envs, final observations
at time limits, real terminations, learning-only reward transforms, warm-up actions and the refill of a replay
that a resume did not find in its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rl_runner.agents.base import Transition
from rl_runner.agents.ddpg import DDPG
from rl_runner.buffers import ReplayBuffer
from rl_runner.checkpoint import latest_checkpoint, load_state
from rl_runner.logging import read_scalars
from rl_runner.runners.off_policy import OffPolicyLoop
from rl_runner.training import train


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


def test_training_loop_stores_the_final_observation_at_time_limits(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config(
        "env=pendulum",
        "env.num_envs=2",
        "total_steps=440",
        "agent.learning_starts=10000",
        "eval.every=0",
        "checkpoint.every=0",
        "checkpoint.save_replay=true",
    )
    train(cfg, run_dir=tmp_path)
    from rl_runner.checkpoint import latest_checkpoint, load_state

    replay = ReplayBuffer(10000, (3,), (1,), torch.device("cpu"))
    replay.load_state_dict(load_state(latest_checkpoint(tmp_path / "checkpoints"), "replay"))
    stored = replay.stored()
    obs, next_obs = stored.obs.reshape(220, 2, 3), stored.next_obs.reshape(220, 2, 3)
    truncated = stored.truncated.reshape(220, 2)
    assert truncated[199].tolist() == [1.0, 1.0] and truncated.sum() == 2 and stored.terminated.sum() == 0
    assert torch.equal(next_obs[:199], obs[1:200])
    assert not torch.allclose(next_obs[199], obs[200])
    # Pendulum's observation is (cos, sin, angular velocity): a real successor of the final state
    assert torch.allclose(next_obs[199, :, 0] ** 2 + next_obs[199, :, 1] ** 2, torch.ones(2))


def test_training_loop_marks_real_terminations_as_terminal(tiny_config, tmp_path: Path) -> None:
    """Hopper falls over under random actions: those transitions are terminal, not truncated, and carry
    the fallen state as next_obs."""
    cfg = tiny_config(
        "env=halfcheetah",
        "env.id=Hopper-v5",
        "total_steps=300",
        "agent.learning_starts=10000",
        "eval.every=0",
        "eval.episodes=0",
        "checkpoint.every=0",
        "checkpoint.save_replay=true",
    )
    summary = train(cfg, run_dir=tmp_path)
    from rl_runner.checkpoint import latest_checkpoint, load_state

    replay = ReplayBuffer(10000, (11,), (3,), torch.device("cpu"))
    replay.load_state_dict(load_state(latest_checkpoint(tmp_path / "checkpoints"), "replay"))
    stored = replay.stored()
    ends = torch.nonzero(stored.terminated).flatten().tolist()
    assert len(ends) == summary["episodes"] > 0 and stored.truncated.sum() == 0
    for end in ends[:-1]:
        assert torch.equal(stored.next_obs[end - 1], stored.obs[end])  # chained up to the fall
        assert not torch.equal(stored.next_obs[end], stored.obs[end + 1])  # the next row starts a new episode


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


def test_warm_up_actions_do_not_replay_the_env_reset_noise(tiny_config) -> None:
    """default_rng(seed) and env.reset(seed=seed) are the same PCG64 stream: Pendulum's first warm-up torque was
    an exact function of env 0's initial angle."""
    import gymnasium as gym

    from rl_runner.clock import Clock
    from rl_runner.envs.make import make_vector_env
    from rl_runner.runners.off_policy import random_actions
    from tests.conftest import make_agent

    for seed in range(5):
        cfg = tiny_config("env=pendulum", f"seed={seed}")
        envs = make_vector_env(cfg.env)
        loop = OffPolicyLoop(cfg, make_agent(cfg), envs, gym.make("Pendulum-v1"), Clock(horizon=300))
        loop.begin(None)
        theta = float(envs.envs[0].unwrapped.state[0])
        torque = float(random_actions(envs.single_action_space, loop.rng, 1)[0, 0])
        assert not np.isclose((torque + 2) / 4, (theta + np.pi) / (2 * np.pi))
        reused = float(random_actions(envs.single_action_space, np.random.default_rng(seed), 1)[0, 0])
        assert np.isclose((reused + 2) / 4, (theta + np.pi) / (2 * np.pi))  # what the old stream gave
        envs.close()


def record_the_loop(monkeypatch) -> list[tuple[str, int]]:
    """``(what, step)`` for each step of DDPG's off-policy loop and each update: ``random`` (uniform warm-up actions,
    the agent told by ``warm_up``), ``policy`` (``act`` exploring) or ``update``, at the clock's step before it."""
    from rl_runner.runners import off_policy

    seen: list[tuple[str, int]] = []
    warm_up, act, update = DDPG.warm_up, DDPG.act, DDPG.update
    random_actions = off_policy.random_actions

    def warming_up(self: DDPG, obs: np.ndarray) -> None:
        seen.append(("warm_up", self.clock.step))
        warm_up(self, obs)

    def acting(self: DDPG, obs: np.ndarray, explore: bool) -> np.ndarray:
        if explore:
            seen.append(("policy", self.clock.step))
        return act(self, obs, explore)

    def updating(self: DDPG) -> dict:
        seen.append(("update", self.clock.step))
        return update(self)

    def at_random(space: Any, rng: np.random.Generator, count: int) -> np.ndarray:
        seen.append(("random", seen[-1][1] if seen else 0))  # just told by warm_up, at this step
        return random_actions(space, rng, count)

    monkeypatch.setattr(DDPG, "warm_up", warming_up)
    monkeypatch.setattr(DDPG, "act", acting)
    monkeypatch.setattr(DDPG, "update", updating)
    monkeypatch.setattr(off_policy, "random_actions", at_random)
    return seen


def resumed_without_the_replay(tiny_config, run_dir: Path, monkeypatch, *overrides: str) -> list[tuple[str, int]]:
    """Pendulum to step 200 (learning from 100), then resumed from that checkpoint without its replay to 400: what
    the resumed run did, step by step."""
    common = ["env=pendulum", "eval.every=0", "eval.episodes=0", "checkpoint.every=0", *overrides]
    train(tiny_config(*common, "total_steps=200"), run_dir=run_dir)
    seen = record_the_loop(monkeypatch)
    summary = train(tiny_config(*common, "total_steps=400", f"resume={run_dir}"), run_dir=run_dir)
    assert summary["step"] == 400
    return seen


def steps_of(seen: list[tuple[str, int]], what: str) -> list[int]:
    return [step for kind, step in seen if kind == what]


def test_a_resume_without_the_replay_refills_it_with_the_policy(
    tiny_config, one_thread, tmp_path: Path, monkeypatch
) -> None:
    """A HalfCheetah run resumed at 25K steps without its replay must not start again from uniform random actions:
    the trained policy, exploring, refills learning_starts transitions, and updates start once the replay holds
    them."""
    seen = resumed_without_the_replay(tiny_config, tmp_path, monkeypatch)
    assert steps_of(seen, "policy") == list(range(200, 400)) and not steps_of(seen, "random")
    assert not steps_of(seen, "warm_up")
    assert steps_of(seen, "update") == list(range(300, 401))  # after the 100th transition of the refill


def test_refill_random_refills_the_replay_with_uniformly_random_actions(
    tiny_config, one_thread, tmp_path: Path, monkeypatch
) -> None:
    seen = resumed_without_the_replay(tiny_config, tmp_path / "without", monkeypatch, "checkpoint.refill=random")
    assert steps_of(seen, "random") == steps_of(seen, "warm_up") == list(range(200, 300))
    assert steps_of(seen, "policy") == list(range(300, 400))
    assert steps_of(seen, "update") == list(range(300, 401))
    # a resume that found the replay has nothing to refill: the policy acts, updates go on at once
    monkeypatch.undo()
    seen = resumed_without_the_replay(
        tiny_config, tmp_path / "with", monkeypatch, "checkpoint.refill=random", "checkpoint.save_replay=true"
    )
    assert steps_of(seen, "policy") == list(range(200, 400)) and not steps_of(seen, "random")
    assert steps_of(seen, "update") == list(range(201, 401))
