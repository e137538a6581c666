"""Prioritized replay (rl_runner/buffers/prioritized.py) against brute force: sampling frequencies, importance
weights, priorities of new and updated transitions, stratified draws, ring wrap and state dicts."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from rl_runner.buffers import PrioritizedReplay, ReplayBuffer

CPU = torch.device("cpu")


def make_per(capacity: int, alpha: float, epsilon: float = 1e-6, seed: int = 0, obs_dim: int = 2) -> PrioritizedReplay:
    return PrioritizedReplay(ReplayBuffer(capacity, (obs_dim,), (), CPU), alpha=alpha, epsilon=epsilon, seed=seed)


def add_ids(per: PrioritizedReplay, ids: np.ndarray, obs_dim: int = 2) -> np.ndarray:
    """Add one transition per id; the id is its reward and the first coordinate of obs, so a slot's content is known."""
    ids = np.asarray(ids, dtype=np.float64)
    obs = np.repeat(ids[:, None], obs_dim, axis=1)
    zeros = np.zeros(len(ids))
    return per.add(obs=obs, actions=ids, rewards=ids, next_obs=obs + 1, terminated=zeros, truncated=zeros)


def test_prioritized_sampling_frequencies_follow_priorities_to_the_alpha() -> None:
    """20k stratified draws over 10 slots match P(i) = p_i^alpha / total (chi-square), a zero slot is never drawn."""
    alpha = 0.6
    per = make_per(10, alpha=alpha, epsilon=0.0, seed=4)
    slots = add_ids(per, np.arange(10))
    errors = torch.tensor([0.5, 2.0, 0.0, 1.0, 3.0, 0.1, 1.5, 0.7, 4.0, 0.3])  # slot 2 has priority 0
    per.update_priorities(slots, errors)
    expected = errors.double().numpy() ** alpha / (errors.double().numpy() ** alpha).sum()
    counts = np.zeros(10)
    for _ in range(200):
        batch, drawn, weights = per.sample(100, beta=0.4)
        np.testing.assert_array_equal(batch.rewards.numpy(), drawn)  # the batch is the content of the drawn slots
        assert torch.isfinite(weights).all() and weights.max() <= 1.0 + 1e-6
        counts += np.bincount(drawn, minlength=10)
    assert counts[2] == 0
    positive = expected > 0
    chi_square = (((counts - 20000 * expected) ** 2)[positive] / (20000 * expected[positive])).sum()
    assert chi_square < 26.1, (chi_square, counts, 20000 * expected)  # chi-square 8 dof, p = 0.001


def test_importance_weights_on_a_hand_computed_case() -> None:
    """w_i = (N P(i))^-beta / max_j (N P(j))^-beta: with P = [.1, .2, .3, .4], beta = 1/2, w = sqrt(.1 / P)."""
    per = make_per(8, alpha=1.0, epsilon=0.0)  # capacity 8, 4 stored: N is the number stored
    slots = add_ids(per, np.arange(4))
    per.update_priorities(slots, torch.tensor([1.0, -2.0, 3.0, -4.0]))
    table = np.array([1.0, math.sqrt(0.5), math.sqrt(1.0 / 3.0), 0.5])
    seen = set()
    for _ in range(5):
        _, drawn, weights = per.sample(16, beta=0.5)
        np.testing.assert_allclose(weights.numpy(), table[drawn], rtol=1e-6)
        assert weights.dtype == torch.float32
        seen.update(drawn.tolist())
    assert seen == {0, 1, 2, 3}
    for _ in range(20):  # normalised by the max over all stored slots, not over the batch
        _, drawn, weights = per.sample(1, beta=0.5)
        np.testing.assert_allclose(weights.numpy(), table[drawn], rtol=1e-6)


def test_importance_weights_match_the_formula_for_general_alpha_and_beta() -> None:
    """The weights equal (N P(i))^-beta / max_j (N P(j))^-beta computed from the errors in numpy."""
    alpha, beta, epsilon = 0.7, 0.4, 0.01
    per = make_per(12, alpha=alpha, epsilon=epsilon, seed=5)
    slots = add_ids(per, np.arange(9))
    errors = np.array([0.3, 1.2, 0.0, 5.0, 2.2, 0.05, 0.8, 3.1, 1.0])
    per.update_priorities(slots, torch.tensor(errors, dtype=torch.float32))
    priorities = (np.abs(errors.astype(np.float32)).astype(np.float64) + epsilon) ** alpha
    probabilities = priorities / priorities.sum()
    raw = (9 * probabilities) ** -beta
    _, drawn, weights = per.sample(64, beta=beta)
    np.testing.assert_allclose(weights.numpy(), raw[drawn] / raw.max(), rtol=1e-6)


def test_new_transitions_get_the_current_max_priority_and_updates_store_error_plus_eps_to_alpha() -> None:
    """New slots get max priority (1 at first, then the largest given); updates store (|e| + eps)^alpha."""
    alpha, epsilon = 0.5, 0.01
    per = make_per(10, alpha=alpha, epsilon=epsilon)
    first = add_ids(per, np.arange(3))
    np.testing.assert_array_equal(per.tree.get(first), [1.0, 1.0, 1.0])
    errors = torch.tensor([-8.0, 0.2, 0.0])
    per.update_priorities(first, errors)
    expected = (np.abs(errors.double().numpy()) + epsilon) ** alpha
    np.testing.assert_allclose(per.tree.get(first), expected, rtol=1e-12)
    assert per.max_priority == pytest.approx(expected.max(), rel=1e-12)
    second = add_ids(per, np.arange(3, 5))
    np.testing.assert_allclose(per.tree.get(second), [expected.max()] * 2, rtol=1e-12)
    per.update_priorities(second, torch.tensor([0.1, 0.1]))  # lower than the max: the max stays
    third = add_ids(per, np.arange(5, 6))
    np.testing.assert_allclose(per.tree.get(third), [expected.max()], rtol=1e-12)
    assert per.tree.total == pytest.approx(per.tree.get(np.arange(6)).sum(), rel=1e-12)


def test_sampling_is_stratified_one_draw_per_equal_mass_segment() -> None:
    """Draw k of a batch of B lies in the k-th of B equal mass segments; equal priorities with B = N hit every slot."""
    per = make_per(10, alpha=1.0, epsilon=0.0, seed=6)
    slots = add_ids(per, np.arange(10))
    per.update_priorities(slots, torch.tensor([1.0, 7.0, 0.5, 3.0, 2.0, 0.25, 4.0, 1.0, 6.0, 2.5]))
    leaves = per.tree.get(np.arange(10))
    ends = np.cumsum(leaves)
    starts = ends - leaves
    total = per.tree.total
    for batch_size in (1, 4, 8, 13):
        segment = total / batch_size
        for _ in range(50):
            _, drawn, _ = per.sample(batch_size, beta=0.5)
            k = np.arange(batch_size)
            # the drawn leaf's cumulative range [start, end) meets the k-th segment [k s, (k + 1) s)
            assert np.all(starts[drawn] < (k + 1) * segment + 1e-9), drawn
            assert np.all(ends[drawn] > k * segment - 1e-9), drawn
            assert np.all(np.diff(drawn) >= 0)
    equal = make_per(10, alpha=1.0, epsilon=0.0, seed=7)
    add_ids(equal, np.arange(10))
    for _ in range(50):  # an i.i.d. sampler would repeat a slot with probability 1 - 10!/10^10 > 0.999
        _, drawn, weights = equal.sample(10, beta=1.0)
        np.testing.assert_array_equal(drawn, np.arange(10))
        np.testing.assert_allclose(weights.numpy(), np.ones(10))


def test_ring_wrap_around_keeps_slots_and_priorities_aligned() -> None:
    """After the storage wraps, each slot's priority belongs to the transition that now lives in it."""
    per = make_per(5, alpha=1.0, epsilon=0.0, seed=8)
    np.testing.assert_array_equal(add_ids(per, [0, 1, 2]), [0, 1, 2])
    per.update_priorities(np.array([0, 1, 2]), torch.tensor([9.0, 9.0, 9.0]))  # old priorities, soon overwritten
    np.testing.assert_array_equal(add_ids(per, [3, 4, 5, 6]), [3, 4, 0, 1])
    content = np.array([5, 6, 2, 3, 4])  # id stored in each slot
    np.testing.assert_array_equal(per.tree.get(np.arange(5)), [9.0, 9.0, 9.0, 9.0, 9.0])  # new ones at max (9)
    # priorities as a function of content, set through sampled slots (duplicates included)
    for _ in range(30):
        batch, drawn, _ = per.sample(4, beta=0.5)
        np.testing.assert_array_equal(batch.rewards.numpy(), content[drawn])
        np.testing.assert_array_equal(batch.obs[:, 0].numpy(), content[drawn])
        per.update_priorities(drawn, batch.rewards + 1.0)
    seen = np.flatnonzero(per.tree.get(np.arange(5)) != 9.0)
    np.testing.assert_array_equal(per.tree.get(seen), content[seen] + 1.0)
    np.testing.assert_array_equal(add_ids(per, [7, 8]), [2, 3])
    content[[2, 3]] = [7, 8]
    np.testing.assert_array_equal(per.tree.get(np.array([2, 3])), [per.max_priority] * 2)
    counts = np.zeros(5)
    for _ in range(100):
        batch, drawn, _ = per.sample(5, beta=0.5)
        np.testing.assert_array_equal(batch.rewards.numpy(), content[drawn])
        counts += np.bincount(drawn, minlength=5)
    expected = per.tree.get(np.arange(5)) / per.tree.total * 500
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 2), (counts, expected)


def test_prioritized_state_dict_round_trip_is_exact() -> None:
    """A replay loaded from a (serialised) state dict draws exactly the batches, slots and weights of the original."""
    per = make_per(16, alpha=0.6, epsilon=1e-3, seed=9)
    rng = np.random.default_rng(9)
    for start in range(0, 22, 4):  # 24 transitions into 16 slots: wrapped
        slots = add_ids(per, np.arange(start, start + 4))
        per.update_priorities(slots, torch.tensor(rng.exponential(size=4)))
    per.sample(8, beta=0.4)  # move the RNG off its seed
    buffer = io.BytesIO()
    torch.save(per.state_dict(), buffer)
    originals = [per.sample(8, beta=0.4) for _ in range(5)]
    buffer.seek(0)
    loaded = make_per(16, alpha=0.6, epsilon=1e-3, seed=123)
    loaded.load_state_dict(torch.load(buffer, weights_only=False))
    assert loaded.max_priority == per.max_priority and len(loaded) == len(per) == 16
    resumed = [loaded.sample(8, beta=0.4) for _ in range(5)]
    for (batch, slots, weights), (batch2, slots2, weights2) in zip(originals, resumed):
        np.testing.assert_array_equal(slots, slots2)
        assert torch.equal(weights, weights2)
        for field, field2 in zip(batch, batch2):
            assert (field is None and field2 is None) or torch.equal(field, field2)
    np.testing.assert_array_equal(add_ids(per, [100]), add_ids(loaded, [100]))
    np.testing.assert_array_equal(per.tree.get(np.arange(16)), loaded.tree.get(np.arange(16)))
