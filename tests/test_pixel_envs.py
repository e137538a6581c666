"""Pixel envs: ALE Breakout with the DQN/Rainbow preprocessing and MinAtar Breakout, their wrappers
(fire_reset, learning_signals, channels_first) and exact snapshots of them.

A snapshot test steps a vector env built from the composed config, snapshots it through torch.save (as a
checkpoint does), steps on while recording everything, then restores the snapshot into another vector env,
either freshly made and never reset (as a resumed run's) or reset with another seed and stepped, and replays
the same actions: observations, rewards, episode ends and infos must be bit-identical.
"""

from __future__ import annotations

import io
import subprocess
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from rl_runner.config import compose_config
from rl_runner.envs.make import make_env, make_vector_env
from rl_runner.envs.state import (
    UnsupportedEnvState,
    env_state,
    register_snapshot_handler,
    restore_env_state,
    restore_vector_env_state,
    vector_env_state,
)
from rl_runner.envs.wrappers import ChannelsFirst, FireReset, LearningSignals


def pixel_config(env: str, *overrides: str) -> DictConfig:
    return compose_config(["agent=rainbow", f"env={env}", *overrides]).env


def through_checkpoint(state: Any) -> Any:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


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


# ------------------------------------------------------------------------------------------- snapshots
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
    colour = make_env(pixel_config("breakout", "env.wrappers.atari_preprocessing.grayscale_obs=false"))
    gray = make_env(pixel_config("breakout"))
    gray.reset(seed=0)
    with pytest.raises(UnsupportedEnvState, match=r"AtariPreprocessing: the saved frame buffer .*grayscale_obs"):
        restore_env_state(colour, env_state(gray))
    colour.close()
    gray.close()


def test_importing_the_envs_imports_neither_ale_py_nor_minatar() -> None:
    code = "import sys, rl_runner.envs; print(sorted({'ale_py', 'minatar'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


# ------------------------------------------------------------------------------------------- observations
@pytest.mark.parametrize(
    ("name", "shape", "dtype", "actions"),
    [("breakout", (4, 84, 84), np.uint8, 4), ("minatar_breakout", (4, 10, 10), bool, 3)],
)
def test_pixel_observations(name: str, shape: tuple, dtype: type, actions: int) -> None:
    env = make_env(pixel_config(name))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == obs.shape == shape and obs.dtype == env.observation_space.dtype == dtype
    assert obs.flags.c_contiguous and env.action_space == gym.spaces.Discrete(actions)
    obs, *_ = env.step(0)
    assert obs.shape == shape and obs.dtype == dtype and env.observation_space.contains(obs)
    env.close()


def test_minatar_is_cut_at_its_configured_time_limit() -> None:
    env = make_env(pixel_config("minatar_breakout", "env.max_episode_steps=3"))
    env.reset(seed=0)
    assert [env.step(0)[3] for _ in range(3)] == [False, False, True]


def test_channels_first_transposes() -> None:
    space = gym.spaces.Box(0, 255, (5, 6, 3), np.uint8)
    env = ChannelsFirst(ScriptedGame([0.0], [1], observation_space=space))
    assert env.observation_space == gym.spaces.Box(0, 255, (3, 5, 6), np.uint8)
    image = np.arange(90, dtype=np.uint8).reshape(5, 6, 3)
    transposed = env.observation(image)
    assert transposed.flags.c_contiguous and transposed[2, 4, 5] == image[4, 5, 2]


# ------------------------------------------------------------------------------------------- learning signals
class ScriptedGame(gym.Env):
    """Replays a script: step t returns ``rewards[t]`` and ``info["lives"] = lives[t]``; the game ends when the
    lives run out. A reset reports ``start_lives``. Has the ALE's ``get_action_meanings``."""

    metadata: dict[str, Any] = {}

    def __init__(
        self,
        rewards: list[float],
        lives: list[int],
        start_lives: int = 3,
        report_lives: bool = True,
        observation_space: gym.Space | None = None,
        meanings: tuple[str, ...] = ("NOOP", "FIRE", "RIGHT", "LEFT"),
        fire_ends: int = 0,
    ) -> None:
        self.rewards, self.lives, self.start_lives, self.report_lives = rewards, lives, start_lives, report_lives
        self.observation_space = observation_space or gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(len(meanings))
        self.meanings = meanings
        self.fire_ends = fire_ends  # the first this many steps that are FIRE end the game
        self.calls: list[Any] = []

    def get_action_meanings(self) -> list[str]:
        return list(self.meanings)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        self.calls.append(("reset", seed))
        return self.observation_space.sample(), self._info(self.start_lives) | {"reset": len(self.calls)}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.calls.append(("step", action))
        if action == 1 and self.fire_ends > 0:
            self.fire_ends -= 1
            return self.observation_space.sample(), 0.0, True, False, self._info(0)
        reward, lives = self.rewards[self.t], self.lives[self.t]
        self.t += 1
        return np.full(1, self.t, np.float32), reward, lives == 0, False, self._info(lives)

    def _info(self, lives: int) -> dict:
        return {"lives": lives} if self.report_lives else {}


def _capture_scripted(game: ScriptedGame) -> dict[str, Any]:
    return {"t": game.t, "fire_ends": game.fire_ends}


def _restore_scripted(game: ScriptedGame, state: dict[str, Any]) -> None:
    game.t, game.fire_ends = state["t"], state["fire_ends"]


register_snapshot_handler(ScriptedGame, _capture_scripted, _restore_scripted)

REWARDS = [7.0, -3.0, 0.5, 0.0, 1.0, 4.0, -1.0]
LIVES = [3, 2, 2, 1, 1, 1, 0]  # lost at steps 1 and 3; the game ends at step 6


@pytest.mark.parametrize(
    ("clip_reward", "terminal_on_life_loss", "learning_rewards", "learning_terminated"),
    [
        (1.0, False, [1.0, -1.0, 0.5, 0.0, 1.0, 1.0, -1.0], [False] * 6 + [True]),
        (2.5, True, [2.5, -2.5, 0.5, 0.0, 1.0, 2.5, -1.0], [False, True, False, True, False, False, True]),
        (None, True, REWARDS, [False, True, False, True, False, False, True]),
    ],
)
def test_learning_signals_leave_the_game_alone(
    clip_reward: float | None, terminal_on_life_loss: bool, learning_rewards: list, learning_terminated: list
) -> None:
    env = LearningSignals(ScriptedGame(REWARDS, LIVES), clip_reward, terminal_on_life_loss)
    _, info = env.reset(seed=0)
    assert env.lives == 3 and "learning_reward" not in info
    steps = [env.step(0) for _ in REWARDS]
    assert [reward for _, reward, *_ in steps] == REWARDS  # raw, not clipped
    assert [terminated for _, _, terminated, *_ in steps] == [False] * 6 + [True]  # the game ends only at 0 lives
    assert [info["learning_reward"] for *_, info in steps] == learning_rewards
    assert all(type(info["learning_reward"]) is float for *_, info in steps)
    assert [info["learning_terminated"] for *_, info in steps] == learning_terminated
    assert [info["lives"] for *_, info in steps] == LIVES


def test_learning_signals_snapshot_keeps_the_lives_counter() -> None:
    env = LearningSignals(ScriptedGame(REWARDS, LIVES), terminal_on_life_loss=True)
    env.reset(seed=0)
    env.step(0)
    state = env_state(env)
    assert state["layers"][0] == {"class": "LearningSignals", "state": {"lives": 3}}
    env.step(0)
    assert env.lives == 2
    restore_env_state(env, through_checkpoint(state))
    assert env.lives == 3
    assert env.step(0)[4]["learning_terminated"]  # the life lost at step 1, seen again


def test_breakout_learning_signals_on_the_real_game() -> None:
    """The same seeds and actions with and without learning_signals, and with life-loss terminals: the game
    (observations, rewards, episode ends) is the same; only the info signals differ."""
    variants = {
        "plain": pixel_config("breakout", "~env.wrappers.learning_signals"),
        "default": pixel_config("breakout"),
        "life_loss": pixel_config("breakout", "env.wrappers.learning_signals.terminal_on_life_loss=true"),
    }
    runs, reset_lives = {}, {}
    for name, cfg in variants.items():
        env = make_env(cfg)
        _, info = env.reset(seed=3)
        reset_lives[name] = info["lives"]
        rng = np.random.default_rng(3)
        runs[name] = []
        while len(runs[name]) < 600:
            runs[name].append(env.step(int(rng.integers(4))))
            if runs[name][-1][2] or runs[name][-1][3]:
                break
        env.close()

    plain = runs["plain"]
    for name in ("default", "life_loss"):
        assert len(runs[name]) == len(plain)
        for step, (want, got) in enumerate(zip(plain, runs[name])):
            np.testing.assert_array_equal(got[0], want[0], strict=True, err_msg=f"{name} obs after step {step}")
            assert got[1:4] == want[1:4], f"{name} reward/terminated/truncated after step {step}"
            assert got[4]["learning_reward"] == float(np.clip(want[1], -1.0, 1.0))
            assert {key: got[4][key] for key in want[4]} == want[4]
    lives = [reset_lives["plain"]] + [info["lives"] for *_, info in plain]
    dropped = [after < before for before, after in zip(lives, lives[1:])]
    terminated = [step[2] for step in plain]
    assert terminated[-1] and sum(dropped) == 5, "random play should lose all 5 lives within 600 steps"
    assert not any(terminated[:-1]), "the game ended before its last life was lost"
    assert [info["learning_terminated"] for *_, info in runs["default"]] == terminated
    assert [info["learning_terminated"] for *_, info in runs["life_loss"]] == [
        t or d for t, d in zip(terminated, dropped)
    ]


def test_life_loss_terminals_need_a_lives_counter() -> None:
    env = make_env(
        OmegaConf.create(
            {
                "id": "CartPole-v1",
                "action_space": "discrete",
                "num_envs": 1,
                "max_episode_steps": None,
                "wrappers": {"learning_signals": {"terminal_on_life_loss": True}},
                "kwargs": {},
            }
        )
    )
    with pytest.raises(
        ValueError, match=r"^env\.wrappers\.learning_signals\.terminal_on_life_loss=true needs"
    ) as error:
        env.reset(seed=0)
    assert "\n" not in str(error.value) and "CartPole-v1" in str(error.value)
    # without life-loss terminals an env without lives is fine: only the reward is clipped
    env = LearningSignals(ScriptedGame(REWARDS, LIVES, report_lives=False))
    env.reset(seed=0)
    assert env.step(0)[4] == {"learning_reward": 1.0, "learning_terminated": False}


# ------------------------------------------------------------------------------------------- fire reset
def test_fire_reset_fires_once_after_reset() -> None:
    game = ScriptedGame(REWARDS, LIVES)
    obs, info = FireReset(game).reset(seed=7)
    assert game.calls == [("reset", 7), ("step", 1)]
    assert info == {"lives": 3, "reset": 1} and obs[0] == 1.0  # the FIRE step's obs, the reset's info


def test_fire_reset_resets_again_when_fire_ends_the_game() -> None:
    game = ScriptedGame(REWARDS, LIVES, fire_ends=1)
    _, info = FireReset(game).reset(seed=7)
    assert game.calls == [("reset", 7), ("step", 1), ("reset", None)]
    assert info == {"lives": 3, "reset": 3}


def test_breakout_reset_launches_the_ball() -> None:
    """Without FIRE the ball never appears; after fire_reset's reset a few no-ops show it moving."""
    cfg = pixel_config("breakout", "env.wrappers.atari_preprocessing.noop_max=0")
    without = pixel_config("breakout", "env.wrappers.atari_preprocessing.noop_max=0", "~env.wrappers.fire_reset")
    frames = {}
    for name, c in (("fire", cfg), ("no_fire", without)):
        env = make_env(c)
        env.reset(seed=0)
        frames[name] = [env.step(0)[0][-1] for _ in range(6)]
        env.close()
    assert all((a == b).all() for a, b in zip(frames["no_fire"], frames["no_fire"][1:])), "the screen moved"
    assert any((a != b).any() for a, b in zip(frames["fire"], frames["fire"][1:])), "the ball never moved"


# ------------------------------------------------------------------------------------------- config mistakes
def cartpole_with(wrappers: dict) -> DictConfig:
    base = {"id": "CartPole-v1", "action_space": "discrete", "num_envs": 1, "max_episode_steps": None}
    return OmegaConf.create(base | {"wrappers": wrappers, "kwargs": {}})


@pytest.mark.parametrize(
    ("wrappers", "message"),
    [
        ({"fire_reset": {}}, r"fire_reset: bad arguments \{\}: needs an env whose action 1 is FIRE; it names no"),
        ({"fire_reset": {"times": 2}}, r"fire_reset: bad arguments \{'times': 2\}: .*'times'"),
        ({"channels_first": {}}, r"channels_first: bad arguments \{\}: needs a 3-D .* this env has Box"),
        ({"learning_signals": {"clip_reward": -1.0}}, r"learning_signals: .*clip_reward: must be a positive finite"),
        ({"learning_signals": {"clip_reward": "1"}}, r"learning_signals: .*clip_reward: must be a positive number"),
        ({"learning_signals": {"clip_reward": True}}, r"learning_signals: .*clip_reward: must be a positive number"),
        ({"learning_signals": {"terminal_on_life_loss": "yes"}}, r"learning_signals: .*must be true or false"),
        ({"learning_signals": {"clip": 1.0}}, r"learning_signals: bad arguments \{'clip': 1.0\}: .*'clip'"),
    ],
)
def test_pixel_wrapper_mistakes_are_one_line_naming_their_key(wrappers: dict, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^env\.wrappers\.{message}") as error:
        make_env(cartpole_with(wrappers))
    assert "\n" not in str(error.value)


def test_an_ale_game_without_fire_is_refused() -> None:
    cfg = OmegaConf.merge(pixel_config("breakout"), {"id": "ALE/Freeway-v5"})  # NOOP, UP, DOWN
    message = r"^env\.wrappers\.fire_reset: bad arguments \{'after_life_loss': True\}: needs an env whose action 1 "
    message += r"is FIRE; its actions are \['NOOP', 'UP', 'DOWN'\]$"
    with pytest.raises(ValueError, match=message):
        make_env(cfg)


def test_minatar_needs_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "minatar", None)  # as if not installed: importing it raises ImportError
    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    cfg = OmegaConf.merge(pixel_config("minatar_breakout"), {"id": "MinAtar/NotRegistered-v0"})
    with pytest.raises(
        ValueError, match=r"^env\.id='MinAtar/NotRegistered-v0' needs the minatar package: pip install"
    ) as error:
        make_env(cfg)
    assert "\n" not in str(error.value)


def test_fire_reset_fires_after_a_lost_life_within_the_same_step() -> None:
    # lives 3, 3, 2 (lost at the second step), then FIRE's step, then 2, 1 (lost), FIRE, 0 (game over: no FIRE)
    game = ScriptedGame([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0], [3, 2, 2, 2, 1, 1, 0])
    env = FireReset(game, after_life_loss=True)
    env.reset(seed=0)  # FIRE takes script step 0
    steps = [env.step(0) for _ in range(3)]
    assert [reward for _, reward, *_ in steps] == [2.0 + 4.0, 8.0, 16.0 + 32.0]
    assert [info["lives"] for *_, info in steps] == [2, 2, 1]
    assert game.calls[2:] == [("step", 0), ("step", 1), ("step", 0), ("step", 0), ("step", 1)]
    _, _, terminated, _, _ = env.step(0)
    assert terminated and game.calls[-1] == ("step", 0)
    assert env_state(env)["layers"][0]["state"] == {"lives": 0}
    with pytest.raises(ValueError, match="after_life_loss"):
        FireReset(ScriptedGame([0.0], [1]), after_life_loss="yes")
