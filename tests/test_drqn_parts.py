"""DRQN's parts against brute-force references: the episode-sequence replay (provenance of every sampled step,
ring wrap, padding, burn-in, checkpoints), the recurrent core and Q-network (one call = step by step), and the
agent's loss (a per-row, per-step loop), its acting state around updates, resets and evaluation."""

from __future__ import annotations

import copy
import dataclasses
import io
import math
from typing import Callable, NamedTuple

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

from rl_runner.agents.base import Transition
from rl_runner.agents.drqn import DRQN
from rl_runner.buffers.episodes import EpisodeReplay, SequenceBatch
from rl_runner.choices import Activation, Init, Norm, RecurrentCell, SequenceReplay
from rl_runner.clock import Clock
from rl_runner.envs.make import make_env
from rl_runner.networks.recurrent import RecurrentCore, RecurrentQNetwork
from rl_runner.schemas import MLPConfig
from tests.conftest import make_agent

CPU = torch.device("cpu")
EPISODES, WINDOWS = SequenceReplay.episodes, SequenceReplay.windows
CELLS = [RecurrentCell.lstm, RecurrentCell.gru, RecurrentCell.none]
OBS = 4  # a replay test step is observed as (env, episode, step in the episode, steps its env wrote before it)
STEP = np.array([0.0, 0.0, 1.0, 1.0], dtype=np.float32)  # next_obs = obs + STEP
NET = {"name": "mlp", "hidden": 8, "depth": 1, "norm": Norm.none, "init": Init.default, "activation": Activation.relu}


# ---------------------------------------------------------------------------------------------------------------
# helpers and brute-force references


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


def make_replay(
    mode: SequenceReplay, num_envs: int, region: int, length: int, burn_in: int = 0, state_size: int = 0, seed: int = 0
) -> EpisodeReplay:
    return EpisodeReplay(num_envs * region, OBS, state_size, num_envs, CPU, mode, length, burn_in, seed)


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


def row_keys(batch: SequenceBatch) -> list[tuple[int, int, int]]:
    """(env, episode, first step) of each row, without any checks: for counting many draws."""
    return [tuple(int(v) for v in row) for row in batch.obs[:, 0, :3].numpy()]


def chi_square_bound(dof: int, z: float = 3.09) -> float:
    """The upper 0.1% point of a chi-square with ``dof`` degrees of freedom (Wilson-Hilferty)."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def make_drqn(**overrides) -> DRQN:
    kwargs = dict(
        gamma=0.9,
        lr=1e-2,
        adam_eps=1e-8,
        batch_size=4,
        buffer_size=400,
        learning_starts=8,
        target_update=1000,
        tau=1.0,
        grad_clip=10.0,
        double=True,
        dueling=False,
        cell=RecurrentCell.lstm,
        rnn_hidden=6,
        replay=EPISODES,
        sequence_length=4,
        burn_in=0,
        stored_state=False,
        epsilon_start=0.0,
        epsilon_end=0.0,
        epsilon_fraction=0.5,
        eval_epsilon=0.0,
        compile=False,
        net=NET,
        observation_space=gym.spaces.Box(-np.inf, np.inf, shape=(OBS,), dtype=np.float32),
        action_space=gym.spaces.Discrete(3),
        num_envs=1,
        device=CPU,
        clock=Clock(horizon=1000),
    )
    kwargs.update(overrides)
    torch.manual_seed(0)  # the networks' init and the replay's seed: the same whichever tests ran before
    return DRQN(**kwargs)


def hand_batch(
    lengths: list[int], burn: list[int], state_size: int, num_actions: int = 3, seed: int = 0
) -> SequenceBatch:
    """A batch as the replay makes it: windows padded at the end by repeating the last real step, burn-ins
    padded at the end, consistent obs/next_obs, a terminal step at the end of row 0."""
    gen = torch.Generator().manual_seed(seed)
    rows, width, k = len(lengths), max(lengths), max(burn)
    chain = torch.randn(rows, width + 1, OBS, generator=gen)
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).float()
    actions = torch.randint(num_actions, (rows, width), generator=gen).float()
    rewards = 2 * torch.randn(rows, width, generator=gen)
    terminated = torch.zeros(rows, width)
    terminated[0, lengths[0] - 1] = 1.0
    obs, next_obs = chain[:, :-1].clone(), chain[:, 1:].clone()
    burn_obs = torch.randn(rows, k, OBS, generator=gen)
    for b, n in enumerate(lengths):
        for field in (obs, next_obs, actions, rewards, terminated):
            field[b, n:] = field[b, n - 1]
        burn_obs[b, burn[b] :] = burn_obs[b, burn[b] - 1] if burn[b] else 0.0
    start = 0.5 * torch.randn(rows, state_size, generator=gen) if state_size else None
    return SequenceBatch(obs, actions, rewards, next_obs, terminated, mask, burn_obs, torch.tensor(burn), start)


def reference_loss(agent: DRQN, batch: SequenceBatch) -> torch.Tensor:
    """The masked mean Huber TD loss, one row and one real step at a time: burn-in without gradients from
    the start state (or zero), then the online net along obs_0, next_obs_0, ..., double-Q (or plain) targets
    from the target net run along the same inputs from the same start."""
    state_size = agent.online.state_size
    terms = []
    for b in range(batch.obs.shape[0]):
        start = batch.start_state[b : b + 1] if batch.start_state is not None else torch.zeros(1, state_size)
        online_state, target_state = start, start
        with torch.no_grad():
            for k in range(int(batch.burn_in_lengths[b])):
                x = batch.burn_in_obs[b, k].view(1, 1, -1)
                _, online_state = agent.online(x, online_state)
                _, target_state = agent.target(x, target_state)
        x = batch.obs[b, 0].view(1, 1, -1)
        q, online_state = agent.online(x, online_state)
        with torch.no_grad():
            _, target_state = agent.target(x, target_state)
        for t in range(int(batch.mask[b].sum())):
            x = batch.next_obs[b, t].view(1, 1, -1)
            q_next, online_state = agent.online(x, online_state)
            with torch.no_grad():
                q_target_next, target_state = agent.target(x, target_state)
                best = int((q_next if agent.double else q_target_next)[0, 0].argmax())
                y = batch.rewards[b, t] + agent.gamma * (1 - batch.terminated[b, t]) * q_target_next[0, 0, best]
            error = q[0, 0, int(batch.actions[b, t])] - y
            terms.append(0.5 * error**2 if error.abs() < 1 else error.abs() - 0.5)
            q = q_next
    return torch.stack(terms).mean()


def loss_and_grads(agent: DRQN, batch: SequenceBatch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    loss, _ = agent._losses(batch)
    return loss.detach(), [g.clone() for g in torch.autograd.grad(loss, agent.params)]


def assert_same_loss(a: tuple, b: tuple) -> None:
    torch.testing.assert_close(a[0], b[0], rtol=1e-6, atol=1e-7)
    for ga, gb in zip(a[1], b[1]):
        torch.testing.assert_close(ga, gb, rtol=1e-6, atol=1e-7)


def differs(a: tuple, b: tuple) -> bool:
    return not torch.allclose(a[0], b[0]) and any(not torch.allclose(ga, gb) for ga, gb in zip(a[1], b[1]))


def perturb_target(agent: DRQN, seed: int = 1) -> None:
    """Move the target net away from the online one, so that a mix-up between them shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in agent.target.parameters():
            p.add_(0.6 * torch.randn(p.shape, generator=gen))


# ---------------------------------------------------------------------------------------------------------------
# EpisodeReplay

MODES = [pytest.param(EPISODES, 4, 0, id="episodes"), pytest.param(WINDOWS, 3, 2, id="windows-burn-in")]


@pytest.mark.parametrize("mode, length, burn_in", MODES)
def test_sampled_rows_are_consecutive_steps_of_one_closed_segment_and_cover_it_uniformly(
    mode: SequenceReplay, length: int, burn_in: int
) -> None:
    """3 envs whose episodes (1-9 steps, terminated or truncated) end at different times: every row's real steps
    are consecutive steps of one closed segment of one env (next_obs[t] = obs[t+1]), whole segments in episodes
    mode, windows with their burn-in in windows mode; every segment / window position is drawn, uniformly."""
    region = 200
    replay = make_replay(mode, 3, region, length, burn_in, seed=1)
    feeder = Feeder(replay, mode, region, length, burn_in, random_plan(2, max_length=9))
    with pytest.raises(RuntimeError):
        replay.sample(1)
    for step in range(120):
        feeder.add()
        assert replay.sampleable() == len(feeder.alive())
        if replay.sampleable() and step % 6 == 0:
            check_batch(replay.sample(16), feeder)
    assert len({s.env for s in feeder.segments}) == 3 and len(replay) == 360
    for row in check_batch(replay.sample(64), feeder):
        assert row[0].length <= feeder.max_segment
    # every position once per segment (episodes) or once per window start (windows), equally likely
    positions = {
        (s.env, s.episode, s.first_step + offset): s
        for s in feeder.alive()
        for offset in range(max(s.length - length, 0) + 1 if mode is WINDOWS else 1)
    }
    counts = dict.fromkeys(positions, 0)
    draws = 0
    for _ in range(25):
        for key in row_keys(replay.sample(400)):
            assert key in counts, key
            counts[key] += 1
            draws += 1
    observed = np.array(list(counts.values()))
    expected = draws / len(positions)
    assert observed.min() > 0, "some segment or window position is never drawn"
    chi_square = ((observed - expected) ** 2 / expected).sum()
    assert chi_square < chi_square_bound(len(positions) - 1), (chi_square, len(positions))


@pytest.mark.parametrize(
    "mode, max_segment", [pytest.param(EPISODES, 3, id="episodes"), pytest.param(WINDOWS, 10, id="windows")]
)
def test_open_episodes_are_not_sampled_until_they_end_or_are_cut(mode: SequenceReplay, max_segment: int) -> None:
    """Env 0 runs a 14-step episode while env 1 ends one every step: env 0's steps appear only in chunks of
    max_segment (sequence_length in episodes mode, half the env's region in windows mode) once a chunk is
    complete, and the tail only once the episode ends."""
    region = 20
    plan: Plan = lambda env, episode: (14, True) if (env, episode) == (0, 0) else (1, False)  # noqa: E731
    replay = make_replay(mode, 2, region, 3, seed=3)
    feeder = Feeder(replay, mode, region, 3, 0, plan)
    for written in range(1, 15):
        feeder.add()
        rows = check_batch(replay.sample(64), feeder)
        sampled = [(s, off) for s, off in rows if s.env == 0]
        steps = {s.first_step + off + i for s, off in sampled for i in range(min(3, s.length - off))}
        closed = 14 if written == 14 else (written // max_segment) * max_segment
        assert all(s < closed for s in steps), (written, sorted(steps))
        assert bool(sampled) == (closed > 0), (written, closed)
    rows = check_batch(replay.sample(512), feeder)
    assert max(s.first_step + off + min(3, s.length - off) - 1 for s, off in rows if s.env == 0) == 13  # the tail
    assert [s.length for s in feeder.segments if s.env == 0] == ([3, 3, 3, 3, 2] if mode is EPISODES else [10, 4])


@pytest.mark.parametrize(
    "mode, length, burn_in", [pytest.param(EPISODES, 3, 0, id="episodes"), pytest.param(WINDOWS, 2, 2, id="windows")]
)
def test_ring_wrap_samples_only_stored_steps_including_wrapped_segments(
    mode: SequenceReplay, length: int, burn_in: int
) -> None:
    """2 envs with 10-step regions and many episodes: a sample holds only steps still stored, segments whose
    first step was overwritten are never drawn, and segments wrapping round the end of a region are drawn whole."""
    region = 10
    replay = make_replay(mode, 2, region, length, burn_in, seed=4)
    feeder = Feeder(replay, mode, region, length, burn_in, random_plan(5, max_length=8))
    wrapped = 0
    for _ in range(250):
        feeder.add()
        assert replay.sampleable() == len(feeder.alive())
        if replay.sampleable():
            for segment, _ in check_batch(replay.sample(8), feeder):
                wrapped += segment.first_g % region + segment.length > region
    assert len(feeder.segments) > 2 * len(feeder.alive()), "most segments were overwritten"
    assert wrapped > 0, "no sampled segment wrapped round its region's end"
    assert len(replay) == 2 * region


def test_episodes_mode_pads_to_the_longest_sampled_episode_by_repeating_its_last_step() -> None:
    """Episodes of 1, 4, 2, 3, 6 (cut 4 + 2) steps: a batch is as wide as its longest row (a batch of one row is
    exactly that row), mask is 1 exactly on real steps, padded steps repeat the row's last real step."""
    lengths = iter([1, 4, 2, 3, 6] * 10)
    replay = make_replay(EPISODES, 1, 40, 4, seed=6)
    feeder = Feeder(replay, EPISODES, 40, 4, 0, lambda env, episode: (next(lengths), episode % 2 == 0))
    for _ in range(16):
        feeder.add()
    rows = check_batch(replay.sample(64), feeder)
    assert {s.length for s, _ in rows} == {1, 2, 3, 4}
    for _ in range(20):
        batch = replay.sample(1)
        ((segment, _),) = check_batch(batch, feeder)
        assert batch.mask.shape == (1, segment.length) and batch.mask.sum() == segment.length
    batch = replay.sample(64)
    short = int(torch.argmin(batch.mask.sum(1)))
    assert batch.mask.shape[1] == 4 and batch.mask[short].sum() == 1
    assert (batch.rewards[short] == batch.rewards[short, 0]).all() and (batch.obs[short] == batch.obs[short, 0]).all()


def test_windows_burn_in_holds_the_steps_before_the_window_and_start_state_is_the_stored_one() -> None:
    """Windows with burn_in 3 and stored states: burn-in rows are the steps right before the window in its
    episode, burn_in_lengths = min(offset, burn_in) (0 at an episode start), and start_state is the state
    stored with the first burn-in step, or with the first window step without burn-in."""
    region, length, burn_in = 100, 2, 3
    replay = make_replay(WINDOWS, 2, region, length, burn_in, state_size=2, seed=7)
    feeder = Feeder(replay, WINDOWS, region, length, burn_in, random_plan(8, max_length=10))
    for _ in range(90):
        feeder.add()
    burns, offsets = [], []
    for _ in range(3):
        batch = replay.sample(64)
        rows = check_batch(batch, feeder)
        burns += batch.burn_in_lengths.tolist()
        offsets += [offset for _, offset in rows]
    assert set(burns) == {0, 1, 2, 3}
    assert 0 in offsets and max(offsets) > burn_in  # episode starts, and windows deeper than the burn-in
    start_rows = [b for b in range(64) if rows[b][1] == 0]
    for b in start_rows:  # from the first window step's stored state
        assert batch.start_state[b, 0] == batch.obs[b, 0, 3]


def test_cut_closes_open_segments_and_skips_empty_ones() -> None:
    """cut([env 0, env 2]) makes env 0's open 3 steps sampleable, leaves env 1's open episode unsampled, and adds
    nothing for env 2 whose episode just ended; a second cut changes nothing."""
    plan: Plan = lambda env, episode: (3 if env == 2 else 100, True)  # noqa: E731
    replay = make_replay(EPISODES, 3, 16, 8, seed=9)
    feeder = Feeder(replay, EPISODES, 16, 8, 0, plan)
    for _ in range(3):
        feeder.add()
    assert replay.sampleable() == 1
    feeder.cut(np.array([True, False, True]))
    assert replay.sampleable() == 2
    rows = check_batch(replay.sample(64), feeder)
    assert {(s.env, s.length) for s, _ in rows} == {(0, 3), (2, 3)}
    replay.cut(np.array([True, False, True]))
    assert replay.sampleable() == 2
    for _ in range(2):
        feeder.add()
    feeder.cut(np.ones(3, dtype=bool))
    assert replay.sampleable() == 5
    rows = check_batch(replay.sample(128), feeder)
    assert {(s.env, s.first_g, s.length) for s, _ in rows} == {(0, 0, 3), (0, 3, 2), (1, 0, 5), (2, 0, 3), (2, 3, 2)}


@pytest.mark.parametrize(
    "mode, state_size", [pytest.param(EPISODES, 0, id="episodes"), pytest.param(WINDOWS, 2, id="windows-states")]
)
def test_state_dict_round_trip_samples_the_same_batches(mode: SequenceReplay, state_size: int) -> None:
    """A wrapped buffer with open episodes, saved through torch.save: a fresh buffer (another seed) loaded from it
    draws exactly the batches the original would have drawn at save time, and after the same further steps
    the same ones again; a buffer of another size, env count or row width refuses the state."""
    region, length, burn_in = 10, 3, 1 if mode is WINDOWS else 0
    replay = make_replay(mode, 2, region, length, burn_in, state_size, seed=10)
    feeder = Feeder(replay, mode, region, length, burn_in, random_plan(11, max_length=7))
    for _ in range(37):
        feeder.add()
    state = replay.state_dict()
    snapshot = copy.deepcopy(feeder)
    for _ in range(5):  # the saved state is a snapshot: later steps do not leak into it
        feeder.add()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = make_replay(mode, 2, region, length, burn_in, state_size, seed=99)
    loaded.load_state_dict(torch.load(buffer, weights_only=False))
    restored = copy.deepcopy(snapshot)
    restored.replay = loaded

    def same_batches() -> None:
        assert restored.replay.sampleable() == len(restored.alive())
        for _ in range(3):
            a, b = snapshot.replay.sample(16), restored.replay.sample(16)
            check_batch(b, restored)
            for name, value in a._asdict().items():
                other = getattr(b, name)
                assert (value is None and other is None) or torch.equal(value, other), name

    same_batches()
    for _ in range(4):  # the open episodes go on where they were: fewer steps than a region, so none is overwritten
        snapshot.add()
        restored.add()
        same_batches()
    for other in (
        make_replay(mode, 2, region + 1, length, burn_in, state_size),
        make_replay(mode, 1, 2 * region, length, burn_in, state_size),
        make_replay(mode, 2, region, length, burn_in, state_size + 1),
    ):
        with pytest.raises(ValueError):
            other.load_state_dict(state)


def test_buffer_too_small_for_the_sequence_length_is_refused() -> None:
    """Episodes mode needs two sequences per env region: capacity // num_envs >= 2 * sequence_length."""
    for capacity, num_envs in ((15, 1), (47, 3), (1, 1)):
        with pytest.raises(ValueError, match="agent.buffer_size"):
            EpisodeReplay(capacity, OBS, 0, num_envs, CPU, EPISODES, 8, 0, 0)
    for capacity, num_envs in ((16, 1), (48, 3)):
        EpisodeReplay(capacity, OBS, 0, num_envs, CPU, EPISODES, 8, 0, 0)
    with pytest.raises(ValueError, match="agent.buffer_size"):
        EpisodeReplay(5, OBS, 0, 3, CPU, WINDOWS, 2, 1, 0)  # one step per env: no segment fits
    with pytest.raises(ValueError, match="agent.buffer_size"):
        make_drqn(buffer_size=7, sequence_length=4)


# ---------------------------------------------------------------------------------------------------------------
# RecurrentCore and RecurrentQNetwork

STATE_SIZES = {RecurrentCell.lstm: 10, RecurrentCell.gru: 5, RecurrentCell.none: 0}


def make_core(cell: RecurrentCell) -> RecurrentCore:
    torch.manual_seed(0)
    return RecurrentCore(cell, 3, 5, nn.Tanh)


def make_qnet(cell: RecurrentCell, dueling: bool = True) -> RecurrentQNetwork:
    torch.manual_seed(0)
    spec = MLPConfig(name="mlp", hidden=7, depth=1, norm=Norm.none, init=Init.default, activation=Activation.relu)
    return RecurrentQNetwork(3, 4, spec, cell, 5, dueling)


def run_steps(module: nn.Module, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    outputs = []
    for t in range(x.shape[1]):
        out, state = module(x[:, t : t + 1], state)
        outputs.append(out)
    return torch.cat(outputs, dim=1), state


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.value)
def test_one_call_over_a_sequence_equals_stepping_with_the_state(cell: RecurrentCell) -> None:
    """Core and Q-network: a [4, 7] sequence in one call gives the outputs and final state of seven one-step
    calls carrying the state, from a nonzero start state; the flat state is [h, c] (LSTM) or [h] (GRU)."""
    x = torch.randn(4, 7, 3, generator=torch.Generator().manual_seed(1))
    state = 0.5 * torch.randn(4, STATE_SIZES[cell], generator=torch.Generator().manual_seed(2))
    for module in (make_core(cell), make_qnet(cell)):
        assert module.state_size == STATE_SIZES[cell]
        with torch.no_grad():
            out, final = module(x, state)
            out_steps, final_steps = run_steps(module, x, state)
        assert out.shape == (4, 7, 5 if isinstance(module, RecurrentCore) else 4)
        assert final.shape == (4, STATE_SIZES[cell])
        torch.testing.assert_close(out, out_steps, rtol=0, atol=1e-6)
        torch.testing.assert_close(final, final_steps, rtol=0, atol=1e-6)
    core = make_core(cell)
    out, final = core(x, state)
    if cell is not RecurrentCell.none:  # the h half of the state is the last output
        torch.testing.assert_close(final[:, :5], out[:, -1], rtol=0, atol=1e-6)
    assert torch.equal(core.initial_state(3, CPU), torch.zeros(3, STATE_SIZES[cell]))


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.value)
def test_advance_steps_each_row_through_its_own_length(cell: RecurrentCell) -> None:
    """advance(features, lengths, state) equals stepping row b through its first lengths[b] steps; the padding
    after them may hold anything; rows of length 0 keep their state bit for bit; the input state is untouched."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 6, 3, generator=gen)
    lengths = torch.tensor([6, 0, 3, 1, 0])
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = 1e3 * torch.randn(6 - n, 3, generator=gen)
    state = 0.5 * torch.randn(5, STATE_SIZES[cell], generator=gen)
    original = state.clone()
    for module in (make_core(cell), make_qnet(cell)):
        with torch.no_grad():
            advanced = module.advance(x, lengths, state)
            assert advanced.shape == (5, STATE_SIZES[cell])
            assert torch.equal(state, original)
            for b, n in enumerate(lengths.tolist()):
                if n == 0:
                    assert torch.equal(advanced[b], state[b])
                else:
                    _, expected = run_steps(module, x[b : b + 1, :n], state[b : b + 1])
                    torch.testing.assert_close(advanced[b], expected[0], rtol=0, atol=1e-6)
            assert torch.equal(module.advance(x, torch.zeros(5, dtype=torch.int64), state), state)
            assert torch.equal(module.advance(x[:, :0], torch.zeros(5, dtype=torch.int64), state), state)


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.value)
def test_padding_at_the_end_does_not_change_earlier_outputs(cell: RecurrentCell) -> None:
    """Outputs at steps 0..3 of a sequence are the same whether wild padding follows them or not."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 4, 3, generator=gen)
    padded = torch.cat([x, 1e3 * torch.randn(3, 5, 3, generator=gen)], dim=1)
    state = 0.5 * torch.randn(3, STATE_SIZES[cell], generator=gen)
    for module in (make_core(cell), make_qnet(cell)):
        with torch.no_grad():
            short, _ = module(x, state)
            long, _ = module(padded, state)
        torch.testing.assert_close(long[:, :4], short, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.value)
def test_only_the_recurrent_cells_remember_earlier_inputs(cell: RecurrentCell) -> None:
    """Changing the inputs at steps 0..2 changes the outputs at steps 3..5 for lstm and gru and leaves them
    exactly unchanged for none, whose output at a step is that of the step's input alone."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 3, generator=gen)
    changed = x.clone()
    changed[:, :3] = torch.randn(2, 3, 3, generator=gen)
    for module in (make_core(cell), make_qnet(cell)):
        state = torch.zeros(2, STATE_SIZES[cell])
        with torch.no_grad():
            out, _ = module(x, state)
            out_changed, _ = module(changed, state)
            alone, _ = module(x[:, 4:5], state)
        if cell is RecurrentCell.none:
            assert torch.equal(out[:, 3:], out_changed[:, 3:])
            torch.testing.assert_close(alone[:, 0], out[:, 4], rtol=0, atol=1e-6)
        else:
            for t in range(3, 6):
                assert not torch.allclose(out[:, t], out_changed[:, t], atol=1e-5), t


# ---------------------------------------------------------------------------------------------------------------
# DRQN agent

LOSS_CASES = [
    pytest.param(RecurrentCell.lstm, True, False, True, id="lstm-double-stored-state"),
    pytest.param(RecurrentCell.lstm, False, False, False, id="lstm-plain"),
    pytest.param(RecurrentCell.gru, True, True, False, id="gru-double-dueling"),
    pytest.param(RecurrentCell.none, True, False, False, id="none-double"),
]


@pytest.mark.parametrize("cell, double, dueling, stored", LOSS_CASES)
def test_loss_and_gradients_match_a_per_step_reference(
    cell: RecurrentCell, double: bool, dueling: bool, stored: bool
) -> None:
    """_losses on a hand-made batch (rows of 4, 2, 1 real steps; burn-ins of 2, 1, 0; a terminal step) equals
    the loop reference in value and in every parameter's gradient: burn-in without gradient, masked mean over
    real steps only, (double) Q targets from the target net."""
    agent = make_drqn(cell=cell, double=double, dueling=dueling, replay=WINDOWS, burn_in=2, stored_state=stored)
    perturb_target(agent)
    batch = hand_batch([4, 2, 1], [2, 1, 0], agent.online.state_size if stored else 0)
    loss, grads = loss_and_grads(agent, batch)
    expected = reference_loss(agent, batch)
    expected_grads = torch.autograd.grad(expected, agent.params)
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_padded_and_burn_in_padding_steps_carry_no_loss_while_real_steps_do() -> None:
    """Wild rewards, actions, terminations and observations on padded window steps, or wild observations on
    padded burn-in steps, leave the loss and every gradient unchanged; changing a real window step's reward
    or action, or a real burn-in observation, changes them."""
    agent = make_drqn(replay=WINDOWS, burn_in=3)
    perturb_target(agent)
    lengths, burn = [4, 2, 1], [3, 1, 0]
    batch = hand_batch(lengths, burn, 0)
    base = loss_and_grads(agent, batch)
    gen = torch.Generator().manual_seed(7)

    wild = {name: value.clone() for name, value in batch._asdict().items() if value is not None}
    for b, n in enumerate(lengths):
        wild["rewards"][b, n:] = 1e6
        wild["actions"][b, n:] = (wild["actions"][b, n:] + 1) % 3
        wild["terminated"][b, n:] = 1 - wild["terminated"][b, n:]
        wild["obs"][b, n:] = 1e3 * torch.randn(4 - n, OBS, generator=gen)
        wild["next_obs"][b, n:] = 1e3 * torch.randn(4 - n, OBS, generator=gen)
        wild["burn_in_obs"][b, burn[b] :] = 1e3 * torch.randn(3 - burn[b], OBS, generator=gen)
    assert_same_loss(loss_and_grads(agent, batch._replace(**wild)), base)

    for name, row, step, value in (("rewards", 1, 1, 5.0), ("actions", 0, 2, None), ("burn_in_obs", 0, 0, 3.0)):
        changed = getattr(batch, name).clone()
        changed[row, step] = (changed[row, step] + 1) % 3 if value is None else changed[row, step] + value
        assert differs(loss_and_grads(agent, batch._replace(**{name: changed})), base), name


def test_rewards_and_actions_of_stored_burn_in_steps_do_not_reach_the_loss() -> None:
    """Through the agent's own windows replay: overwriting the stored rewards and actions of steps that serve
    only as burn-in in a batch leaves its loss and gradients unchanged; a window step's reward changes them."""
    agent = make_drqn(replay=WINDOWS, burn_in=3, sequence_length=2, buffer_size=200, num_envs=2)
    region = 100
    feeder = Feeder(agent.replay, WINDOWS, region, 2, 3, random_plan(12, max_length=10))
    for _ in range(60):
        feeder.add()
    rng_state = agent.replay.rng.bit_generator.state
    batch = agent.replay.sample(8)
    check_batch(batch, feeder)
    base = loss_and_grads(agent, batch)
    burn_steps, window_steps = set(), set()
    for b in range(8):
        env, g0, k, n = (
            int(batch.obs[b, 0, 0]),
            int(batch.obs[b, 0, 3]),
            int(batch.burn_in_lengths[b]),
            int(batch.mask[b].sum()),
        )
        burn_steps |= {(env, g) for g in range(g0 - k, g0)}
        window_steps |= {(env, g) for g in range(g0, g0 + n)}
    only_burn = burn_steps - window_steps
    assert only_burn
    columns = agent.replay.layout.columns
    storage = agent.replay.storage
    for env, g in only_burn:
        slot = env * region + g % region
        storage[slot, columns["rewards"]] = 1e6
        storage[slot, columns["actions"]] = (storage[slot, columns["actions"]] + 1) % 3
    agent.replay.rng.bit_generator.state = rng_state
    assert_same_loss(loss_and_grads(agent, agent.replay.sample(8)), base)
    env, g = sorted(window_steps)[0]
    storage[env * region + g % region, columns["rewards"]] = -1e4  # past the Huber kink: the gradient changes too
    agent.replay.rng.bit_generator.state = rng_state
    assert differs(loss_and_grads(agent, agent.replay.sample(8)), base)


def tmaze_step(agent, env: gym.Env, obs: np.ndarray) -> tuple[np.ndarray, bool]:
    """One step as the env loop (runners/env_loop.py) takes it, for one env."""
    actions = agent.act(obs[None], explore=True)
    next_obs, reward, terminated, truncated, _ = env.step(int(actions[0]))
    agent.observe(
        Transition(
            obs[None], actions, np.array([reward]), next_obs[None], np.array([terminated]), np.array([truncated]), {}
        )
    )
    if terminated or truncated:
        agent.reset(np.array([True]))
        next_obs, _ = env.reset()
    return next_obs, terminated or truncated


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(["agent.cell=lstm"], id="lstm-episodes"),
        pytest.param(
            ["agent.cell=gru", "agent.replay=windows", "agent.burn_in=2", "agent.stored_state=true"],
            id="gru-windows-stored-state",
        ),
    ],
)
def test_acting_continues_from_the_state_it_had_before_an_update(tiny_config, overrides: list[str]) -> None:
    """On the T-maze, mid-episode: updates change the online net but leave agent.acting.state bit-identical, and
    the next act is the updated online net's greedy action from that state, leaving its next state."""
    cfg = tiny_config(
        "agent=drqn",
        "env=tmaze",
        "env.kwargs.length=3",
        "net.hidden=8",
        "agent.rnn_hidden=8",
        "agent.batch_size=4",
        "agent.learning_starts=10",
        "agent.sequence_length=4",
        "agent.epsilon_start=1.0",
        "agent.epsilon_end=1.0",
        *overrides,
    )
    torch.manual_seed(0)
    agent = make_agent(cfg)
    env = make_env(cfg.env)
    obs, _ = env.reset(seed=0)
    episode_steps = 0
    for _ in range(400):
        obs, done = tmaze_step(agent, env, obs)
        episode_steps = 0 if done else episode_steps + 1
        if agent.ready_to_learn() and episode_steps >= 2:
            break
    assert agent.ready_to_learn() and episode_steps >= 2
    saved = agent.acting.state.clone()
    assert saved.abs().sum() > 0
    before = [p.detach().clone() for p in agent.params]
    for _ in range(3):
        agent.update()
    assert any(not torch.equal(p, q) for p, q in zip(agent.params, before))
    assert torch.equal(agent.acting.state, saved)
    agent.exploration = dataclasses.replace(agent.exploration, start=0.0, end=0.0)
    with torch.no_grad():
        q, next_state = agent.online(torch.from_numpy(obs).float().view(1, 1, -1), saved)
    actions = agent.act(obs[None], explore=True)
    assert actions[0] == int(q[0, 0].argmax())
    assert torch.equal(agent.acting.state, next_state)
    assert torch.equal(agent.state_before_act, saved)
    if agent.stored_state:  # the stored acting state of the next step is the one it was chosen from
        next_obs, reward, terminated, truncated, _ = env.step(int(actions[0]))
        agent.observe(
            Transition(
                obs[None],
                actions,
                np.array([reward]),
                next_obs[None],
                np.array([terminated]),
                np.array([truncated]),
                {},
            )
        )
        row = agent.replay.storage[(int(agent.replay.written[0]) - 1) % agent.replay.region]
        assert torch.equal(agent.replay.layout.unpack(row[None])["state"][0], saved[0])


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.value)
def test_reset_and_evaluation_touch_only_their_own_state(cell: RecurrentCell) -> None:
    """3 training envs: reset(done) zeroes exactly the done rows of the acting state and cuts their open
    episodes; reset(.., explore=False) renews only the evaluation state; act(.., explore=False) steps the
    evaluation state from zero like a manual forward and never changes the acting state."""
    agent = make_drqn(cell=cell, num_envs=3)
    size = {RecurrentCell.lstm: 12, RecurrentCell.gru: 6, RecurrentCell.none: 0}[cell]  # rnn_hidden 6
    rng = np.random.default_rng(0)
    observations = [rng.normal(size=(3, OBS)).astype(np.float32) for _ in range(3)]
    for obs in observations[:2]:
        actions = agent.act(obs, explore=True)
        agent.observe(Transition(obs, actions, np.zeros(3), obs, np.zeros(3, bool), np.zeros(3, bool), {}))
    agent.act(observations[0][:1], explore=False)
    eval_saved = agent.eval_state.clone()
    saved = agent.acting.state.clone()
    assert saved.shape == (3, size) and bool((saved != 0).any(dim=1).all()) == (size > 0)

    agent.reset(np.array([False, True, False]))
    assert torch.equal(agent.acting.state[[0, 2]], saved[[0, 2]])
    assert torch.equal(agent.acting.state[1], torch.zeros(size))
    assert torch.equal(agent.eval_state, eval_saved)
    assert agent.replay.sampleable() == 1  # env 1's open two steps

    acting = agent.acting.state.clone()
    agent.reset(np.array([True]), explore=False)
    assert torch.equal(agent.eval_state, torch.zeros(1, size))
    assert torch.equal(agent.acting.state, acting)
    assert agent.replay.sampleable() == 1
    state = torch.zeros(1, size)
    for obs in observations:
        action = agent.act(obs[:1], explore=False)
        with torch.no_grad():
            q, state = agent.online(torch.from_numpy(obs[:1]).view(1, 1, -1), state)
        assert action[0] == int(q[0, 0].argmax())
        assert torch.equal(agent.acting.state, acting)
        assert agent.state_before_act is None
    torch.testing.assert_close(agent.eval_state, state, rtol=0, atol=1e-6)


@pytest.mark.parametrize("start", [0, 3])
def test_discrete_observations_are_one_hot_encoded(start: int) -> None:
    """Discrete(5, start): the net's input is 5 wide, acting on indices equals a forward of their one-hot
    vectors, and the replay stores one-hot obs and next_obs."""
    agent = make_drqn(observation_space=gym.spaces.Discrete(5, start=start), num_envs=3)
    assert agent.online.torso[0].in_features == 5
    obs = np.array([4, 0, 2]) + start
    next_obs = np.array([1, 3, 2]) + start
    one_hot = torch.eye(5)
    with torch.no_grad():
        q, state = agent.online(
            one_hot[torch.from_numpy(obs - start)].unsqueeze(1), torch.zeros(3, agent.online.state_size)
        )
    actions = agent.act(obs, explore=True)
    np.testing.assert_array_equal(actions, q[:, 0].argmax(-1).numpy())
    torch.testing.assert_close(agent.acting.state, state, rtol=0, atol=1e-6)
    done = np.ones(3, dtype=bool)
    agent.observe(Transition(obs, actions, np.zeros(3), next_obs, done, ~done, {}))
    batch = agent.replay.sample(32)
    pairs = {(int(o.argmax()), int(n.argmax())) for o, n in zip(batch.obs[:, 0], batch.next_obs[:, 0])}
    assert pairs == {(4, 1), (0, 3), (2, 2)}
    assert torch.equal(batch.obs[:, 0].sum(-1), torch.ones(32)) and set(batch.obs.unique().tolist()) == {0.0, 1.0}


def test_batch_norm_is_refused(tiny_config) -> None:
    """net.norm=batch would mix the steps of a sequence: a ValueError, through the config and directly;
    net.norm=layer is fine."""
    with pytest.raises(ValueError, match="norm=batch"):
        make_agent(tiny_config("agent=drqn", "env=tmaze", "net.norm=batch"))
    with pytest.raises(ValueError, match="norm=batch"):
        make_drqn(net=NET | {"norm": Norm.batch})
    agent = make_drqn(net=NET | {"norm": Norm.layer})
    assert any(isinstance(m, nn.LayerNorm) for m in agent.online.modules())
