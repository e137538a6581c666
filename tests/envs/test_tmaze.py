"""The T-maze memory envs (rl_runner/envs/tmaze.py) and their configs: the cue appears exactly where its mode
promises and every other observation is the same whichever side the goal is on."""

from __future__ import annotations

import math
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rl_runner  # noqa: F401  (registers rl_runner/TMaze-v0)
from rl_runner.config import compose_config
from rl_runner.envs.make import make_env
from rl_runner.envs.tmaze import BACK, CUES, ENV_ID, FORWARD, LEFT, RIGHT, VARIANTS, TMazeEnv, optimal_return

SIDES = {0: LEFT, 1: RIGHT}  # goal side -> the action that turns into (and walks out along) that arm
OTHER = {LEFT: RIGHT, RIGHT: LEFT}


def play(env: gym.Env, actions: list[int]) -> list[tuple[np.ndarray, float, bool, bool, dict]]:
    """Each step's (obs, reward, terminated, truncated, info); fails if the episode ends before the last action."""
    steps = []
    for index, action in enumerate(actions):
        steps.append(env.step(action))
        if index < len(actions) - 1:
            assert not (steps[-1][2] or steps[-1][3]), f"the episode ended early, at step {index}"
    return steps


def reset_to_side(env: gym.Env, side: int) -> np.ndarray:
    """Reset with seeds 0, 1, ... until the goal is on ``side`` (0 left, 1 right)."""
    for seed in range(100):
        obs, _ = env.reset(seed=seed)
        if env.unwrapped._goal_side == side:
            return obs
    raise AssertionError(f"no seed below 100 put the goal on side {side}")


def episode_return(steps: list) -> float:
    return math.fsum(reward for _, reward, *_ in steps)


# ------------------------------------------------------------------------------------------- API checks
@pytest.mark.parametrize("length", [1, 5, 50])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cue", CUES)
def test_check_env_passes_without_warnings(length: int, variant: str, cue: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(ENV_ID, length=length, variant=variant, cue=cue).unwrapped)
        check_env(gym.make(ENV_ID, length=length, variant=variant, cue=cue, arm_length=2, render_mode="ansi").unwrapped)
        # gymnasium always warns that a wrapped env is not its unwrapped self; nothing else may warn
        warnings.filterwarnings("ignore", message=".*is different from the unwrapped version")
        check_env(gym.make(ENV_ID, length=length, variant=variant, cue=cue))


def test_import_registers_without_a_time_limit_and_again_silently() -> None:
    from rl_runner.envs.tmaze import register_tmaze

    spec = gym.spec(ENV_ID)
    assert spec.entry_point == "rl_runner.envs.tmaze:TMazeEnv" and spec.max_episode_steps is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_tmaze()
        del gym.registry[ENV_ID]
        try:  # register_tmaze and the package's own registration must agree
            register_tmaze()
            assert gym.spec(ENV_ID) == spec
        finally:
            gym.registry[ENV_ID] = spec
    env = gym.make(ENV_ID, length=50)
    assert env.unwrapped.length == 50 and not isinstance(env, gym.wrappers.TimeLimit)


def test_render() -> None:
    env = gym.make(ENV_ID, length=3, render_mode="ansi")
    reset_to_side(env, 1)
    assert env.render() == "A..J left:. right:G (step 0/30)"
    play(env, [FORWARD, FORWARD, FORWARD, LEFT])
    assert env.render() == "...J left:A right:G (step 4/30)"
    quiet = TMazeEnv(length=3)
    quiet.reset(seed=0)
    assert quiet.render() is None


# ------------------------------------------------------------------------------------------- returns
@pytest.mark.parametrize("variant", ["either", "both"])
@pytest.mark.parametrize("length, arm_length", [(1, 1), (5, 1), (10, 3)])
@pytest.mark.parametrize("side", [0, 1])
def test_the_optimal_path_earns_the_optimal_return(variant: str, length: int, arm_length: int, side: int) -> None:
    env = gym.make(ENV_ID, length=length, arm_length=arm_length, variant=variant, step_cost=0.02, goal_reward=2.0)
    obs = reset_to_side(env, side)
    assert obs[side] == 1 and obs[1 - side] == 0
    steps = play(env, [FORWARD] * length + [SIDES[side]] * arm_length)
    *_, (obs, _, terminated, truncated, info) = steps
    assert terminated and not truncated and info["is_success"] is True
    assert obs.tolist() == [0, 0, 0, 1]
    assert len(steps) == length + arm_length
    want = optimal_return(length, arm_length, variant, goal_reward=2.0, step_cost=0.02)
    assert want == 2.0 - 0.02 * (length + arm_length)
    assert episode_return(steps) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("length, arm_length", [(1, 1), (5, 1), (10, 3)])
@pytest.mark.parametrize("first", [LEFT, RIGHT])
def test_two_goal_optimal_path(length: int, arm_length: int, first: int) -> None:
    env = gym.make(ENV_ID, length=length, arm_length=arm_length, variant="two_goal")
    env.reset(seed=0)
    # to the first end, back across the junction and out to the other end: 2 * arm_length steps
    steps = play(env, [FORWARD] * length + [first] * arm_length + [OTHER[first]] * (2 * arm_length))
    *_, (_, _, terminated, truncated, info) = steps
    assert terminated and not truncated and info["is_success"] is True
    assert len(steps) == length + 3 * arm_length
    want = optimal_return(length, arm_length, "two_goal")
    assert want == 2.0 - 0.01 * (length + 3 * arm_length)
    assert episode_return(steps) == pytest.approx(want, abs=1e-12)


def test_optimal_return_refuses_an_unknown_variant() -> None:
    with pytest.raises(ValueError, match="variant"):
        optimal_return(5, variant="three_goal")


@pytest.mark.parametrize("side", [0, 1])
def test_either_a_wrong_turn_ends_the_episode_with_the_penalty(side: int) -> None:
    env = gym.make(ENV_ID, length=4, arm_length=2, variant="either", wrong_penalty=-0.5)
    reset_to_side(env, side)
    steps = play(env, [FORWARD] * 4 + [SIDES[1 - side]] * 2)
    *_, (obs, reward, terminated, truncated, info) = steps
    assert terminated and not truncated and info == {"is_success": False}
    assert obs.tolist() == [0, 0, 0, 1]
    assert reward == -0.5 - 0.01
    assert all(not info for *_, info in steps[:-1]), "is_success before the episode ended"


@pytest.mark.parametrize("side", [0, 1])
def test_both_the_wrong_arm_is_penalised_each_entry_and_spoils_success(side: int) -> None:
    env = gym.make(ENV_ID, length=3, arm_length=2, variant="both")
    reset_to_side(env, side)
    wrong, right = SIDES[1 - side], SIDES[side]
    steps = play(env, [FORWARD] * 3 + [wrong] * 2)
    assert steps[-1][1:] == (-1.0 - 0.01, False, False, {})
    # bumping against the arm's end does not enter it again; walking back out and in again does
    steps = play(env, [wrong, right, wrong])
    assert [reward for _, reward, *_ in steps] == [-0.01, -0.01, -1.0 - 0.01]
    steps = play(env, [right] * 4)  # two to the junction, two out to the goal
    *_, (_, reward, terminated, truncated, info) = steps
    assert reward == 1.0 - 0.01 and terminated and not truncated and info == {"is_success": False}
    # a fresh episode starts clean
    reset_to_side(env, side)
    *_, (_, _, terminated, _, info) = play(env, [FORWARD] * 3 + [right] * 2)
    assert terminated and info == {"is_success": True}


def test_two_goal_revisiting_pays_nothing_and_the_junction_looks_the_same() -> None:
    env = gym.make(ENV_ID, length=2, variant="two_goal", cue="always")
    obs, _ = env.reset(seed=0)
    assert obs.tolist() == [0, 0, 0, 0], "two_goal shows no cue whatever the cue mode"
    before = play(env, [FORWARD, FORWARD])[-1]
    assert before[0].tolist() == [0, 0, 1, 0]
    first_visit = play(env, [LEFT])[-1]
    assert first_visit[1:] == (1.0 - 0.01, False, False, {})
    after = play(env, [RIGHT])[-1]  # back on the junction
    np.testing.assert_array_equal(after[0], before[0])
    revisit = play(env, [LEFT])[-1]
    assert revisit[1:] == (-0.01, False, False, {})
    *_, (_, reward, terminated, truncated, info) = play(env, [RIGHT, RIGHT])
    assert reward == 1.0 - 0.01 and terminated and not truncated and info == {"is_success": True}


# ------------------------------------------------------------------------------------------- time limit
def test_the_time_limit_truncates_without_success() -> None:
    env = gym.make(ENV_ID, length=3, max_steps=5)
    _, info = env.reset(seed=0)
    assert info == {}
    steps = play(env, [LEFT] * 5)  # bumping into the corridor wall
    *_, (_, reward, terminated, truncated, info) = steps
    assert truncated and not terminated and info == {"is_success": False} and reward == -0.01
    assert all(not info for *_, info in steps[:-1])
    assert TMazeEnv(length=10, arm_length=2).max_steps == 4 * (10 + 2 * 2) + 10


def test_a_goal_on_the_last_allowed_step_terminates() -> None:
    env = gym.make(ENV_ID, length=1, max_steps=2)
    reset_to_side(env, 0)
    *_, (_, _, terminated, truncated, info) = play(env, [FORWARD, LEFT])
    assert terminated and not truncated and info == {"is_success": True}


# ------------------------------------------------------------------------------------------- cue and memory
def cues(env: gym.Env, seed: int, resets: int = 8) -> list[int]:
    sides = [int(np.argmax(env.reset(seed=seed)[0][:2]))]
    sides += [int(np.argmax(env.reset()[0][:2])) for _ in range(resets - 1)]
    return sides


def test_seeding_repeats_the_cues() -> None:
    one, other = gym.make(ENV_ID), gym.make(ENV_ID)
    assert cues(one, seed=3) == cues(other, seed=3)
    assert {side for seed in range(20) for side in cues(one, seed, resets=1)} == {0, 1}


@pytest.mark.parametrize("side", [0, 1])
def test_cue_modes_show_the_cue_exactly_where_promised(side: int) -> None:
    # forward, back to the foot, bump at the foot, bump into the wall, forward to the junction and into an arm
    actions = [FORWARD, FORWARD, BACK, BACK, BACK, RIGHT, FORWARD, FORWARD, FORWARD, SIDES[1 - side]]
    positions = [1, 2, 1, 0, 0, 0, 1, 2, 3, None]  # where each step leaves the agent (None: in an arm)
    cue = np.eye(2)[side].tolist()
    for mode in CUES:
        env = gym.make(ENV_ID, length=3, arm_length=2, variant="either", cue=mode)
        obs = reset_to_side(env, side)
        assert obs.tolist() == cue + [0, 0], f"cue={mode}: the reset observation"
        for step, ((obs, *_), position) in enumerate(zip(play(env, actions), positions)):
            shown = mode == "always" or (mode == "start_cell" and position == 0)
            assert obs[:2].tolist() == (cue if shown else [0, 0]), f"cue={mode}, step {step}"
            assert obs[2:].tolist() == [float(position == 3), 0], f"cue={mode}, step {step}"


@pytest.mark.parametrize("variant", ["either", "both"])
def test_after_the_cue_the_goal_side_changes_no_observation(variant: str) -> None:
    """What defeats a memoryless agent: with the cue gone, left-goal and right-goal episodes look the same."""
    actions = [FORWARD, BACK, BACK, LEFT, FORWARD, FORWARD, FORWARD, FORWARD, LEFT, RIGHT, RIGHT, LEFT, BACK]
    seen = {}
    for side in (0, 1):
        env = gym.make(ENV_ID, length=3, arm_length=2, variant=variant, cue="first_step")
        first = reset_to_side(env, side)
        assert first[side] == 1
        seen[side] = [(obs.tolist(), reward, terminated) for obs, reward, terminated, *_ in play(env, actions)]
    assert seen[0] == seen[1]


# ------------------------------------------------------------------------------------------- bad values
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"length": 0}, "length"),
        ({"length": 2.5}, "length"),
        ({"arm_length": 0}, "arm_length"),
        ({"variant": "three_goal"}, "variant"),
        ({"cue": "never"}, "cue"),
        ({"step_cost": -0.1}, "step_cost"),
        ({"wrong_penalty": 0.5}, "wrong_penalty"),
        ({"goal_reward": 0.0}, "goal_reward"),
        ({"max_steps": 0}, "max_steps"),
        ({"render_mode": "human"}, "render_mode"),
    ],
)
def test_bad_values_name_their_argument(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be") as raised:
        TMazeEnv(**kwargs)
    assert "\n" not in str(raised.value)


# ------------------------------------------------------------------------------------------- configs and snapshots
@pytest.mark.parametrize("name, variant", [("tmaze", "either"), ("tmaze_both", "both"), ("tmaze_two_goal", "two_goal")])
def test_configs_compose_and_build(name: str, variant: str) -> None:
    cfg = compose_config([f"env={name}", "env.kwargs.length=50"])
    env = make_env(cfg.env)
    assert env.unwrapped.variant == variant and env.unwrapped.length == 50 and env.unwrapped.cue == "first_step"
    assert env.action_space == gym.spaces.Discrete(4)
