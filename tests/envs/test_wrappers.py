"""The env wrappers (rl_runner/envs/wrappers.py): config order, observation_subset, channels_first,
learning_signals and fire_reset, on scripted games and real Breakout, and their one-line mistakes."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import DictConfig, OmegaConf

from rl_runner.config import compose_config
from rl_runner.envs.make import make_env
from rl_runner.envs.state import env_state, register_snapshot_handler, restore_env_state
from rl_runner.envs.wrappers import (
    WRAPPERS,
    ChannelsFirst,
    FireReset,
    LearningSignals,
    ObservationSubset,
    apply_wrappers,
    make_wrapper,
)
from tests.envs.helpers import env_config, pixel_config, through_checkpoint


def test_wrappers_apply_in_config_order() -> None:
    stacked_then_flat = {"frame_stack": {"stack_size": 3}, "flatten_observation": {}}
    flat_then_stacked = {"flatten_observation": {}, "frame_stack": {"stack_size": 3}}
    assert apply_wrappers(gym.make("Pendulum-v1"), stacked_then_flat).observation_space.shape == (9,)
    assert apply_wrappers(gym.make("Pendulum-v1"), flat_then_stacked).observation_space.shape == (3, 3)
    # make_env then flattens what no torso takes as it is (a stack of vectors)
    assert make_env(env_config("Pendulum-v1", "continuous", wrappers=flat_then_stacked)).observation_space.shape == (9,)


@pytest.mark.parametrize(
    ("wrappers", "message"),
    [
        ({"nope": {}}, rf"^env\.wrappers\.nope: unknown wrapper; known: {', '.join(sorted(WRAPPERS))}$"),
        ({"frame_stack": {"size": 4}}, r"^env\.wrappers\.frame_stack: bad arguments \{'size': 4\}: .*'size'"),
        ({"frame_stack": {"stack_size": 0}}, r"^env\.wrappers\.frame_stack: bad arguments .*greater than zero"),
    ],
)
def test_a_wrapper_config_mistake_is_one_line_naming_its_key(wrappers: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        make_env(env_config("Pendulum-v1", "continuous", wrappers=wrappers))
    assert "\n" not in str(error.value)


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


# ------------------------------------------------------------------------------------------- observation_subset
def test_observation_subset_keeps_the_chosen_entries_and_bounds() -> None:
    full = gym.make("CartPole-v1")
    part = make_wrapper(gym.make("CartPole-v1"), "observation_subset", {"indices": [0, 2]})
    assert isinstance(part, ObservationSubset)
    assert part.observation_space == gym.spaces.Box(
        full.observation_space.low[[0, 2]], full.observation_space.high[[0, 2]], dtype=np.float32
    )
    want, _ = full.reset(seed=0)
    got, _ = part.reset(seed=0)
    for _ in range(5):
        np.testing.assert_array_equal(got, want[[0, 2]], strict=True)
        assert got in part.observation_space
        want, *_ = full.step(1)
        got, *_ = part.step(1)


@pytest.mark.parametrize(
    "env_id, indices, message",
    [
        ("CartPole-v1", [], "at least one"),
        ("CartPole-v1", [0, 4], r"\[4\] out of range"),
        ("CartPole-v1", [-1], r"\[-1\] out of range"),
        ("CartPole-v1", [2, 0, 2], "repeats"),
        ("FrozenLake-v1", [0], "1-D Box"),
    ],
)
def test_observation_subset_mistakes_are_one_line(env_id: str, indices: list, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^env\.wrappers\.observation_subset: bad arguments .*indices: .*{message}"):
        make_wrapper(gym.make(env_id), "observation_subset", {"indices": indices})


def test_cartpole_pomdp_config_hides_the_velocities() -> None:
    cfg = compose_config(["env=cartpole_pomdp"])
    env = make_env(cfg.env)
    obs, _ = env.reset(seed=0)
    full, _ = gym.make("CartPole-v1").reset(seed=0)
    np.testing.assert_array_equal(obs, full[[0, 2]], strict=True)
    restore_env_state(env, through_checkpoint(env_state(env)))  # a stateless layer, snapshottable
