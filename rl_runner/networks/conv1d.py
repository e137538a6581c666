"""1-D convolutional GAN parts for windows of a multichannel series (DCGAN for sequences).

Windows are ``[B, window, channels]`` (time first, as the data sources hold them); the nets transpose to
PyTorch's ``[B, channels, time]`` inside. ``depth`` stride-2 layers halve (discriminator, encoder) or double
(generator) the length; the generator makes the smallest multiple of ``2**depth`` that covers the window and
crops it, so any window length works (SKAB's 60 rows, not only powers of two).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as with_spectral_norm

LEAK = 0.2  # LeakyReLU slope of the discriminator and encoder (DCGAN)


def check_window(window: int, depth: int) -> None:
    if window < 2**depth:
        raise ValueError(f"a window of {window} rows is too short for net.depth={depth} halvings (at least {2**depth})")


class Generator(nn.Module):
    """z [B, latent] -> a window [B, window, channels], the discriminator's mirror: a linear layer to
    ``width * 2**(depth-1)`` channels of the shortest length, then ``depth`` transposed convolutions that double
    the length (and halve the channels down to ``width``), then a convolution to the window's channels."""

    def __init__(self, latent_dim: int, window: int, channels: int, width: int, depth: int) -> None:
        super().__init__()
        check_window(window, depth)
        self.window = window
        start_length = math.ceil(window / 2**depth)
        wide = [width * 2 ** max(depth - 1 - i, 0) for i in range(depth + 1)]  # channels before and after each layer
        self.project = nn.Sequential(
            nn.Linear(latent_dim, wide[0] * start_length),
            nn.Unflatten(1, (wide[0], start_length)),
            nn.BatchNorm1d(wide[0]),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [
                nn.ConvTranspose1d(wide[i], wide[i + 1], 4, stride=2, padding=1),
                nn.BatchNorm1d(wide[i + 1]),
                nn.ReLU(),
            ]
        layers.append(nn.Conv1d(width, channels, 3, padding=1))  # linear output: scaled data is not bounded
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z))[:, :, : self.window].transpose(1, 2)  # [B, window, channels]


def conv_stack(channels: int, width: int, depth: int, spectral_norm: bool) -> nn.Sequential:
    """``depth`` stride-2 convolutions, ``channels -> width -> 2 width -> ...``, each with a LeakyReLU."""
    layers: list[nn.Module] = []
    for i in range(depth):
        conv = nn.Conv1d(channels if i == 0 else width * 2 ** (i - 1), width * 2**i, 4, stride=2, padding=1)
        layers += [with_spectral_norm(conv) if spectral_norm else conv, nn.LeakyReLU(LEAK)]
    return nn.Sequential(*layers, nn.Flatten())


def stack_features(window: int, width: int, depth: int) -> int:
    length = window
    for _ in range(depth):
        length //= 2  # kernel 4, stride 2, padding 1
    return width * 2 ** (depth - 1) * length


class Discriminator(nn.Module):
    """A window -> (a real/fake logit or critic value [B], the last convolution's features [B, F]). The features
    are what AnoGAN's discrimination loss compares (feature matching), so they are returned with the output."""

    def __init__(self, window: int, channels: int, width: int, depth: int, spectral_norm: bool) -> None:
        super().__init__()
        check_window(window, depth)
        self.features = conv_stack(channels, width, depth, spectral_norm)
        head = nn.Linear(stack_features(window, width, depth), 1)
        self.head = with_spectral_norm(head) if spectral_norm else head

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(windows.transpose(1, 2))  # [B, F]
        return self.head(features).squeeze(1), features


class Encoder(nn.Module):
    """A window -> z [B, latent] (f-AnoGAN): the discriminator's architecture with a linear latent head."""

    def __init__(self, latent_dim: int, window: int, channels: int, width: int, depth: int) -> None:
        super().__init__()
        check_window(window, depth)
        self.body = conv_stack(channels, width, depth, spectral_norm=False)
        self.head = nn.Linear(stack_features(window, width, depth), latent_dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(windows.transpose(1, 2)))
