"""The 1-D conv nets of AnoGAN (rl_runner/networks/conv1d.py): GAN parts for any window length."""

from __future__ import annotations

import pytest
import torch

from rl_runner.config import compose_config


@pytest.mark.parametrize("window", [60, 64, 9])
def test_the_conv1d_net_builds_gan_parts_for_any_window_length(window: int) -> None:
    """SKAB's 60-row windows are no power of two: the generator crops what it makes to the window."""
    from rl_runner.networks.conv1d import Discriminator, Encoder, Generator

    cfg = compose_config(["agent=anogan", "net.width=8", "net.depth=3"])
    assert cfg.net.name == "conv1d"
    generator = Generator(5, window, 4, cfg.net.width, cfg.net.depth)
    discriminator = Discriminator(window, 4, cfg.net.width, cfg.net.depth, spectral_norm=True)
    windows = generator(torch.randn(2, 5))
    assert windows.shape == (2, window, 4)
    output, features = discriminator(windows)
    assert output.shape == (2,) and features.shape[0] == 2
    assert Encoder(5, window, 4, cfg.net.width, cfg.net.depth)(windows).shape == (2, 5)
    with pytest.raises(ValueError, match="too short for net.depth=4"):
        Generator(5, 15, 4, 8, 4)
