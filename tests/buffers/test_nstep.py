"""The n-step accumulator (rl_runner/buffers/nstep.py) against brute force: returns, discounts and flags at
episode ends, parallel envs, state dicts, and windows dropped when new episodes start."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from rl_runner.buffers import NStepAccumulator, NStepTransitions
from rl_runner.clock import Clock
from rl_runner.config import compose_config
from rl_runner.envs.make import make_vector_env
from rl_runner.runners.env_loop import make_agent
from tests.conftest import MINATAR, TINY, step_envs


def reference_nstep(
    obs: list[np.ndarray],
    actions: list[int],
    rewards: list[float],
    final_obs: np.ndarray,
    ending: str,
    n: int,
    gamma: float,
    start: int,
) -> list[tuple]:
    """All n-step transitions of one episode as (emitted at global step, obs, action, return, next_obs, terminated,
    discount); ``ending`` is "terminated", "truncated" or "running" (still going when the data stops)."""
    length = len(rewards)
    following = list(obs[1:]) + [final_obs]
    out = []
    for t in range(length):
        k = min(n, length - t)
        if k < n and ending == "running":
            break
        ret = sum(gamma**i * rewards[t + i] for i in range(k))
        emitted = start + min(t + n - 1, length - 1)  # a full window leaves when full, a short one at the end
        terminal = ending == "terminated" and t + k == length
        out.append((emitted, obs[t], actions[t], ret, following[t + k - 1], terminal, gamma**k))
    return out


def rows(out: NStepTransitions | None) -> list[tuple]:
    """The emitted transitions as (obs, action, return, next_obs, terminated, discount) tuples, in order."""
    if out is None:
        return []
    return [
        (out.obs[i], out.actions[i], out.returns[i], out.next_obs[i], bool(out.terminated[i]), out.discounts[i])
        for i in range(len(out.returns))
    ]


def assert_same_rows(actual: list[tuple], expected: list[tuple]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[2] == pytest.approx(want[2], rel=1e-12, abs=1e-12)
        np.testing.assert_array_equal(got[3], want[3])
        assert got[4] == want[4]
        assert got[5] == pytest.approx(want[5], rel=1e-12)


N, GAMMA = 3, 0.9
REWARDS = [1.0, 2.0, 4.0, 8.0, 16.0]


def run_single_episode(ending: str) -> list[list[tuple]]:
    """Steps t = 0..4 of one env with obs [t, -t], action t; the last step ends by ``ending``; output per step."""
    acc = NStepAccumulator(N, GAMMA, num_envs=1)
    outputs = []
    for t, reward in enumerate(REWARDS):
        last = t == len(REWARDS) - 1
        out = acc.add(
            obs=np.array([[t, -t]], dtype=np.float32),
            actions=np.array([t]),
            rewards=np.array([reward]),
            next_obs=np.array([[t + 1, -(t + 1)]], dtype=np.float32),
            terminated=np.array([last and ending == "terminated"]),
            truncated=np.array([last and ending == "truncated"]),
        )
        outputs.append(rows(out))
    assert all(len(window) == 0 for window in acc.windows)
    return outputs


@pytest.mark.parametrize("ending", ["terminated", "truncated"])
def test_nstep_episode_end_emits_exact_returns_discounts_and_flags(ending: str) -> None:
    """n=3, gamma=0.9, 5 steps: hand-computed returns, gamma^k, next_obs; terminal only for a true termination."""
    outputs = run_single_episode(ending)
    assert [len(o) for o in outputs] == [0, 0, 1, 1, 3]
    emitted = [row for o in outputs for row in o]
    np.testing.assert_allclose([r[2] for r in emitted], [6.04, 12.08, 24.16, 22.4, 16.0], rtol=1e-12)
    np.testing.assert_allclose([r[5] for r in emitted], [0.729, 0.729, 0.729, 0.81, 0.9], rtol=1e-12)
    np.testing.assert_array_equal([r[0] for r in emitted], [[t, -t] for t in range(5)])
    np.testing.assert_array_equal([r[1] for r in emitted], np.arange(5))
    np.testing.assert_array_equal([r[3] for r in emitted], [[3, -3], [4, -4], [5, -5], [5, -5], [5, -5]])
    terminal = ending == "terminated"
    assert [r[4] for r in emitted] == [False, False, terminal, terminal, terminal]


def test_nstep_parallel_envs_with_different_episode_lengths_never_mix() -> None:
    """Two envs with interleaved episodes of different lengths and endings equal a per-episode brute force."""
    n, gamma = 3, 0.8
    rng = np.random.default_rng(10)
    schedules = {  # per env: (length, ending) of consecutive episodes, 9 steps each
        0: [(2, "terminated"), (1, "truncated"), (4, "truncated"), (2, "running")],
        1: [(5, "terminated"), (4, "running")],
    }
    steps: dict[int, list[tuple]] = {0: [], 1: []}  # per env and global step: obs, action, reward, next, term, trunc
    expected: dict[int, list[tuple]] = {0: [], 1: []}
    for env, episodes in schedules.items():
        for episode, (length, ending) in enumerate(episodes):
            obs = [np.array([env, episode, t], dtype=np.float32) for t in range(length + 1)]
            actions = [int(rng.integers(0, 5)) for _ in range(length)]
            rewards = [float(rng.normal()) for _ in range(length)]
            start = len(steps[env])
            for t in range(length):
                last = t == length - 1
                terminated, truncated = last and ending == "terminated", last and ending == "truncated"
                steps[env].append((obs[t], actions[t], rewards[t], obs[t + 1], terminated, truncated))
            expected[env] += reference_nstep(obs[:-1], actions, rewards, obs[-1], ending, n, gamma, start)
    acc = NStepAccumulator(n, gamma, num_envs=2)
    got: dict[int, list[tuple]] = {0: [], 1: []}
    for step in range(9):
        columns = list(zip(steps[0][step], steps[1][step]))
        out = acc.add(*(np.stack([np.asarray(c) for c in column]) for column in columns))
        for row in rows(out):
            assert row[0][0] == row[3][0] and row[0][1] == row[3][1]  # same env, same episode
            got[int(row[0][0])].append((step, *row))
    for env in (0, 1):
        assert [g[0] for g in got[env]] == [e[0] for e in expected[env]]  # emitted at the right step
        assert_same_rows([g[1:] for g in got[env]], [e[1:] for e in expected[env]])
    assert [len(w) for w in acc.windows] == [2, 2]  # the running episodes wait: n - 1 steps each


def test_nstep_with_n_one_gives_plain_one_step_transitions() -> None:
    """n=1: every step of every env leaves at once as (obs, action, r, next_obs, terminated, gamma)."""
    rng = np.random.default_rng(11)
    acc = NStepAccumulator(1, 0.99, num_envs=3)
    for _ in range(20):
        obs, next_obs = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
        actions, rewards = rng.integers(0, 4, size=3), rng.normal(size=3)
        terminated, truncated = rng.random(3) < 0.2, rng.random(3) < 0.2
        out = acc.add(obs, actions, rewards, next_obs, terminated, truncated)
        assert out is not None
        np.testing.assert_array_equal(out.obs, obs)
        np.testing.assert_array_equal(out.actions, actions)
        np.testing.assert_array_equal(out.returns, rewards)
        np.testing.assert_array_equal(out.next_obs, next_obs)
        np.testing.assert_array_equal(out.terminated, terminated)
        np.testing.assert_allclose(out.discounts, [0.99] * 3, rtol=1e-15)
    assert all(len(w) == 0 for w in acc.windows)


def test_nstep_state_dict_round_trip_mid_episode() -> None:
    """Windows saved mid-episode (a snapshot) and loaded elsewhere emit exactly what the original emits."""
    rng = np.random.default_rng(12)
    data = [
        (
            rng.normal(size=(2, 3)),
            rng.integers(0, 4, size=2),
            rng.normal(size=2),
            rng.normal(size=(2, 3)),
            np.array([step == 6, False]),
            np.array([False, step == 7]),
        )
        for step in range(12)
    ]
    acc = NStepAccumulator(4, 0.95, num_envs=2)
    for step in range(5):
        acc.add(*data[step])
    assert [len(w) for w in acc.windows] == [3, 3]
    buffer = io.BytesIO()
    torch.save(acc.state_dict(), buffer)
    in_memory = acc.state_dict()  # must not follow the windows as they move on
    original = [rows(acc.add(*data[step])) for step in range(5, 12)]
    buffer.seek(0)
    for state in (torch.load(buffer, weights_only=False), in_memory):
        loaded = NStepAccumulator(4, 0.95, num_envs=2)
        loaded.load_state_dict(state)
        resumed = [rows(loaded.add(*data[step])) for step in range(5, 12)]
        for a, b in zip(original, resumed):
            assert_same_rows(b, a)
    assert sum(len(o) for o in original) > 0
    with pytest.raises(ValueError):
        NStepAccumulator(3, 0.95, num_envs=2).load_state_dict(acc.state_dict())


def test_starting_new_episodes_drops_the_waiting_n_step_windows() -> None:
    """A resume that cannot restore its env starts new episodes (the runner resets every env): steps waiting in
    the n-step windows belong to the old episodes and must not be joined to the new ones."""
    cfg = compose_config([*TINY, *MINATAR, "agent.n_step=3"])
    envs = make_vector_env(cfg.env)
    agent = make_agent(cfg, envs, torch.device("cpu"), Clock(horizon=1000))
    obs, _ = envs.reset(seed=0)
    rng = np.random.default_rng(0)
    while not agent.nstep.windows[0]:
        transition, obs = step_envs(envs, obs, rng)
        agent.observe(transition)
    agent.reset(np.ones(1, dtype=bool), explore=False)  # an evaluation episode's reset leaves training alone
    assert agent.nstep.windows[0]
    agent.reset(np.ones(1, dtype=bool))
    assert not agent.nstep.windows[0]
    envs.close()
