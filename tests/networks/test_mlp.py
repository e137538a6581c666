"""The MLP builder and initialisation (rl_runner/networks/mlp.py, rl_runner/networks/init.py): layer sizes,
norms, init schemes and activations as configured."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from rl_runner.choices import Activation, Init, Norm
from rl_runner.config import compose_config
from rl_runner.networks import build_mlp, resolve_net_spec
from rl_runner.networks.init import FANIN_FINAL_LAYER_BOUND


def test_the_mlp_net_composes_and_builds_what_it_says() -> None:
    cfg = compose_config(["net=mlp", "net.hidden=24", "net.depth=3"])
    assert cfg.net.name == "mlp"
    built = build_mlp(7, 3, resolve_net_spec(cfg.net))
    widths = [(m.in_features, m.out_features) for m in built if isinstance(m, nn.Linear)]
    assert widths == [(7, 24), (24, 24), (24, 24), (24, 3)]


@pytest.mark.parametrize("norm", list(Norm))
@pytest.mark.parametrize("init", list(Init))
def test_mlp_builder_honours_norm_init_and_activation(norm: Norm, init: Init) -> None:
    cfg = compose_config(
        [f"net.norm={norm.value}", f"net.init={init.value}", "net.hidden=16", "net.depth=3", "net.activation=tanh"]
    )
    net = build_mlp(5, 2, resolve_net_spec(cfg.net))
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(5, 16), (16, 16), (16, 16), (16, 2)]
    norm_types = {Norm.none: (), Norm.layer: (nn.LayerNorm,), Norm.batch: (nn.BatchNorm1d,)}[norm]
    assert sum(isinstance(m, norm_types) for m in net) == (3 if norm_types else 0)
    assert sum(isinstance(m, nn.Tanh) for m in net) == 3
    # BatchNorm cancels a bias before it exactly; LayerNorm does not (it centres across units, not the batch)
    assert [layer.bias is None for layer in linears] == [norm is Norm.batch] * 3 + [False]
    if init is Init.default:
        return
    # every scheme but PyTorch's own starts the output layer small: no saturated tanh, Q-values near zero
    assert linears[-1].weight.abs().max() <= FANIN_FINAL_LAYER_BOUND
    gain = 5 / 3  # tanh's
    expected_bound = {
        Init.fanin_uniform: 1 / 5**0.5,
        Init.he: gain * (3 / 5) ** 0.5,
        Init.xavier: gain * (6 / (5 + 16)) ** 0.5,
    }
    if init in expected_bound:  # uniform schemes: the largest weight is close to the bound, never above it
        bound = expected_bound[init]
        assert 0.8 * bound < float(linears[0].weight.detach().abs().max()) <= bound
    if init is Init.orthogonal:  # rows orthogonal, scaled by the activation's gain
        weight = linears[1].weight.detach()
        torch.testing.assert_close(weight @ weight.T, gain**2 * torch.eye(16), atol=1e-4, rtol=1e-4)
    if init is not Init.fanin_uniform:
        assert all(float(layer.bias.detach().abs().max()) == 0.0 for layer in linears if layer.bias is not None)


def test_he_init_keeps_the_actor_out_of_tanh_saturation(tiny_config) -> None:
    """With the output layer left at He scale, about a quarter of the initial pre-tanh outputs on HalfCheetah
    were beyond |2| (tanh > 0.96): the policy started pinned to its bounds."""
    from tests.conftest import make_agent

    agent = make_agent(tiny_config("env=halfcheetah", "net.init=he", "net.hidden=256"))
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(4096, 17)), dtype=torch.float32)
    with torch.no_grad():
        pre_tanh = agent.actor.body(obs)
    assert float((pre_tanh.abs() > 2).float().mean()) < 0.01


def test_activation_choices_cover_the_schema() -> None:
    from rl_runner.networks.mlp import ACTIVATIONS

    assert set(ACTIVATIONS) == set(Activation)
