"""The agents' shared parts (rl_runner/agents/common.py): the soft target update, and learning signals (clipped
rewards, life-loss terminals) that change only what the agent learns from, not the logged returns."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rl_runner.agents.common import SoftUpdate
from rl_runner.checkpoint import latest_checkpoint, load_state
from rl_runner.config import compose_config
from rl_runner.logging import read_scalars
from rl_runner.training import train
from tests.conftest import TINY


def test_soft_update_matches_the_formula() -> None:
    online, target = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    expected = {k: 0.9 * target.state_dict()[k] + 0.1 * v for k, v in online.state_dict().items()}
    SoftUpdate(target, online, 0.1)()
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, expected[key])


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
