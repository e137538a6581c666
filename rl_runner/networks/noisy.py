"""Factorised Gaussian noisy linear layers (Fortunato et al., 2018), the exploration of Rainbow.

``y = (mu_w + sigma_w * (f(e_out) f(e_in)^T)) x + mu_b + sigma_b * f(e_out)`` with ``f(x) = sign(x) sqrt(|x|)``
and ``e_in ~ N(0, I_p)``, ``e_out ~ N(0, I_q)``: p + q random numbers per layer instead of p q. Initialisation:
``mu ~ U[-1/sqrt(p), 1/sqrt(p)]``, ``sigma = sigma0 / sqrt(p)``.

The noise is a buffer that changes only when ``reset_noise`` is called; the agent calls it once per acting step
and once per learning update, never inside a forward pass. With ``use_noise`` off (evaluation) the layer is the
plain linear map of its mean weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _scaled_noise(size: int, device: torch.device) -> torch.Tensor:
    noise = torch.randn(size, device=device)
    return noise.sign() * noise.abs().sqrt()


class NoisyLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, sigma0: float) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma0 * bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma0 * bound))
        self.register_buffer("noise_in", torch.zeros(in_features))
        self.register_buffer("noise_out", torch.zeros(out_features))
        self.use_noise = True

    @torch.no_grad()
    def reset_noise(self) -> None:
        self.noise_in.copy_(_scaled_noise(self.in_features, self.noise_in.device))
        self.noise_out.copy_(_scaled_noise(self.out_features, self.noise_out.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_noise:
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * torch.outer(self.noise_out, self.noise_in)  # [q, p], rank one
        return F.linear(x, weight, self.bias_mu + self.bias_sigma * self.noise_out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def noisy_layers(module: nn.Module) -> list[NoisyLinear]:
    return [m for m in module.modules() if isinstance(m, NoisyLinear)]


def _layers(target: nn.Module | list[NoisyLinear]) -> list[NoisyLinear]:
    """A network's noisy layers; agents pass the list they gathered once (walking modules costs per step)."""
    return target if isinstance(target, list) else noisy_layers(target)


def reset_noise(target: nn.Module | list[NoisyLinear]) -> None:
    """New noise for every noisy layer (a no-op for a network without any)."""
    for layer in _layers(target):
        layer.reset_noise()


def set_noise(target: nn.Module | list[NoisyLinear], enabled: bool) -> None:
    for layer in _layers(target):
        layer.use_noise = enabled


def mean_sigma(target: nn.Module | list[NoisyLinear]) -> torch.Tensor:
    """The mean |sigma| of the weights of every noisy layer: how much exploration noise is left."""
    sigmas = [layer.weight_sigma.detach().abs().mean() for layer in _layers(target)]
    return torch.stack(sigmas).mean() if sigmas else torch.zeros(())
