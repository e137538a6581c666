"""Rainbow on pixels: every frame stored once and the stacks rebuilt at sample time equal to what the env produced
(across episode ends and ring wrap), learning-only reward clipping and life loss that leave the logged returns the
raw game score, exact resume of Breakout and MinAtar episodes, and both through the real command line."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl_runner.agents.base import Transition
from rl_runner.agents.common import learning_signals
from rl_runner.buffers import FrameReplay, NStepAccumulator, PrioritizedReplay
from rl_runner.checkpoint import latest_checkpoint, load_state
from rl_runner.clock import Clock
from rl_runner.config import ConfigError, check_values, compose_config
from rl_runner.envs.make import make_env, make_vector_env
from rl_runner.logging import read_scalars
from rl_runner.runners.env_loop import make_agent
from rl_runner.train import train
from tests.conftest import TINY, run_cli

# A small Nature-style torso and short Breakout episodes: the time limit counts emulator frames (4 per step),
# so 160 frames end an episode every ~40 steps and a few hundred steps cross many episode ends.
BREAKOUT = [
    "agent=rainbow",
    "env=breakout",
    "net.channels=[8,8,8]",
    "net.hidden=32",
    "agent.batch_size=8",
    "agent.learning_starts=100",
    "agent.buffer_size=1000",
    "agent.target_update=20",
    "env.max_episode_steps=160",
]
MINATAR = [
    "agent=rainbow",
    "env=minatar_breakout",
    "net.hidden=32",
    "agent.batch_size=16",
    "agent.learning_starts=100",
    "agent.buffer_size=1000",
    "agent.target_update=20",
]


def step_envs(envs: gym.vector.VectorEnv, obs: np.ndarray, rng: np.random.Generator) -> tuple[Transition, np.ndarray]:
    """One random step of every env, as the runner hands it to the agent (real final observations)."""
    actions = rng.integers(envs.single_action_space.n, size=envs.num_envs)
    next_obs, rewards, terminated, truncated, infos = envs.step(actions)
    real_next = next_obs.copy()
    for index in np.flatnonzero(terminated | truncated):
        real_next[index] = infos["final_obs"][index]
    return Transition(obs, actions, rewards, real_next, terminated, truncated, infos), next_obs


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


# --------------------------------------------------------------------------------- learning-only signals
class ScoresAndLives(gym.Env):
    """A 12-step game with Atari-sized rewards and a lives counter that drops every 4 steps."""

    REWARDS = (7.0, -3.0, 0.0, 1.0)
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {"lives": 3}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        obs = np.array([self.t / 12, action], np.float32)
        return obs, self.REWARDS[self.t % 4], self.t == 12, False, {"lives": 3 - self.t // 4}


gym.register("RLRunnerTest/ScoresAndLives-v0", entry_point=ScoresAndLives)


def test_clipping_and_life_loss_change_only_what_the_agent_learns_from(tmp_path: Path) -> None:
    cfg = compose_config(
        [*TINY, "agent=rainbow", "env=cartpole", "env.id=RLRunnerTest/ScoresAndLives-v0", "env.max_episode_steps=100",
         "+env.wrappers.learning_signals={clip_reward: 1.0, terminal_on_life_loss: true}", "agent.per=false",
         "agent.n_step=1", "agent.learning_starts=40", "agent.batch_size=8", "total_steps=120", "eval.every=0",
         "eval.episodes=2", "checkpoint.every=0", "checkpoint.save_replay=true"]
    )  # fmt: skip
    summary = train(cfg, run_dir=tmp_path)
    returns = [value for _, value in read_scalars(tmp_path / "tb")["train/episode_return"]]
    raw_game = sum(ScoresAndLives.REWARDS[t % 4] for t in range(1, 13))  # 15: the raw score of a whole game
    assert returns == [raw_game] * 10 and summary["eval/return_mean"] == raw_game
    assert [length for _, length in read_scalars(tmp_path / "tb")["train/episode_length"]] == [12] * 10
    stored = load_state(latest_checkpoint(tmp_path / "checkpoints"), "replay")["storage"]
    # rows: obs (2), action, reward, next_obs (2), terminated, truncated, discount
    rows = stored[:120].numpy()
    time_after = np.round(rows[:, 4] * 12).astype(int)  # next_obs[0] holds the step count t
    np.testing.assert_array_equal(rows[:, 3], np.clip([ScoresAndLives.REWARDS[t % 4] for t in time_after], -1, 1))
    np.testing.assert_array_equal(rows[:, 6] == 1.0, np.isin(time_after, [4, 8, 12]))  # life lost, or game over


# --------------------------------------------------------------------------------- the command line
def test_breakout_and_minatar_through_the_command_line(tmp_path: Path) -> None:
    breakout = run_cli(*TINY, *BREAKOUT, "total_steps=300", "eval.every=0", f"hydra.run.dir={tmp_path / 'breakout'}")
    assert breakout.returncode == 0, breakout.stderr[-2000:]
    minatar = run_cli(
        *TINY, "experiment=rainbow_minatar_breakout", "total_steps=600", "agent.learning_starts=200", "eval.every=300",
        "eval.episodes=2", f"hydra.run.dir={tmp_path / 'minatar'}",
    )  # fmt: skip
    assert minatar.returncode == 0, minatar.stderr[-2000:]
    for run in ("breakout", "minatar"):
        scalars = read_scalars(tmp_path / run / "tb")
        assert scalars["loss/q"] and scalars["train/episode_return"], run
        assert all(np.isfinite(value) for _, value in scalars["loss/q"])


# --------------------------------------------------------------------------------- config
def test_pixel_envs_pick_their_conv_torso_and_torso_mistakes_are_one_line() -> None:
    assert compose_config(["agent=rainbow", "env=breakout"]).net.name == "nature_cnn"
    assert compose_config(["agent=rainbow", "env=minatar_breakout"]).net.name == "minatar_cnn"
    assert compose_config(["agent=rainbow", "env=breakout", "net=data_efficient_cnn"]).net.name == "data_efficient_cnn"
    with pytest.raises(ConfigError, match=r"^net.channels, net.kernels and net.strides need one entry per conv layer"):
        check_values(compose_config(["agent=rainbow", "env=breakout", "net.kernels=[8,4]"]))
    with pytest.raises(ConfigError, match=r"net.strides=\[4, 0, 1\] must all be positive"):
        check_values(compose_config(["agent=rainbow", "env=breakout", "net.strides=[4,0,1]"]))
    env = make_env(compose_config(["env=minatar_breakout"]).env)
    try:
        for net, message in (
            ("net=nature_cnn", r"^net=nature_cnn: its conv layers \(kernels \[8, 4, 3\], strides \[4, 2, 1\]\) do not "
             r"fit a 10x10 observation$"),
            ("net=mlp", r"^Rainbow's net=mlp needs flat vector observations, .* a conv torso, e.g. net=nature_cnn"),
        ):  # fmt: skip
            cfg = compose_config([*TINY, *MINATAR, net])
            with pytest.raises(ValueError, match=message):
                make_agent(cfg, env, torch.device("cpu"), Clock(horizon=100))
    finally:
        env.close()


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
