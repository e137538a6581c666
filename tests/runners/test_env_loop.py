"""The shared env loop serves a runner it was not written for: tests/runners/rollout.py, an on-policy cadence with
an agent that has no replay, no warm-up and no update() of the off-policy kind, registered with one line for the
runner and one for the agent. It trains, checkpoints, resumes exactly mid-rollout, and loads for rl-eval and the
Python API, with no change to the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from rl_runner import registry
from rl_runner.agents import AGENT_CLASSES
from rl_runner.logging import read_scalars
from tests.contract import assert_loads_alike, assert_resume_is_exact
from tests.runners import rollout

CONF = Path(__file__).resolve().parents[1] / "conf"  # tests/conf: the scripted agent's config group
OVERRIDES = [
    f"hydra.searchpath=[file://{CONF}]",
    "agent=scripted",
    "env=tmaze",
    "env.kwargs.length=3",
    "env.num_envs=2",
    "net.hidden=8",
    "device=cpu",
    "progress=false",
    "total_steps=400",
    "log.every=50",
    "eval.every=200",
    "eval.episodes=3",
    "checkpoint.every=0",
]


@pytest.fixture
def rollout_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.RUNNERS, "rollout", rollout.RUNNER)
    monkeypatch.setitem(AGENT_CLASSES, "scripted", rollout.AGENT)


def test_the_scripted_agent_has_nothing_of_an_off_policy_agent() -> None:
    for method in ("warm_up", "ready_to_learn", "update", "replay_groups"):
        assert not hasattr(rollout.ScriptedPolicy, method), method


def test_a_runner_of_its_own_trains_through_the_shared_env_loop_and_resumes_exactly(
    rollout_runner: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    # 2 envs x 16-step rollouts: an update every 32 steps, so the stop at 230 comes mid-rollout
    stopped, summary, _ = assert_resume_is_exact(straight, resumed, OVERRIDES, 230, monkeypatch)
    assert summary["updates"] == 400 // 32 and summary["episodes"] > 10
    scalars = read_scalars(straight / "tb")
    assert {"loss/reward_mean", "charts/weight_norm", "train/episode_success", "eval/success_rate"} <= set(scalars)
    weights = [value for _, value in scalars["charts/weight_norm"]]
    assert weights[-1] != weights[0]  # the script's learning rule moved the policy
    assert {path.stem for path in stopped.glob("*.pt")} == {"policy", "rollout", "stream", "progress"}
    assert_loads_alike(straight, resumed)


def test_an_evaluation_episode_of_an_env_without_a_time_limit_is_cut(monkeypatch, caplog) -> None:
    import gymnasium as gym

    from rl_runner.runners import env_loop
    from tests.envs.broken import NeverEnds

    class Greedy:
        def train_mode(self, training: bool) -> None: ...

        def reset(self, done, explore: bool) -> None: ...

        def act(self, obs, explore: bool):
            return [0] * len(obs)

    monkeypatch.setattr(env_loop, "UNLIMITED_EPISODE_CUT", 50)
    env = gym.make(gym.envs.registration.EnvSpec(id="NeverEnds", entry_point=NeverEnds))
    assert not env_loop.has_time_limit(env)
    with caplog.at_level("WARNING"):
        result = env_loop.evaluate_policy(Greedy(), env, episodes=2, seed=0)
    assert list(result.returns) == [50.0, 50.0] and "has no time limit" in caplog.text
    assert env_loop.has_time_limit(gym.make("CartPole-v1"))
