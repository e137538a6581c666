"""Exact env snapshots (rl_runner/envs/state.py) of classic-control, MuJoCo, T-maze and wrapped envs: a restored
snapshot replays the same actions bit-identically, and layers it cannot restore are refused by name."""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
import pytest

from rl_runner.config import compose_config
from rl_runner.envs.make import make_env, make_vector_env
from rl_runner.envs.state import (
    UnsupportedEnvState,
    env_state,
    restore_env_state,
    restore_vector_env_state,
    vector_env_state,
)
from tests.envs.helpers import env_config, through_checkpoint

Policy = Callable[[np.ndarray, np.random.Generator], Any]
Step = tuple[np.ndarray, float, bool, bool]


def random_policy(space: gym.Space) -> Policy:
    if isinstance(space, gym.spaces.Discrete):
        return lambda obs, rng: int(rng.integers(space.n))
    return lambda obs, rng: rng.uniform(space.low, space.high).astype(space.dtype)


def balance(obs: np.ndarray, rng: np.random.Generator) -> int:
    """Pushes the cart towards where the pole is falling: keeps CartPole up for hundreds of steps."""
    return int(obs[2] + 0.5 * obs[3] > 0)


def run(
    env: gym.Env, obs: np.ndarray, choose: Callable[[np.ndarray], Any], steps: int
) -> tuple[list, list[Step], np.ndarray]:
    """``steps`` steps from ``obs``: the actions, what came back, and the obs to go on from. An ended episode
    is reset without a seed, so from the env's own RNG."""
    actions, record = [], []
    for _ in range(steps):
        action = choose(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        actions.append(action)
        record.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            obs, _ = env.reset()
    return actions, record, obs


def assert_identical(expected: list[Step], actual: list[Step]) -> None:
    assert len(expected) == len(actual)
    for step, (want, got) in enumerate(zip(expected, actual)):
        np.testing.assert_array_equal(got[0], want[0], strict=True, err_msg=f"observation after step {step}")
        assert got[1:] == want[1:], f"reward/terminated/truncated after step {step}"


SNAPSHOT_CASES = {
    "pendulum": (env_config("Pendulum-v1", "continuous"), None),
    "cartpole": (env_config("CartPole-v1", "discrete"), balance),
    "mountain_car": (env_config("MountainCar-v0", "discrete"), None),
    "mountain_car_continuous": (env_config("MountainCarContinuous-v0", "continuous"), None),
    "acrobot": (env_config("Acrobot-v1", "discrete"), None),
    "half_cheetah": (env_config("HalfCheetah-v5", "continuous"), None),
    # Ant's reward reads body positions before it steps: exact only with MuJoCo's last forward pass restored
    "ant": (env_config("Ant-v5", "continuous"), None),
    # Hopper falls within the recorded steps: episode ends and resets from the restored RNG
    "hopper": (env_config("Hopper-v5", "continuous"), None),
    # the stacked frames were silently dropped by the old reflective snapshots
    "pendulum_frame_stack": (
        env_config("Pendulum-v1", "continuous", wrappers={"frame_stack": {"stack_size": 3}}),
        None,
    ),
    "pendulum_frame_stack_flat": (
        env_config("Pendulum-v1", "continuous", wrappers={"frame_stack": {"stack_size": 3}, "flatten_observation": {}}),
        None,
    ),
    "cartpole_velocities_hidden": (
        env_config("CartPole-v1", "discrete", wrappers={"observation_subset": {"indices": [0, 2]}}),
        None,
    ),
    # the project's own memory task, every variant; random walks in a short maze end episodes after the snapshot
    **{
        f"tmaze_{variant}": (
            env_config("rl_runner/TMaze-v0", "discrete", kwargs={"length": 3, "arm_length": 2, "variant": variant}),
            None,
        )
        for variant in ("either", "both", "two_goal")
    },
}


@pytest.mark.parametrize("case", SNAPSHOT_CASES)
def test_snapshot_continues_bit_identically(case: str) -> None:
    cfg, policy = SNAPSHOT_CASES[case]
    env = make_env(cfg)
    policy = policy or random_policy(env.action_space)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    *_, obs = run(env, obs, lambda o: policy(o, rng), 40)
    state = through_checkpoint(env_state(env))
    actions, expected, _ = run(env, obs, lambda o: policy(o, rng), 60)

    fresh = make_env(cfg)
    fresh.reset(seed=1)  # another episode, which the restore must overwrite entirely
    restore_env_state(fresh, state)
    replay = iter(actions)
    _, actual, _ = run(fresh, obs, lambda o: next(replay), 60)
    assert_identical(expected, actual)
    if case == "cartpole":
        assert not any(terminated for _, _, terminated, _ in expected), "the balancing policy let the pole fall"
    if case == "hopper":
        assert any(terminated for _, _, terminated, _ in expected), "no episode ended after the snapshot"
    if case.startswith("tmaze"):
        assert any(terminated or truncated for _, _, terminated, truncated in expected), "no episode ended"


def test_frame_stack_snapshot_holds_the_stacked_frames() -> None:
    cfg = env_config("Pendulum-v1", "continuous", wrappers={"frame_stack": {"stack_size": 3}})
    env, fresh = make_env(cfg), make_env(cfg)
    env.reset(seed=0)
    fresh.reset(seed=1)
    for torque in (-2.0, 0.5, 2.0):
        stacked, *_ = env.step(np.array([torque], dtype=np.float32))
    state = env_state(env)  # a stack of vectors is flattened for the MLPs (envs/make.py), outside the stack
    assert [layer["class"] for layer in state["layers"][:2]] == ["FlattenObservation", "FrameStackObservation"]
    np.testing.assert_array_equal(np.stack(state["layers"][1]["state"]["frames"]).ravel(), stacked)

    restore_env_state(fresh, state)
    action = np.array([1.0], dtype=np.float32)
    np.testing.assert_array_equal(fresh.step(action)[0], env.step(action)[0])


def test_vector_env_snapshot_across_autoresets() -> None:
    cfg = compose_config(
        ["env=pendulum", "env.num_envs=2", "env.max_episode_steps=15", "+env.wrappers={frame_stack:{stack_size:3}}"]
    ).env
    envs = make_vector_env(cfg)
    rng = np.random.default_rng(0)
    envs.reset(seed=0)
    for _ in range(10):
        envs.step(rng.uniform(-2, 2, (2, 1)).astype(np.float32))
    states = through_checkpoint(vector_env_state(envs))
    assert len(states) == 2

    def record(vector_env: gym.vector.VectorEnv, actions: list[np.ndarray]) -> list[tuple]:
        steps = []
        for action in actions:
            obs, rewards, terminated, truncated, infos = vector_env.step(action)
            final_obs = infos.get("final_obs", np.array([None, None]))
            steps.append((obs, rewards, terminated, truncated, [f for f in final_obs if f is not None]))
        return steps

    actions = [rng.uniform(-2, 2, (2, 1)).astype(np.float32) for _ in range(20)]
    expected = record(envs, actions)
    assert any(truncated.all() for *_, truncated, _ in expected), "no episode ended (SAME_STEP autoreset) mid-way"

    fresh = make_vector_env(cfg)  # never reset, as on a resume
    restore_vector_env_state(fresh, states)
    actual = record(fresh, actions)
    for want, got in zip(expected, actual):
        for want_part, got_part in zip(want, got):
            np.testing.assert_array_equal(np.asarray(got_part), np.asarray(want_part), strict=True)


def test_vector_restore_checks_the_env_count() -> None:
    cfg = env_config("Pendulum-v1", "continuous", num_envs=2)
    envs = make_vector_env(cfg)
    envs.reset(seed=0)
    states = vector_env_state(envs)
    with pytest.raises(UnsupportedEnvState, match="saved 1 envs, this run has env.num_envs=2"):
        restore_vector_env_state(make_vector_env(cfg), states[:1])


class StepCounter(gym.Wrapper):
    """State that no snapshot handler knows about."""

    def step(self, action: Any) -> Any:
        self.steps = getattr(self, "steps", 0) + 1
        return super().step(action)


class MyFrameStack(gym.wrappers.FrameStackObservation):
    """A subclass might keep state its parent's handler misses: it gets no handler by inheritance."""


@pytest.mark.parametrize(
    "wrapper",
    [StepCounter, lambda env: MyFrameStack(env, 2), lambda env: gym.wrappers.ClipReward(env, -1.0, 1.0)],
    ids=["custom", "subclass", "gymnasium"],
)
def test_a_layer_without_a_handler_is_refused_by_name(wrapper: Callable[[gym.Env], gym.Env]) -> None:
    env = wrapper(make_env(env_config("Pendulum-v1", "continuous")))
    env.reset(seed=0)
    with pytest.raises(UnsupportedEnvState, match=rf"^{type(env).__name__}: no snapshot handler"):
        env_state(env)


def test_atari_snapshots_cover_the_emulator_and_the_preprocessing() -> None:
    """Exact Atari snapshots are tested in tests/envs/test_state_pixels.py; here only what a snapshot holds."""
    env = make_env(compose_config(["env=breakout"]).env)
    env.reset(seed=0)
    layers = {layer["class"]: layer["state"] for layer in env_state(env)["layers"]}
    assert isinstance(layers["AtariEnv"]["ale"], bytes) and layers["AtariEnv"]["game"] == "breakout"
    assert sorted(layers["AtariPreprocessing"]) == ["game_over", "lives", "obs_buffer"]
    assert layers["LearningSignals"] == {"lives": 5}
    env.close()


def test_restore_refuses_a_different_layer_stack() -> None:
    plain = make_env(env_config("Pendulum-v1", "continuous"))
    plain.reset(seed=0)
    stacked = make_env(env_config("Pendulum-v1", "continuous", wrappers={"frame_stack": {"stack_size": 3}}))
    with pytest.raises(
        UnsupportedEnvState, match="the snapshot is of TimeLimit<.*, this env is FlattenObservation<FrameStackObs"
    ):
        restore_env_state(stacked, env_state(plain))
