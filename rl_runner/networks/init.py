"""Weight initialisation schemes selectable with ``net.init``."""

from __future__ import annotations

import math

import torch.nn as nn

from rl_runner.choices import Activation, Init

# DDPG paper, section 7: the final layer starts near zero so initial actions and Q-values are near zero.
FANIN_FINAL_LAYER_BOUND = 3e-3


def _gain(activation: Activation) -> float:
    """The factor that keeps activations' variance through a layer (gelu, silu and elu behave like relu)."""
    name = activation.value if activation in (Activation.relu, Activation.tanh, Activation.leaky_relu) else "relu"
    return nn.init.calculate_gain(name, 0.01 if activation is Activation.leaky_relu else None)  # nn.LeakyReLU's slope


def initialise_linear(layer: nn.Linear | nn.Conv2d, scheme: Init, activation: Activation, is_output: bool) -> None:
    """Initialise one linear (or conv) layer in place. ``default`` keeps PyTorch's own initialisation.

    Every other scheme gives the output layer the DDPG paper's small uniform init, so initial actions sit in
    the middle of a tanh instead of at its saturated ends and initial Q-values are near zero; hidden layers are
    scaled for the activation that follows them."""
    if scheme is Init.default:
        return
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)  # a conv layer: fans include the kernel area
    if is_output:
        bound = FANIN_FINAL_LAYER_BOUND
    elif scheme is Init.fanin_uniform:
        bound = 1.0 / math.sqrt(fan_in)
    elif scheme is Init.he:
        bound = _gain(activation) * math.sqrt(3.0 / fan_in)  # kaiming_uniform_ with this gain
    elif scheme is Init.xavier:
        bound = _gain(activation) * math.sqrt(6.0 / (fan_in + fan_out))
    else:
        bound = None
    if bound is None:  # orthogonal
        nn.init.orthogonal_(layer.weight, gain=_gain(activation))
    else:
        nn.init.uniform_(layer.weight, -bound, bound)
    if layer.bias is not None:
        if scheme is Init.fanin_uniform:
            nn.init.uniform_(layer.bias, -bound, bound)
        else:
            nn.init.zeros_(layer.bias)
