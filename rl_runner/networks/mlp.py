"""The MLP builder shared by every agent: sizes, normalization, init and activation come from ``net``."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

import torch.nn as nn

from rl_runner.choices import Activation, Norm
from rl_runner.networks.init import initialise_linear
from rl_runner.schemas import MLPConfig

NET_FIELDS = tuple(f.name for f in fields(MLPConfig))

ACTIVATIONS = {
    Activation.relu: nn.ReLU,
    Activation.tanh: nn.Tanh,
    Activation.elu: nn.ELU,
    Activation.leaky_relu: nn.LeakyReLU,
    Activation.gelu: nn.GELU,
    Activation.silu: nn.SiLU,
}


def resolve_net_spec(shared: Mapping[str, Any], override: Mapping[str, Any] | None = None) -> MLPConfig:
    """The shared ``net`` group with the non-null fields of a per-network override on top, as plain values."""
    if shared["name"] != "mlp":
        raise ValueError(f"net={shared['name']} is not an MLP")
    values = {key: shared[key] for key in NET_FIELDS}
    if override is not None:
        values.update({key: value for key, value in override.items() if value is not None})
    spec = MLPConfig(**values)
    if spec.hidden < 1 or spec.depth < 0:
        raise ValueError(f"net needs hidden >= 1 and depth >= 0, got hidden={spec.hidden} depth={spec.depth}")
    return spec


def hidden_layers(in_features: int, spec: MLPConfig, depth: int | None = None) -> list[nn.Module]:
    """Linear -> [norm] -> activation, ``depth`` (default ``spec.depth``) times: a torso whose output width is
    ``spec.hidden`` (``in_features`` when the depth is 0)."""
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(spec.depth if depth is None else depth):
        # BatchNorm subtracts the batch mean of every unit, so a bias before it gets no true gradient
        # (Adam would turn its rounding noise into a random walk). LayerNorm keeps it: it centres across units.
        linear = nn.Linear(width, spec.hidden, bias=spec.norm is not Norm.batch)
        initialise_linear(linear, spec.init, spec.activation, is_output=False)
        layers.append(linear)
        if spec.norm is Norm.layer:
            layers.append(nn.LayerNorm(spec.hidden))
        elif spec.norm is Norm.batch:
            layers.append(nn.BatchNorm1d(spec.hidden))
        layers.append(ACTIVATIONS[spec.activation]())
        width = spec.hidden
    return layers


def build_mlp(in_features: int, out_features: int, spec: MLPConfig) -> nn.Sequential:
    """``spec.depth`` hidden layers, then a plain linear output layer."""
    output = nn.Linear(spec.hidden if spec.depth else in_features, out_features)
    initialise_linear(output, spec.init, spec.activation, is_output=True)
    return nn.Sequential(*hidden_layers(in_features, spec), output)
