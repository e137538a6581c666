"""The Q heads (rl_runner/networks/q_heads.py): the dueling head's value stream, noisy layers and plain heads."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from rl_runner.networks.noisy import noisy_layers, reset_noise
from rl_runner.networks.q_heads import QHead


@pytest.mark.parametrize("atoms", [1, 5])
@pytest.mark.parametrize("noisy", [False, True])
def test_dueling_head_mean_over_actions_is_the_value_stream(atoms: int, noisy: bool) -> None:
    """Dueling: Q = V + A - mean_a A per atom, so mean over actions equals V; [B, F] and [B, T, F] alike."""
    torch.manual_seed(22)
    head = QHead(10, num_actions=4, hidden=16, atoms=atoms, dueling=True, noisy=noisy, sigma0=0.5, activation=nn.ReLU)
    reset_noise(head)
    for features in (torch.randn(3, 10), torch.randn(3, 7, 10)):
        with torch.no_grad():
            q = head(features)
            value = head.value(features)
            advantage = head.advantage(features).reshape(*features.shape[:-1], 4, atoms)
        assert q.shape == (*features.shape[:-1], 4, atoms)
        torch.testing.assert_close(q.mean(-2), value, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(q, value.unsqueeze(-2) + advantage - advantage.mean(-2, keepdim=True))
        assert not torch.allclose(q, q.mean(-2, keepdim=True))  # the advantages are not all zero
    sequence = torch.randn(2, 5, 10)
    with torch.no_grad():
        torch.testing.assert_close(head(sequence).reshape(10, 4, atoms), head(sequence.reshape(10, 10)))


@pytest.mark.parametrize("noisy", [False, True])
def test_head_layers_and_plain_head_without_value_stream(noisy: bool) -> None:
    """noisy picks NoisyLinear for every layer (nn.Linear otherwise); a non-dueling head is its advantage stream."""
    torch.manual_seed(23)
    for dueling in (False, True):
        head = QHead(6, num_actions=3, hidden=8, atoms=11, dueling=dueling, noisy=noisy, sigma0=0.5, activation=nn.Tanh)
        layers = 4 if dueling else 2
        assert len(noisy_layers(head)) == (layers if noisy else 0)
        assert sum(isinstance(m, nn.Linear) for m in head.modules()) == (0 if noisy else layers)
        assert (head.value is None) == (not dueling)
        if noisy:
            for layer in noisy_layers(head):
                assert layer.weight_sigma[0, 0].item() == pytest.approx(0.5 / math.sqrt(layer.in_features))
        features = torch.randn(4, 2, 6)
        with torch.no_grad():
            q = head(features)
            assert q.shape == (4, 2, 3, 11)
            if not dueling:
                torch.testing.assert_close(q, head.advantage(features).reshape(4, 2, 3, 11), rtol=0, atol=0)
    scalar = QHead(6, num_actions=3, hidden=8, atoms=1, dueling=False, noisy=noisy, sigma0=0.5, activation=nn.ReLU)
    assert scalar(torch.randn(5, 6)).shape == (5, 3, 1)
