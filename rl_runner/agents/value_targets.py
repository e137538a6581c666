"""Pieces of value-based agents that Rainbow and DRQN share: the epsilon schedule and epsilon-greedy acting,
the (double) Q-learning target and the categorical (C51) projection. Action and atom axes are the last ones,
so every function takes a batch ``[B, ...]`` or a sequence ``[B, T, ...]`` alike."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rl_runner.clock import linear_schedule


@dataclass(frozen=True)
class EpsilonSchedule:
    """Epsilon-greedy exploration: ``start`` to ``end`` linearly over the first ``fraction`` of the run, then
    ``end``; ``evaluation`` for evaluation episodes."""

    start: float
    end: float
    fraction: float
    evaluation: float

    def at(self, progress: float) -> float:
        """Epsilon at ``progress`` (the run clock's fraction, 0 to 1)."""
        return linear_schedule(self.start, self.end, progress, self.fraction)


def epsilon_greedy(greedy: torch.Tensor, num_actions: int, epsilon: float) -> torch.Tensor:
    """``greedy`` actions, each replaced by a uniformly random one with probability ``epsilon``."""
    if epsilon <= 0.0:
        return greedy
    explore = torch.rand(greedy.shape, device=greedy.device) < epsilon
    random = torch.randint(num_actions, greedy.shape, device=greedy.device)
    return torch.where(explore, random, greedy)


def next_actions(next_q_online: torch.Tensor, next_q_target: torch.Tensor, double: bool) -> torch.Tensor:
    """The bootstrap action: picked by the online net and evaluated by the target (double Q-learning), or both
    by the target (plain DQN). Q-values ``[..., A]`` -> actions ``[...]``."""
    return (next_q_online if double else next_q_target).argmax(dim=-1)


def pick(values: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``values[..., a, ...]`` per action: ``[..., A]`` -> ``[...]``, or ``[..., A, atoms]`` -> ``[..., atoms]``."""
    index = actions.long()
    if values.dim() == index.dim() + 2:  # distributional: keep the atom axis
        index = index.unsqueeze(-1).unsqueeze(-1).expand(*index.shape, 1, values.shape[-1])
        return values.gather(-2, index).squeeze(-2)
    return values.gather(-1, index.unsqueeze(-1)).squeeze(-1)


def categorical_projection(
    next_probs: torch.Tensor, returns: torch.Tensor, discounts: torch.Tensor, support: torch.Tensor
) -> torch.Tensor:
    """The distribution of ``returns + discounts * Z`` (``Z ~ next_probs`` on ``support``) projected back onto
    ``support`` (Bellemare et al., 2017): each shifted atom's mass goes to its two neighbouring atoms in
    proportion to closeness, all of it to one atom when it lands exactly on one, and to the end atom when it
    lands beyond ``[v_min, v_max]``. ``discounts`` is ``gamma**n`` times 0 where the episode terminated.

    next_probs [..., atoms], returns [...], discounts [...] -> [..., atoms]; no loop over the batch."""
    atoms = support.shape[-1]
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / (atoms - 1)
    shifted = (returns.unsqueeze(-1) + discounts.unsqueeze(-1) * support).clamp(v_min, v_max)  # [..., atoms]
    position = (shifted - v_min) / delta  # in [0, atoms - 1]
    rounded = position.round()  # float error must not split the mass of a return that lands on an atom
    position = torch.where((position - rounded).abs() < 1e-4, rounded, position)
    lower, upper = position.floor(), position.ceil()
    on_atom = (lower == upper).to(next_probs.dtype)
    projected = torch.zeros_like(next_probs)
    projected.scatter_add_(-1, lower.long(), next_probs * (upper - position + on_atom))
    projected.scatter_add_(-1, upper.long(), next_probs * (position - lower))
    return projected
