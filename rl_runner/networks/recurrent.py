"""The recurrent core of DRQN and its Q-network: MLP torso -> LSTM / GRU / feed-forward layer -> Q head.

The recurrent state travels as one flat tensor ``[B, state_size]`` (an LSTM's ``h`` and ``c`` side by side,
a GRU's ``h``, nothing for ``none``), so that a replay stores it as a few more columns of a step, a reset is
one masked fill, and the agent never has to know which cell it runs.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

from rl_runner.choices import RecurrentCell
from rl_runner.networks.mlp import ACTIVATIONS, hidden_layers
from rl_runner.networks.q_heads import QHead
from rl_runner.schemas import MLPConfig


class RecurrentCore(nn.Module):
    """Features ``[B, T, F]`` and a state ``[B, S]`` -> outputs ``[B, T, H]`` and the state after step T.

    ``cell=none`` is a Linear + activation applied to each step on its own: the same width and depth in the
    network, no memory (S = 0). It is the memoryless baseline, not a degenerate RNN."""

    def __init__(self, cell: RecurrentCell, in_features: int, hidden: int, activation: type[nn.Module]) -> None:
        super().__init__()
        self.cell, self.hidden = RecurrentCell(cell), hidden
        if self.cell is RecurrentCell.lstm:
            self.layer: nn.Module = nn.LSTM(in_features, hidden, batch_first=True)
        elif self.cell is RecurrentCell.gru:
            self.layer = nn.GRU(in_features, hidden, batch_first=True)
        else:
            self.layer = nn.Sequential(nn.Linear(in_features, hidden), activation())
        self.state_size = {RecurrentCell.lstm: 2 * hidden, RecurrentCell.gru: hidden, RecurrentCell.none: 0}[self.cell]

    def initial_state(self, batch: int, device: torch.device) -> torch.Tensor:
        return torch.zeros(batch, self.state_size, device=device)

    def _unflatten(self, state: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        layered = state.unsqueeze(0)  # [1, B, S]: torch's recurrent layers want a layer axis
        if self.cell is RecurrentCell.lstm:
            h, c = layered.split(self.hidden, dim=-1)
            return h.contiguous(), c.contiguous()
        return layered.contiguous()

    def _flatten(self, state: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        if self.cell is RecurrentCell.lstm:
            return torch.cat(state, dim=-1)[0]
        return state[0]

    def forward(self, features: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cell is RecurrentCell.none:
            return self.layer(features), state
        outputs, final = self.layer(features, self._unflatten(state))
        return outputs, self._flatten(final)

    def advance(self, features: torch.Tensor, lengths: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The state after the first ``lengths[b]`` steps of each sequence (``features`` [B, T, F], padded at
        the end; ``lengths`` on the CPU, 0 keeps a row's state as it is). One packed call for the batch."""
        if self.cell is RecurrentCell.none or not bool((lengths > 0).any()):
            return state
        rows = torch.nonzero(lengths > 0).squeeze(-1)
        packed = pack_padded_sequence(
            features[rows.to(features.device)], lengths[rows], batch_first=True, enforce_sorted=False
        )
        _, final = self.layer(packed, self._unflatten(state[rows.to(state.device)]))
        advanced = state.clone()
        advanced[rows.to(state.device)] = self._flatten(final)
        return advanced


class RecurrentQNetwork(nn.Module):
    """Observations ``[B, T, O]`` and a state ``[B, S]`` -> Q-values ``[B, T, A]`` and the next state.

    The ``net`` MLP torso (``net.depth`` hidden layers) feeds the recurrent core, whose output goes straight
    to the Q head's output layer (plain or dueling), as in DRQN (Hausknecht & Stone, 2015): the memory sits
    just before the output."""

    def __init__(
        self, obs_dim: int, num_actions: int, spec: MLPConfig, cell: RecurrentCell, rnn_hidden: int, dueling: bool
    ) -> None:
        super().__init__()
        activation = ACTIVATIONS[spec.activation]
        self.torso = nn.Sequential(*hidden_layers(obs_dim, spec))
        width = spec.hidden if spec.depth > 0 else obs_dim
        self.core = RecurrentCore(cell, width, rnn_hidden, activation)
        self.head = QHead(rnn_hidden, num_actions, 0, 1, dueling, False, 0.0, activation)

    @property
    def state_size(self) -> int:
        return self.core.state_size

    def forward(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, state = self.core(self.torso(obs), state)
        return self.head(features).squeeze(-1), state

    def advance(self, obs: torch.Tensor, lengths: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The state after each row's first ``lengths[b]`` observations (a burn-in); no Q-values."""
        return self.core.advance(self.torso(obs), lengths, state)
