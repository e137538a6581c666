"""Weight initialisation schemes selectable with ``net.init``."""

from __future__ import annotations

import math

import torch.nn as nn

from rl_runner.config import Activation, Init

# DDPG paper, section 7: the final layer starts near zero so initial actions and Q-values are near zero.
FANIN_FINAL_LAYER_BOUND = 3e-3


def _gain(activation: Activation) -> float:
    name = "leaky_relu" if activation is Activation.leaky_relu else activation.value
    return nn.init.calculate_gain(name) if name in ("relu", "tanh", "leaky_relu") else math.sqrt(2.0)


def initialise_linear(layer: nn.Linear, scheme: Init, activation: Activation, is_output: bool) -> None:
    """Initialise one linear layer in place. ``default`` keeps PyTorch's own initialisation."""
    if scheme is Init.default:
        return
    if scheme is Init.fanin_uniform:
        bound = FANIN_FINAL_LAYER_BOUND if is_output else 1.0 / math.sqrt(layer.in_features)
        nn.init.uniform_(layer.weight, -bound, bound)
        nn.init.uniform_(layer.bias, -bound, bound)
        return
    if scheme is Init.he:
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    elif scheme is Init.xavier:
        nn.init.xavier_uniform_(layer.weight)
    elif scheme is Init.orthogonal:
        nn.init.orthogonal_(layer.weight, gain=1.0 if is_output else _gain(activation))
    nn.init.zeros_(layer.bias)
