"""Helpers shared by the DRQN tests: a small DRQN built directly, its MLP settings and the recurrent cells."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from rl_runner.agents.drqn import DRQN
from rl_runner.choices import Activation, Init, Norm, RecurrentCell
from rl_runner.clock import Clock
from tests.buffers.helpers import CPU, EPISODES, OBS

CELLS = [RecurrentCell.lstm, RecurrentCell.gru, RecurrentCell.none]


NET = {"name": "mlp", "hidden": 8, "depth": 1, "norm": Norm.none, "init": Init.default, "activation": Activation.relu}


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
