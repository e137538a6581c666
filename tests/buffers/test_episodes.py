"""The episode-sequence replay (rl_runner/buffers/episodes.py) against brute force: the provenance of every
sampled step, uniform coverage, ring wrap, padding, burn-in, cuts and state dicts."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch

from rl_runner.buffers.episodes import EpisodeReplay, SequenceBatch
from rl_runner.choices import SequenceReplay
from tests.agents.helpers import make_drqn
from tests.buffers.helpers import CPU, EPISODES, OBS, WINDOWS, Feeder, Plan, check_batch, random_plan


def make_replay(
    mode: SequenceReplay, num_envs: int, region: int, length: int, burn_in: int = 0, state_size: int = 0, seed: int = 0
) -> EpisodeReplay:
    return EpisodeReplay(num_envs * region, OBS, state_size, num_envs, CPU, mode, length, burn_in, seed)


def row_keys(batch: SequenceBatch) -> list[tuple[int, int, int]]:
    """(env, episode, first step) of each row, without any checks: for counting many draws."""
    return [tuple(int(v) for v in row) for row in batch.obs[:, 0, :3].numpy()]


def chi_square_bound(dof: int, z: float = 3.09) -> float:
    """The upper 0.1% point of a chi-square with ``dof`` degrees of freedom (Wilson-Hilferty)."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


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
