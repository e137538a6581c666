"""Exact snapshots (rl_runner/envs/state.py) of ALE Breakout and MinAtar Breakout vector envs, restored into
fresh or reset envs, and the Atari and MinAtar states a snapshot must refuse or keep."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from rl_runner.envs.make import make_env, make_vector_env
from rl_runner.envs.state import (
    UnsupportedEnvState,
    env_state,
    restore_env_state,
    restore_vector_env_state,
    vector_env_state,
)
from tests.envs.helpers import pixel_config, through_checkpoint


def record(envs: gym.vector.VectorEnv, actions: list[np.ndarray]) -> list[tuple]:
    return [envs.step(action) for action in actions]


def assert_same(want: Any, got: Any, where: str) -> None:
    """Bit-identical, recursively through the vector env's infos (dicts, object arrays of final_obs/info)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_same(want[key], got[key], f"{where}[{key!r}]")
    elif isinstance(want, (tuple, list)):
        assert type(got) is type(want) and len(got) == len(want), f"{where}: {got!r} != {want!r}"
        for index, (w, g) in enumerate(zip(want, got)):
            assert_same(w, g, f"{where}[{index}]")
    elif isinstance(want, np.ndarray) and want.dtype == object:
        assert isinstance(got, np.ndarray) and got.dtype == object and got.shape == want.shape, where
        for index, (w, g) in enumerate(zip(want, got)):
            assert_same(w, g, f"{where}[{index}]")
    elif isinstance(want, np.ndarray):
        np.testing.assert_array_equal(got, want, strict=True, err_msg=where)
    else:
        assert type(got) is type(want) and got == want, f"{where}: {got!r} != {want!r}"


def assert_replays(expected: list[tuple], actual: list[tuple]) -> None:
    assert len(expected) == len(actual)
    for step, (want, got) in enumerate(zip(expected, actual)):
        for part, w, g in zip(("obs", "rewards", "terminated", "truncated", "infos"), want, got):
            assert_same(w, g, f"step {step} {part}")


def random_actions(envs: gym.vector.VectorEnv, rng: np.random.Generator, steps: int) -> list[np.ndarray]:
    return [rng.integers(envs.single_action_space.n, size=envs.num_envs) for _ in range(steps)]


# Breakout with random play: a life is lost every ~25 steps and a game (5 lives) ends after ~120-200 steps, so
# the steps before the snapshot lose lives and the recorded ones end a game (reset: no-ops from the restored
# np_random, then FIRE). MinAtar Breakout with random play ends an episode every ~5-20 steps; its sticky
# actions are on in the config (the ALE's are off, and refused: test_ale_sticky_actions_are_refused).
SNAPSHOT_CASES = {  # env config, overrides, steps before the snapshot, steps recorded after it
    "breakout": ("breakout", [], 60, 200),
    "minatar_breakout": ("minatar_breakout", [], 30, 100),
    # half the steps repeat the previous action: a restore that kept the target's own last_action shows at once
    "minatar_breakout_very_sticky": ("minatar_breakout", ["env.kwargs.sticky_action_prob=0.5"], 30, 100),
}


@pytest.fixture(scope="module", params=list(SNAPSHOT_CASES))
def recorded(request: pytest.FixtureRequest) -> dict[str, Any]:
    name = request.param
    env_name, overrides, before, after = SNAPSHOT_CASES[name]
    cfg = pixel_config(env_name, "env.num_envs=2", *overrides)
    envs = make_vector_env(cfg)
    rng = np.random.default_rng(0)
    _, infos = envs.reset(seed=0)
    lives = [infos.get("lives")]
    for action in random_actions(envs, rng, before):
        *_, infos = envs.step(action)
        lives.append(infos.get("lives"))
    states = through_checkpoint(vector_env_state(envs))
    actions = random_actions(envs, rng, after)
    expected = record(envs, actions)
    envs.close()
    return {"name": name, "cfg": cfg, "states": states, "actions": actions, "expected": expected, "lives": lives}


@pytest.mark.parametrize("target", ["never_reset", "reset_elsewhere"])
def test_pixel_vector_env_snapshot_continues_bit_identically(recorded: dict[str, Any], target: str) -> None:
    expected = recorded["expected"]
    if recorded["name"] == "breakout":
        lives = np.stack(recorded["lives"])
        assert (np.diff(lives, axis=0) < 0).any(), "no life was lost before the snapshot"
    assert any((terminated | truncated).any() for _, _, terminated, truncated, _ in expected), "no episode ended"

    envs = make_vector_env(recorded["cfg"])  # as on a resume: never reset
    if target == "reset_elsewhere":
        envs.reset(seed=1)
        record(envs, random_actions(envs, np.random.default_rng(1), 15))
    restore_vector_env_state(envs, recorded["states"])
    assert_replays(expected, record(envs, recorded["actions"]))
    envs.close()


def test_ale_sticky_actions_are_refused() -> None:
    """The action a sticky frame repeats lives in the ALE's StellaEnvironment, outside its cloneState: a
    restored env would repeat its own last action instead (seen: replays diverging from the first step)."""
    sticky = make_env(pixel_config("breakout", "env.kwargs.repeat_action_probability=0.25"))
    sticky.reset(seed=0)
    with pytest.raises(UnsupportedEnvState, match=r"^AtariEnv: cannot snapshot an env with sticky actions \("):
        env_state(sticky)
    plain = make_env(pixel_config("breakout"))
    plain.reset(seed=0)
    plain.step(1)
    frames = [frame.copy() for frame in sticky.obs_queue]
    with pytest.raises(UnsupportedEnvState, match=r"^AtariEnv: cannot restore into an env with sticky actions"):
        restore_env_state(sticky, env_state(plain))
    for kept, frame in zip(sticky.obs_queue, frames, strict=True):  # checked before any layer was restored
        np.testing.assert_array_equal(kept, frame)
    sticky.close()
    plain.close()


def test_minatar_restore_keeps_the_rng_identity() -> None:
    """After seed() MinAtar's sticky-action RNG and the game's RNG are one object; unseeded, two. A restore
    must keep whichever the snapshot had, or the streams split or merge from then on."""
    cfg = pixel_config("minatar_breakout")
    for seed in (0, None):
        env = make_env(cfg)
        env.reset(seed=seed)
        rng = np.random.default_rng(0)
        for _ in range(25):
            _, _, terminated, truncated, _ = env.step(int(rng.integers(3)))
            if terminated or truncated:
                env.reset()
        state = through_checkpoint(env_state(env))
        actions = [int(rng.integers(3)) for _ in range(80)]
        expected = play(env, actions)
        assert any(isinstance(result[1], dict) for result in expected), "no episode ended after the snapshot"

        other = make_env(cfg)
        other.reset(seed=None if seed is not None else 5)  # the other identity
        restore_env_state(other, state)
        game, other_game = env.unwrapped.game, other.unwrapped.game
        assert (other_game.env.random is other_game.random) is (game.env.random is game.random) is (seed is not None)
        assert_same(expected, play(other, actions), f"seed {seed}")


def play(env: gym.Env, actions: list[int]) -> list[tuple]:
    """Every step's result, and the reset's after each episode end."""
    results = []
    for action in actions:
        results.append(env.step(action))
        if results[-1][2] or results[-1][3]:
            results.append(env.reset())
    return results


def test_a_snapshot_holds_no_objects_of_the_env_packages() -> None:
    def walk(value: Any) -> None:
        assert type(value).__module__.split(".")[0] not in ("ale_py", "minatar"), type(value)
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    for name in ("breakout", "minatar_breakout"):
        env = make_env(pixel_config(name))
        env.reset(seed=0)
        env.step(0)
        walk(env_state(env))
        env.close()


def test_atari_preprocessing_restore_refuses_another_frame_buffer() -> None:
    flat = "+env.wrappers.flatten_observation={}"  # the same layers on both: colour frames stack to 4 dimensions
    colour = make_env(pixel_config("breakout", "env.wrappers.atari_preprocessing.grayscale_obs=false", flat))
    gray = make_env(pixel_config("breakout", flat))
    gray.reset(seed=0)
    with pytest.raises(UnsupportedEnvState, match=r"AtariPreprocessing: the saved frame buffer .*grayscale_obs"):
        restore_env_state(colour, env_state(gray))
    colour.close()
    gray.close()
