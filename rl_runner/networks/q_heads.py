"""Q-value heads for value-based agents (Rainbow and DRQN): plain or dueling, scalar or distributional,
plain or noisy layers.

The head maps features ``[..., F]`` to ``[..., A, atoms]``: ``atoms == 1`` holds Q-values, ``atoms > 1`` the
logits of a categorical return distribution per action (C51). Leading axes are free, so the same head serves
a batch ``[B, F]`` and a sequence ``[B, T, F]``. Dueling splits it into a state value and mean-centred
advantages, per atom: ``Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from rl_runner.networks.noisy import NoisyLinear


class QHead(nn.Module):
    def __init__(
        self,
        in_features: int,
        num_actions: int,
        hidden: int,
        atoms: int,
        dueling: bool,
        noisy: bool,
        sigma0: float,
        activation: type[nn.Module],
    ) -> None:
        super().__init__()
        self.num_actions, self.atoms, self.dueling = num_actions, atoms, dueling

        def linear(inputs: int, outputs: int) -> nn.Module:
            return NoisyLinear(inputs, outputs, sigma0) if noisy else nn.Linear(inputs, outputs)

        def stream(outputs: int) -> nn.Module:
            if hidden == 0:  # the output layer straight on the features (DRQN: the recurrent core's output)
                return linear(in_features, outputs)
            return nn.Sequential(linear(in_features, hidden), activation(), linear(hidden, outputs))

        self.advantage = stream(num_actions * atoms)
        self.value = stream(atoms) if dueling else None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        shape = (*features.shape[:-1], self.num_actions, self.atoms)
        advantage = self.advantage(features).reshape(shape)  # [..., A, atoms]
        if self.value is None:
            return advantage
        value = self.value(features).unsqueeze(-2)  # [..., 1, atoms]
        return value + advantage - advantage.mean(dim=-2, keepdim=True)
