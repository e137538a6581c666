"""The brute-force truth for EpisodeReplay, shared by its tests and the DRQN agent's: ``Feeder`` writes steps
whose content encodes where they came from and keeps the segments they form, ``check_batch`` checks a
sampled batch against it."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch

from rl_runner.buffers.episodes import EpisodeReplay, SequenceBatch
from rl_runner.choices import SequenceReplay

CPU = torch.device("cpu")
EPISODES, WINDOWS = SequenceReplay.episodes, SequenceReplay.windows


OBS = 4  # a replay test step is observed as (env, episode, step in the episode, steps its env wrote before it)
STEP = np.array([0.0, 0.0, 1.0, 1.0], dtype=np.float32)  # next_obs = obs + STEP


def action_of(env: int, g: np.ndarray | int) -> np.ndarray:
    return np.asarray((np.asarray(g) + 2 * env) % 3, dtype=np.float32)


def reward_of(env: int, g: np.ndarray | int) -> np.ndarray:
    return np.asarray(1000.0 * env + np.asarray(g) + 0.5, dtype=np.float32)


def state_of(env: int, g: np.ndarray | int) -> np.ndarray:
    """The 'acting state' stored with step g of env (state_size 2)."""
    return np.asarray([float(g), env + 0.5], dtype=np.float32)


class Segment(NamedTuple):
    env: int
    episode: int
    first_step: int  # step in the episode
    first_g: int  # steps its env wrote before it
    length: int


Plan = Callable[[int, int], tuple[int, bool]]  # (env, episode) -> (length, terminated at the end: else truncated)


class random_plan:
    """Episodes of 1..max_length steps, terminated or truncated at random (a deep copy draws the same future)."""

    def __init__(self, seed: int, max_length: int) -> None:
        self.rng, self.max_length = np.random.default_rng(seed), max_length

    def __call__(self, env: int, episode: int) -> tuple[int, bool]:
        return int(self.rng.integers(1, self.max_length + 1)), bool(self.rng.random() < 0.5)


class Feeder:
    """Writes one step of every env per ``add`` into an EpisodeReplay and keeps the truth by brute force: the
    documented segments (an episode cut at its end, at ``max_segment`` steps, or by ``cut``), which steps end
    in a terminal state, and how many steps each env wrote."""

    def __init__(
        self, replay: EpisodeReplay, mode: SequenceReplay, region: int, length: int, burn_in: int, plan: Plan
    ) -> None:
        self.replay, self.mode, self.region, self.length, self.burn_in, self.plan = (
            replay,
            mode,
            region,
            length,
            burn_in,
            plan,
        )
        self.state_size = 2 if "state" in replay.layout.shapes else 0
        self.max_segment = length if mode is EPISODES else region // 2
        n = replay.num_envs
        self.episode = np.zeros(n, dtype=np.int64)
        self.step = np.zeros(n, dtype=np.int64)
        self.g = np.zeros(n, dtype=np.int64)
        self.seg_start = np.zeros(n, dtype=np.int64)
        planned = [plan(e, 0) for e in range(n)]
        self.planned_length = np.array([p[0] for p in planned])
        self.planned_terminal = np.array([p[1] for p in planned])
        self.segments: list[Segment] = []
        self.terminal_steps: set[tuple[int, int]] = set()

    def _close(self, env: int) -> None:
        length = int(self.step[env] - self.seg_start[env])
        if length > 0:
            self.segments.append(
                Segment(env, int(self.episode[env]), int(self.seg_start[env]), int(self.g[env]) - length, length)
            )
            self.seg_start[env] = self.step[env]

    def _new_episode(self, env: int) -> None:
        self.episode[env] += 1
        self.step[env] = self.seg_start[env] = 0
        self.planned_length[env], self.planned_terminal[env] = self.plan(env, int(self.episode[env]))

    def add(self) -> None:
        n = self.replay.num_envs
        envs = np.arange(n)
        ends = self.step + 1 >= self.planned_length
        terminated, truncated = ends & self.planned_terminal, ends & ~self.planned_terminal
        obs = np.stack([envs, self.episode, self.step, self.g], axis=1).astype(np.float32)
        states = None
        if self.state_size:
            states = torch.from_numpy(np.stack([state_of(e, self.g[e]) for e in envs]))
        actions = np.array([action_of(e, self.g[e]) for e in envs])
        rewards = np.array([reward_of(e, self.g[e]) for e in envs])
        self.replay.add(obs, actions, rewards, obs + STEP, terminated, truncated, states=states)
        for e in np.flatnonzero(terminated):
            self.terminal_steps.add((int(e), int(self.g[e])))
        self.g += 1
        self.step += 1
        for e in range(n):
            if ends[e] or self.step[e] - self.seg_start[e] >= self.max_segment:
                self._close(e)
            if ends[e]:
                self._new_episode(e)

    def cut(self, envs: np.ndarray) -> None:
        """Abandon the open episodes of ``envs`` (as a reset the replay did not see)."""
        for e in np.flatnonzero(envs):
            if self.step[e] > self.seg_start[e]:
                self._close(e)
                self._new_episode(e)
        self.replay.cut(envs)

    def alive(self) -> list[Segment]:
        """Closed segments none of whose steps has been overwritten by the env's ring."""
        return [s for s in self.segments if s.first_g >= self.g[s.env] - self.region]


def check_batch(batch: SequenceBatch, feeder: Feeder) -> list[tuple[Segment, int]]:
    """Every row of ``batch`` against the truth; returns each row's (segment, window offset in the segment)."""
    mask = batch.mask.numpy()
    obs, next_obs = batch.obs.numpy(), batch.next_obs.numpy()
    actions, rewards, terminated = batch.actions.numpy(), batch.rewards.numpy(), batch.terminated.numpy()
    burn, burn_obs = batch.burn_in_lengths, batch.burn_in_obs.numpy()
    for name, value in batch._asdict().items():
        if value is not None:
            assert torch.isfinite(value.float()).all(), name
    assert burn.dtype == torch.int64 and burn.device.type == "cpu"
    batch_size, width = mask.shape
    lengths = mask.sum(axis=1).astype(np.int64)
    assert width == lengths.max(), "the batch is as wide as its longest window"
    assert burn_obs.shape[:2] == (batch_size, int(burn.max())), "the burn-in is as wide as its longest burn-in"
    alive = feeder.alive()
    found = []
    for b in range(batch_size):
        n = int(lengths[b])
        assert n >= 1
        np.testing.assert_array_equal(mask[b], (np.arange(width) < n).astype(np.float32))
        e, ep, s0, g0 = (int(v) for v in obs[b, 0])
        t = np.arange(n)
        want = np.stack([np.full(n, e), np.full(n, ep), s0 + t, g0 + t], axis=1).astype(np.float32)
        np.testing.assert_array_equal(obs[b, :n], want, err_msg=f"row {b}: not consecutive steps of one episode")
        np.testing.assert_array_equal(next_obs[b, :n], want + STEP)
        np.testing.assert_array_equal(next_obs[b, : n - 1], obs[b, 1:n])
        np.testing.assert_array_equal(actions[b, :n], action_of(e, g0 + t))
        np.testing.assert_array_equal(rewards[b, :n], reward_of(e, g0 + t))
        np.testing.assert_array_equal(terminated[b, :n], [float((e, g0 + i) in feeder.terminal_steps) for i in t])
        holders = [
            s
            for s in alive
            if (s.env, s.episode) == (e, ep) and s.first_step <= s0 and s0 + n <= s.first_step + s.length
        ]
        assert len(holders) == 1, (
            f"row {b}: steps {s0}..{s0 + n - 1} of env {e} episode {ep} lie in no closed, stored segment"
        )
        segment = holders[0]
        offset = s0 - segment.first_step
        if feeder.mode is EPISODES:
            assert offset == 0 and n == segment.length, "episodes mode samples whole segments"
        else:
            assert offset <= max(segment.length - feeder.length, 0)
            assert n == min(feeder.length, segment.length - offset)
        for field in (obs, next_obs, actions, rewards, terminated):  # padding repeats the last real step
            np.testing.assert_array_equal(field[b, n:], np.broadcast_to(field[b, n - 1], field[b, n:].shape))
        k = int(burn[b])
        assert k == min(offset, feeder.burn_in), f"row {b}: burn-in {k} at offset {offset}"
        before = np.arange(-k, 0)
        want_burn = np.stack([np.full(k, e), np.full(k, ep), s0 + before, g0 + before], axis=1).astype(np.float32)
        np.testing.assert_array_equal(burn_obs[b, :k], want_burn.reshape(k, OBS))
        if feeder.state_size:
            np.testing.assert_array_equal(batch.start_state[b].numpy(), state_of(e, g0 - k))
        else:
            assert batch.start_state is None
        found.append((segment, offset))
    return found
