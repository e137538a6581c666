"""The torsos (rl_runner/networks/torsos.py): pixel envs pick their conv torso, and torso mistakes are one line."""

from __future__ import annotations

import pytest
import torch

from rl_runner.clock import Clock
from rl_runner.config import ConfigError, check_values, compose_config
from rl_runner.envs.make import make_env
from rl_runner.runners.env_loop import make_agent
from tests.conftest import MINATAR, TINY


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
