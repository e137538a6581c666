"""The frame replay (rl_runner/buffers/frames.py): every frame stored once and the stacks rebuilt at sample time
equal to what the env produced, across episode ends, ring wrap, lost frames and another number of envs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl_runner.agents.common import learning_signals
from rl_runner.buffers import FrameReplay, NStepAccumulator, PrioritizedReplay
from rl_runner.clock import Clock
from rl_runner.config import compose_config
from rl_runner.envs.make import make_vector_env
from rl_runner.runners.env_loop import make_agent
from tests.conftest import BREAKOUT, TINY, step_envs


@pytest.mark.parametrize("prioritized", [False, True])
def test_sampled_stacks_equal_the_stacks_the_env_produced(prioritized: bool) -> None:
    cfg = compose_config(
        [*TINY, *BREAKOUT, "env.num_envs=2", "agent.buffer_size=64", "agent.n_step=3", f"agent.per={prioritized}"]
    )
    envs = make_vector_env(cfg.env)
    agent = make_agent(cfg, envs, torch.device("cpu"), Clock(horizon=1000))
    reference = NStepAccumulator(3, float(cfg.agent.gamma), 2)  # the same windows over the raw observations
    expected: list[tuple[np.ndarray, np.ndarray, float, bool]] = []
    rng = np.random.default_rng(0)
    obs, _ = envs.reset(seed=3)
    episode_ends = 0
    for _ in range(220):
        transition, obs = step_envs(envs, obs, rng)
        agent.observe(transition)
        rewards, terminated = learning_signals(transition)
        ready = reference.add(transition.obs, transition.actions, rewards, transition.next_obs, terminated,
                              transition.truncated)  # fmt: skip
        episode_ends += int((transition.terminated | transition.truncated).sum())
        if ready is not None:
            expected += zip(ready.obs, ready.next_obs, ready.returns, ready.terminated)
    envs.close()
    assert episode_ends >= 6 and len(expected) > 3 * 64  # many episode ends, and the ring wrapped three times

    storage = agent.storage
    assert isinstance(storage, FrameReplay) and storage.stacked and len(storage) == 64
    assert storage.store.written < len(expected) + episode_ends + 64  # about one new frame per step
    slots = np.arange(len(expected)) % 64  # the replay's slot of each transition, in the order they were added
    batch = storage.gather(torch.arange(64))
    assert not storage.lost(np.arange(64)).any()
    for slot in range(64):
        obs, next_obs, returns, terminated = expected[np.flatnonzero(slots == slot)[-1]]  # the newest in the slot
        assert batch.obs.dtype == torch.uint8
        np.testing.assert_array_equal(batch.obs[slot].numpy(), obs)
        np.testing.assert_array_equal(batch.next_obs[slot].numpy(), next_obs)
        assert batch.rewards[slot].item() == pytest.approx(returns)
        assert batch.terminated[slot].item() == float(terminated)
    sampled = agent.replay.sample(32, 0.5)[0] if prioritized else agent.replay.sample(32)
    stacks = {bytes(o.tobytes()) for o, *_ in expected[-64:]}
    assert all(bytes(o.numpy().tobytes()) in stacks for o in sampled.obs)


def test_transitions_whose_frames_were_overwritten_are_never_sampled() -> None:
    """One-step episodes whose reset stacks hold 4 distinct frames write 5 frames per transition: the ring of
    planes outruns the ring of transitions and the oldest transitions lose their frames."""
    rng = np.random.default_rng(1)
    storage = FrameReplay(32, (4, 6, 6), num_envs=1, device=torch.device("cpu"))
    replay = PrioritizedReplay(storage, alpha=0.5, seed=0)
    stacks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for _ in range(80):
        obs = rng.integers(0, 255, (1, 4, 6, 6), dtype=np.uint8)
        next_obs = np.concatenate([obs[:, 1:], rng.integers(0, 255, (1, 1, 6, 6), dtype=np.uint8)], axis=1)
        obs_handles, next_handles = storage.encode(obs, next_obs)
        zeros = np.zeros(1)
        (slot,) = replay.add(
            obs=obs_handles, actions=zeros, rewards=zeros, next_obs=next_handles, terminated=np.ones(1),
            truncated=zeros, discounts=zeros,
        )  # fmt: skip
        stacks[int(slot)] = (obs[0], next_obs[0])
    lost = storage.lost(np.arange(32))
    assert 0 < lost.sum() < 32
    for _ in range(5):
        batch, slots, weights = replay.sample(16, beta=0.5)
        assert not lost[slots].any() and torch.isfinite(weights).all()
        for row, slot in enumerate(slots):
            np.testing.assert_array_equal(batch.obs[row].numpy(), stacks[int(slot)][0])
            np.testing.assert_array_equal(batch.next_obs[row].numpy(), stacks[int(slot)][1])
    uniform = storage.sample(64)
    originals = {bytes(stacks[slot][0].tobytes()) for slot in np.flatnonzero(~lost)}
    assert all(bytes(o.numpy().tobytes()) in originals for o in uniform.obs)


def fill(storage: FrameReplay, steps: int, rng: np.random.Generator, episode: int = 7) -> list[tuple]:
    """``steps`` steps of each env of a synthetic frame-stacked game (4 x 6 x 6 frames, new episodes every
    ``episode`` steps) into ``storage``; returns (slot, obs, next_obs) in the order they were added."""
    added = []
    obs = rng.integers(0, 255, (storage.num_envs, 1, 6, 6), dtype=np.uint8).repeat(4, axis=1)
    for step in range(steps):
        next_obs = np.concatenate([obs[:, 1:], rng.integers(0, 255, (storage.num_envs, 1, 6, 6), np.uint8)], 1)
        obs_handles, next_handles = storage.encode(obs, next_obs)
        zeros = np.zeros(storage.num_envs)
        slots = storage.add(obs=obs_handles, actions=zeros, rewards=zeros, next_obs=next_handles, terminated=zeros,
                            truncated=zeros, discounts=zeros)  # fmt: skip
        added += zip(slots, obs, next_obs)
        obs = next_obs.copy()
        if step % episode == episode - 1:
            obs = rng.integers(0, 255, (storage.num_envs, 1, 6, 6), dtype=np.uint8).repeat(4, axis=1)
    return added


@pytest.mark.parametrize("envs_after", [3, 1])
def test_a_saved_frame_replay_loads_into_a_run_with_another_number_of_envs(envs_after: int) -> None:
    """The ring of frames grows with env.num_envs: planes are placed by write number, not copied slot by slot."""
    rng = np.random.default_rng(2)
    before = FrameReplay(40, (4, 6, 6), num_envs=2, device=torch.device("cpu"), n_step=3)
    added = fill(before, 60, rng)
    after = FrameReplay(40, (4, 6, 6), num_envs=envs_after, device=torch.device("cpu"), n_step=3)
    after.load_state_dict(before.state_dict())
    assert after.store.capacity != before.store.capacity
    newest = {int(slot): (obs, next_obs) for slot, obs, next_obs in added}
    lost = after.lost(np.arange(40))
    batch = after.gather(torch.arange(40))
    for slot in np.flatnonzero(~lost):
        np.testing.assert_array_equal(batch.obs[slot].numpy(), newest[slot][0])
        np.testing.assert_array_equal(batch.next_obs[slot].numpy(), newest[slot][1])
    assert lost.sum() < 40
    fill(after, 10, rng)  # and it goes on storing
    with pytest.raises(ValueError, match=r"frames of shape \(6, 6\), this env's are \(5, 6\)"):
        FrameReplay(40, (4, 5, 6), num_envs=1, device=torch.device("cpu")).load_state_dict(before.state_dict())


def test_a_replay_whose_every_transition_lost_its_frames_says_so() -> None:
    storage = FrameReplay(8, (4, 6, 6), num_envs=1, device=torch.device("cpu"))
    replay = PrioritizedReplay(storage, alpha=0.5, seed=0)
    fill(storage, 8, np.random.default_rng(3))
    replay.tree.set(np.arange(8), np.ones(8))
    for _ in range(storage.store.capacity):  # frames from elsewhere push every stored one out
        storage.store.write(np.zeros((6, 6), np.uint8))
    assert storage.lost(np.arange(8)).all()
    for sample in (lambda: storage.sample(4), lambda: replay.sample(4, beta=0.5)):
        with pytest.raises(RuntimeError, match=r"^every transition in the replay lost its frames: .*agent.buffer_size"):
            sample()
