"""Noisy linear layers (rl_runner/networks/noisy.py): factorised noise, resets, initialisation and output statistics."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from rl_runner.networks.noisy import NoisyLinear, mean_sigma, noisy_layers, reset_noise, set_noise


def effective_weights(layer: NoisyLinear) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias the layer applies right now, read off its outputs on the unit vectors and on zero."""
    with torch.no_grad():
        bias = layer(torch.zeros(1, layer.in_features))[0]
        weight = (layer(torch.eye(layer.in_features)) - bias).T
    return weight, bias


def test_noisy_weight_noise_is_rank_one_factorised() -> None:
    """weight - mu is the rank-one sigma * outer(f(e_out), f(e_in)); bias noise is sigma_b * f(e_out)."""
    torch.manual_seed(17)
    layer = NoisyLinear(7, 5, sigma0=0.5)
    with torch.no_grad():
        layer.weight_sigma.uniform_(0.1, 1.0)  # not constant, so the elementwise product is checked
        layer.bias_sigma.uniform_(0.1, 1.0)
    layer.reset_noise()
    weight, bias = effective_weights(layer)
    noise = (weight - layer.weight_mu).detach()
    assert torch.linalg.matrix_rank(noise / layer.weight_sigma.detach()) == 1
    outer = torch.outer(layer.noise_out, layer.noise_in)
    torch.testing.assert_close(noise, layer.weight_sigma.detach() * outer, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(bias, (layer.bias_mu + layer.bias_sigma * layer.noise_out).detach(), atol=1e-6, rtol=0)
    # the stored noise is f(e) = sign(e) sqrt(|e|): E f^2 = E|e| = sqrt(2 / pi), E f^4 = E e^2 = 1
    samples = []
    for _ in range(1000):
        layer.reset_noise()
        samples.append(torch.cat([layer.noise_in, layer.noise_out]))
    values = torch.cat(samples).double()
    assert abs(values.pow(2).mean().item() - math.sqrt(2 / math.pi)) < 0.03
    assert abs(values.pow(4).mean().item() - 1.0) < 0.08
    assert abs(values.mean().item()) < 0.03


def test_noisy_output_changes_only_on_reset_noise() -> None:
    """Forwards between resets agree exactly; reset_noise (and the module-level helper) changes the output."""
    torch.manual_seed(18)
    layer = NoisyLinear(6, 4, sigma0=0.5)
    x = torch.randn(3, 6)
    layer.reset_noise()
    first = layer(x)
    torch.randn(100)  # consuming the global RNG changes nothing
    torch.testing.assert_close(layer(x), first, rtol=0, atol=0)
    layer.reset_noise()
    second = layer(x)
    assert not torch.allclose(first, second)
    torch.testing.assert_close(layer(x), second, rtol=0, atol=0)
    net = nn.Sequential(layer, nn.ReLU(), NoisyLinear(4, 2, sigma0=0.5))
    before = net(x)
    reset_noise(net)
    assert not torch.allclose(before, net(x))
    assert len(noisy_layers(net)) == 2
    torch.testing.assert_close(mean_sigma(net), torch.tensor(0.5 / math.sqrt(6) / 2 + 0.5 / 2 / 2))


def test_noisy_without_noise_is_the_linear_map_of_the_means() -> None:
    """use_noise False (and set_noise(False)) gives exactly F.linear(x, weight_mu, bias_mu)."""
    torch.manual_seed(19)
    layer = NoisyLinear(6, 4, sigma0=0.5)
    layer.reset_noise()
    x = torch.randn(5, 6)
    noisy = layer(x)
    set_noise(layer, False)
    assert layer.use_noise is False
    plain = layer(x)
    torch.testing.assert_close(plain, F.linear(x, layer.weight_mu, layer.bias_mu), rtol=0, atol=0)
    assert not torch.allclose(noisy, plain)
    layer.reset_noise()
    torch.testing.assert_close(layer(x), plain, rtol=0, atol=0)
    set_noise(layer, True)
    assert not torch.allclose(layer(x), plain)


def test_noisy_initialisation_bounds() -> None:
    """mu ~ U[-1/sqrt(p), 1/sqrt(p)] and sigma = sigma0 / sqrt(p), for weights and biases."""
    torch.manual_seed(20)
    p, q, sigma0 = 64, 48, 0.4
    layer = NoisyLinear(p, q, sigma0=sigma0)
    bound = 1 / math.sqrt(p)
    for mu in (layer.weight_mu, layer.bias_mu):
        assert mu.abs().max() <= bound
    assert layer.weight_mu.abs().max() > 0.95 * bound  # spread over the whole interval, not a smaller one
    assert abs(layer.weight_mu.std().item() - bound / math.sqrt(3)) < 0.05 * bound
    torch.testing.assert_close(layer.weight_sigma.detach(), torch.full((q, p), sigma0 / math.sqrt(p)))
    torch.testing.assert_close(layer.bias_sigma.detach(), torch.full((q,), sigma0 / math.sqrt(p)))
    assert layer.weight_mu.shape == (q, p) and layer.bias_mu.shape == (q,)


def test_noisy_output_statistics_match_the_analytic_mean_and_std() -> None:
    """Over many resets the output's mean is the mean map and its std sqrt(c (c sum s^2 x^2 + s_b^2)), c = E|e|."""
    torch.manual_seed(21)
    layer = NoisyLinear(8, 3, sigma0=0.5)
    with torch.no_grad():
        layer.weight_sigma.uniform_(0.05, 0.6)
        layer.bias_sigma.uniform_(0.05, 0.6)
    x = torch.randn(8)
    outputs = []
    with torch.no_grad():
        for _ in range(4000):
            layer.reset_noise()
            outputs.append(layer(x))
    y = torch.stack(outputs).double()
    c = math.sqrt(2 / math.pi)
    sigma_w, sigma_b = layer.weight_sigma.detach().double(), layer.bias_sigma.detach().double()
    std = torch.sqrt(c * (c * (sigma_w**2 * x.double() ** 2).sum(-1) + sigma_b**2))
    mean = F.linear(x, layer.weight_mu, layer.bias_mu).detach().double()
    torch.testing.assert_close(y.std(0), std, rtol=0.08, atol=0)
    assert ((y.mean(0) - mean).abs() < 4 * std / math.sqrt(4000)).all()
