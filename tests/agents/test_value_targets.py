"""The value targets (rl_runner/agents/value_targets.py) against brute force: the C51 projection, double-Q next
actions, pick and epsilon-greedy."""

from __future__ import annotations

import math

import numpy as np
import torch

from rl_runner.agents.value_targets import categorical_projection, epsilon_greedy, next_actions, pick


def reference_projection(
    next_probs: np.ndarray, returns: np.ndarray, discounts: np.ndarray, support: np.ndarray
) -> np.ndarray:
    """The textbook C51 projection, one sample and one atom at a time (Bellemare et al., 2017, algorithm 1)."""
    atoms = len(support)
    v_min, v_max = float(support[0]), float(support[-1])
    delta = (v_max - v_min) / (atoms - 1)
    out = np.zeros_like(next_probs, dtype=np.float64)
    for b in range(next_probs.shape[0]):
        for j in range(atoms):
            target = min(max(float(returns[b]) + float(discounts[b]) * float(support[j]), v_min), v_max)
            position = (target - v_min) / delta
            lower, upper = math.floor(position), math.ceil(position)
            if lower == upper:
                out[b, lower] += next_probs[b, j]
            else:
                out[b, lower] += next_probs[b, j] * (upper - position)
                out[b, upper] += next_probs[b, j] * (position - lower)
    return out


def test_categorical_projection_matches_the_textbook_loop_on_random_batches() -> None:
    """Random probs, rewards (some beyond the support), gamma^n discounts with terminals: equal to the loop."""
    generator = torch.Generator().manual_seed(13)
    support = torch.linspace(-10.0, 10.0, 51)
    batch = 48
    probs = torch.softmax(torch.randn(batch, 51, generator=generator) * 2, dim=-1)
    returns = torch.rand(batch, generator=generator) * 30 - 15
    terminal = torch.rand(batch, generator=generator) < 0.25
    discounts = torch.where(terminal, 0.0, 0.99**3)
    discounts[:4] = torch.tensor([1.0, 0.5, 0.0, 0.99])
    projected = categorical_projection(probs, returns, discounts, support)
    expected = reference_projection(probs.double().numpy(), returns.numpy(), discounts.numpy(), support.numpy())
    assert projected.shape == probs.shape and projected.dtype == probs.dtype
    np.testing.assert_allclose(projected.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(projected.sum(-1).numpy(), np.ones(batch), rtol=1e-5)
    assert (projected >= 0).all()


def test_categorical_projection_sends_mass_beyond_the_support_to_the_end_atoms() -> None:
    """Targets above v_max put all mass on the last atom, below v_min on the first."""
    support = torch.linspace(-5.0, 5.0, 11)
    probs = torch.softmax(torch.randn(4, 11, generator=torch.Generator().manual_seed(14)), dim=-1)
    returns = torch.tensor([100.0, -100.0, 20.0, -20.0])
    discounts = torch.tensor([0.99, 0.99, 1.0, 1.0])
    projected = categorical_projection(probs, returns, discounts, support)
    expected = torch.zeros(4, 11)
    expected[[0, 2], -1] = 1.0
    expected[[1, 3], 0] = 1.0
    torch.testing.assert_close(projected, expected)
    # partly beyond: a shift by +1 maps [-5, 5] onto [-4, 6]; atom j goes to j + 1 and the top two pile onto 5
    shifted = categorical_projection(probs[:1], torch.tensor([1.0]), torch.tensor([1.0]), support)
    torch.testing.assert_close(shifted[0, 1:-1], probs[0, :-2])
    torch.testing.assert_close(shifted[0, -1], probs[0, -2:].sum())
    assert shifted[0, 0] == 0


def test_categorical_projection_does_not_split_mass_that_lands_on_an_atom() -> None:
    """A target exactly on an atom (also up to float error, delta 0.4) puts the whole mass there, no split."""
    support = torch.linspace(-10.0, 10.0, 51)
    probs = torch.softmax(torch.randn(3, 51, generator=torch.Generator().manual_seed(15)), dim=-1)
    # terminal with a return on atom 30 (value 2.0): a one-hot; and a shift of exactly 3 atoms with discount 1
    returns = torch.tensor([2.0, 3 * 0.4, -7 * 0.4])
    discounts = torch.tensor([0.0, 1.0, 1.0])
    projected = categorical_projection(probs, returns, discounts, support)
    one_hot = torch.zeros(51)
    one_hot[30] = 1.0
    torch.testing.assert_close(projected[0], one_hot)
    assert (projected[0] != 0).sum() == 1
    torch.testing.assert_close(projected[1, 3:-1], probs[1, :-4])  # atom j goes to atom j + 3, not split
    torch.testing.assert_close(projected[1, -1], probs[1, -4:].sum())
    assert (projected[1, :3] == 0).all()
    torch.testing.assert_close(projected[2, 1:-7], probs[2, 8:])
    torch.testing.assert_close(projected[2, 0], probs[2, :8].sum())
    assert (projected[2, -7:] == 0).all()


def test_categorical_projection_takes_a_leading_batch_and_time_axis() -> None:
    """[B, T, atoms] with [B, T] returns and discounts equals the flattened [B * T] projection and the loop."""
    generator = torch.Generator().manual_seed(16)
    support = torch.linspace(0.0, 20.0, 21)
    probs = torch.softmax(torch.randn(4, 6, 21, generator=generator), dim=-1)
    returns = torch.randn(4, 6, generator=generator) * 5 + 3
    discounts = torch.where(torch.rand(4, 6, generator=generator) < 0.2, 0.0, 0.97)
    projected = categorical_projection(probs, returns, discounts, support)
    assert projected.shape == (4, 6, 21)
    flat = categorical_projection(probs.reshape(24, 21), returns.reshape(24), discounts.reshape(24), support)
    torch.testing.assert_close(projected.reshape(24, 21), flat)
    expected = reference_projection(
        probs.reshape(24, 21).double().numpy(), returns.reshape(24).numpy(), discounts.reshape(24).numpy(), support
    )
    np.testing.assert_allclose(flat.numpy(), expected, atol=1e-5)
    torch.testing.assert_close(projected.sum(-1), torch.ones(4, 6))


def test_next_actions_double_picks_with_online_and_plain_with_target() -> None:
    """Double Q takes the online argmax, plain DQN the target argmax; [B, A] and [B, T, A]."""
    online = torch.tensor([[1.0, 5.0, 2.0], [3.0, 0.0, 4.0]])
    target = torch.tensor([[9.0, 0.0, 1.0], [0.0, 7.0, 1.0]])
    assert next_actions(online, target, double=True).tolist() == [1, 2]
    assert next_actions(online, target, double=False).tolist() == [0, 1]
    sequence_online, sequence_target = torch.stack([online, target], 1), torch.stack([target, online], 1)  # [2, 2, 3]
    assert next_actions(sequence_online, sequence_target, double=True).tolist() == [[1, 0], [2, 1]]
    assert next_actions(sequence_online, sequence_target, double=False).tolist() == [[0, 1], [1, 2]]


def test_pick_matches_indexing_for_scalar_distributional_and_sequence_values() -> None:
    """pick equals a loop of values[..., a(...), ...] for [B, A], [B, A, atoms], [B, T, A] and [B, T, A, atoms]."""
    generator = torch.Generator().manual_seed(24)
    b, t, a, atoms = 5, 3, 4, 7
    actions_b = torch.randint(a, (b,), generator=generator)
    actions_bt = torch.randint(a, (b, t), generator=generator)
    values = torch.randn(b, a, generator=generator)
    assert torch.equal(pick(values, actions_b), torch.stack([values[i, actions_b[i]] for i in range(b)]))
    dist = torch.randn(b, a, atoms, generator=generator)
    assert torch.equal(pick(dist, actions_b), torch.stack([dist[i, actions_b[i]] for i in range(b)]))
    assert pick(dist, actions_b).shape == (b, atoms)
    seq = torch.randn(b, t, a, generator=generator)
    expected = torch.tensor([[seq[i, j, actions_bt[i, j]].item() for j in range(t)] for i in range(b)])
    assert torch.equal(pick(seq, actions_bt), expected)
    seq_dist = torch.randn(b, t, a, atoms, generator=generator)
    expected = torch.stack([torch.stack([seq_dist[i, j, actions_bt[i, j]] for j in range(t)]) for i in range(b)])
    assert torch.equal(pick(seq_dist, actions_bt.float()), expected)  # float actions (as stored) work too


def test_epsilon_greedy_zero_is_greedy_and_one_is_uniform() -> None:
    """epsilon 0 returns the greedy actions; 1 draws uniformly (chi-square); 0.3 leaves greedy ~ 1 - 0.3 (A-1)/A."""
    torch.manual_seed(25)
    actions = 6
    greedy = torch.randint(actions, (60000,))
    assert torch.equal(epsilon_greedy(greedy, actions, 0.0), greedy)
    uniform = epsilon_greedy(torch.zeros(60000, dtype=torch.long), actions, 1.0)
    counts = torch.bincount(uniform, minlength=actions).double()
    assert counts.numel() == actions
    chi_square = ((counts - 10000) ** 2 / 10000).sum().item()
    assert chi_square < 20.5  # 5 dof, p = 0.001
    mixed = epsilon_greedy(greedy, actions, 0.3)
    assert mixed.shape == greedy.shape and mixed.dtype == greedy.dtype
    kept = (mixed == greedy).double().mean().item()
    assert abs(kept - (1 - 0.3 * (actions - 1) / actions)) < 0.01
    sequence = epsilon_greedy(torch.zeros(4, 9, dtype=torch.long), actions, 0.5)
    assert sequence.shape == (4, 9) and ((sequence >= 0) & (sequence < actions)).all()
