"""Torsos under a value head: what turns an observation into the features a Q head reads.

``net=mlp`` gives ``net.depth - 1`` hidden layers for vector observations (the head's streams hold the last
one); a pixels net (``net=nature_cnn``, ``data_efficient_cnn``, ``minatar_cnn``) gives conv layers for image
observations ``[C, H, W]``, flattened, and the head's streams hold ``net.hidden`` units.
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from rl_runner.choices import Activation, Init
from rl_runner.networks.init import initialise_linear
from rl_runner.networks.mlp import ACTIVATIONS, hidden_layers, resolve_net_spec
from rl_runner.schemas import PixelNetConfig


def is_pixel_net(net: Mapping[str, Any]) -> bool:
    return "channels" in net


class PixelTorso(nn.Module):
    """Images ``[..., C, H, W]`` (uint8 pixels or booleans; any leading axes) -> features ``[..., features]``.
    Integer pixels are scaled to [0, 1] here, on the device, so replay and acting can move them as bytes."""

    def __init__(self, observation_space: gym.spaces.Space, net: Mapping[str, Any]) -> None:
        super().__init__()
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 3:
            raise ValueError(f"net={net['name']} needs image observations [C, H, W], the env has {observation_space}")
        self.image_shape = tuple(int(size) for size in observation_space.shape)
        dtype = observation_space.dtype
        self.scale = 1.0 / float(np.max(observation_space.high)) if np.issubdtype(dtype, np.integer) else 1.0
        activation, init = Activation(net["activation"]), Init(net["init"])
        layers: list[nn.Module] = []
        channels = self.image_shape[0]
        for out_channels, kernel, stride in zip(net["channels"], net["kernels"], net["strides"]):
            conv = nn.Conv2d(channels, int(out_channels), int(kernel), int(stride))
            initialise_linear(conv, init, activation, is_output=False)
            layers += [conv, ACTIVATIONS[activation]()]
            channels = int(out_channels)
        self.convs = nn.Sequential(*layers, nn.Flatten())
        # the same rule the config check applies (rl_runner/config/checks.py), so both refuse the same nets
        feature_map = PixelNetConfig.feature_map(*self.image_shape[1:], list(net["kernels"]), list(net["strides"]))
        if feature_map is None:
            raise ValueError(
                f"net={net['name']}: its conv layers (kernels {list(net['kernels'])}, strides "
                f"{list(net['strides'])}) do not fit a {self.image_shape[1]}x{self.image_shape[2]} observation"
            )
        self.features = channels * feature_map[0] * feature_map[1]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-3]
        images = obs.reshape(-1, *self.image_shape).float()
        if self.scale != 1.0:
            images = images * self.scale
        return self.convs(images).reshape(*lead, self.features)


def head_torso(observation_space: gym.spaces.Space, net: Mapping[str, Any], agent: str) -> tuple[nn.Module, int]:
    """The torso for a head whose streams hold one hidden layer of ``net.hidden`` units, and its output width."""
    if is_pixel_net(net):
        torso = PixelTorso(observation_space, net)
        return torso, torso.features
    spec = resolve_net_spec(net)
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        pixels = isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 3
        hint = " (image observations: choose a conv torso, e.g. net=nature_cnn)" if pixels else ""
        raise ValueError(f"{agent}'s net=mlp needs flat vector observations, the env has {observation_space}{hint}")
    if spec.depth < 1:
        raise ValueError(f"{agent} needs net.depth >= 1: the head's streams hold the last hidden layer")
    obs_dim = int(observation_space.shape[0])
    torso = nn.Sequential(*hidden_layers(obs_dim, spec, depth=spec.depth - 1))
    return torso, spec.hidden if spec.depth > 1 else obs_dim
