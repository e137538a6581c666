"""Rainbow's parts against brute-force references: sum tree, prioritized replay, n-step windows, noisy layers,
Q heads and the value targets (double Q, pick, C51 projection)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rl_runner.agents.value_targets import categorical_projection, epsilon_greedy, next_actions, pick
from rl_runner.buffers import NStepAccumulator, NStepTransitions, PrioritizedReplay, ReplayBuffer, SumTree
from rl_runner.networks.noisy import NoisyLinear, mean_sigma, noisy_layers, reset_noise, set_noise
from rl_runner.networks.q_heads import QHead

CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------------------------
# helpers and brute-force references


def reference_find(priorities: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The leaf whose cumulative range [start, start + p) holds each value: searchsorted on the cumulative sums."""
    return np.searchsorted(np.cumsum(priorities), values, side="right")


def make_per(capacity: int, alpha: float, epsilon: float = 1e-6, seed: int = 0, obs_dim: int = 2) -> PrioritizedReplay:
    return PrioritizedReplay(ReplayBuffer(capacity, (obs_dim,), (), CPU), alpha=alpha, epsilon=epsilon, seed=seed)


def add_ids(per: PrioritizedReplay, ids: np.ndarray, obs_dim: int = 2) -> np.ndarray:
    """Add one transition per id; the id is its reward and the first coordinate of obs, so a slot's content is known."""
    ids = np.asarray(ids, dtype=np.float64)
    obs = np.repeat(ids[:, None], obs_dim, axis=1)
    zeros = np.zeros(len(ids))
    return per.add(obs=obs, actions=ids, rewards=ids, next_obs=obs + 1, terminated=zeros, truncated=zeros)


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


def reference_nstep(
    obs: list[np.ndarray],
    actions: list[int],
    rewards: list[float],
    final_obs: np.ndarray,
    ending: str,
    n: int,
    gamma: float,
    start: int,
) -> list[tuple]:
    """All n-step transitions of one episode as (emitted at global step, obs, action, return, next_obs, terminated,
    discount); ``ending`` is "terminated", "truncated" or "running" (still going when the data stops)."""
    length = len(rewards)
    following = list(obs[1:]) + [final_obs]
    out = []
    for t in range(length):
        k = min(n, length - t)
        if k < n and ending == "running":
            break
        ret = sum(gamma**i * rewards[t + i] for i in range(k))
        emitted = start + min(t + n - 1, length - 1)  # a full window leaves when full, a short one at the end
        terminal = ending == "terminated" and t + k == length
        out.append((emitted, obs[t], actions[t], ret, following[t + k - 1], terminal, gamma**k))
    return out


def rows(out: NStepTransitions | None) -> list[tuple]:
    """The emitted transitions as (obs, action, return, next_obs, terminated, discount) tuples, in order."""
    if out is None:
        return []
    return [
        (out.obs[i], out.actions[i], out.returns[i], out.next_obs[i], bool(out.terminated[i]), out.discounts[i])
        for i in range(len(out.returns))
    ]


def assert_same_rows(actual: list[tuple], expected: list[tuple]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[2] == pytest.approx(want[2], rel=1e-12, abs=1e-12)
        np.testing.assert_array_equal(got[3], want[3])
        assert got[4] == want[4]
        assert got[5] == pytest.approx(want[5], rel=1e-12)


def effective_weights(layer: NoisyLinear) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias the layer applies right now, read off its outputs on the unit vectors and on zero."""
    with torch.no_grad():
        bias = layer(torch.zeros(1, layer.in_features))[0]
        weight = (layer(torch.eye(layer.in_features)) - bias).T
    return weight, bias


# ---------------------------------------------------------------------------------------------------------------
# SumTree


@pytest.mark.parametrize("capacity", [1, 2, 7, 16, 100])
def test_sum_tree_total_min_and_leaves_match_brute_force_after_random_sets(capacity: int) -> None:
    """After many batched sets (repeated leaves, zeros, wide magnitudes) total, min and leaves equal a numpy loop."""
    rng = np.random.default_rng(capacity)
    tree, reference = SumTree(capacity), np.zeros(capacity)
    assert tree.total == 0.0 and tree.min == math.inf
    for _ in range(300):
        leaves = rng.integers(0, capacity, size=rng.integers(1, 2 * capacity + 2))
        priorities = 10.0 ** rng.uniform(-3, 3, size=len(leaves))
        priorities[rng.random(len(leaves)) < 0.2] = 0.0
        tree.set(leaves, priorities)
        for leaf, priority in zip(leaves, priorities):  # a leaf given twice keeps its last value
            reference[leaf] = priority
        assert np.isclose(tree.total, reference.sum(), rtol=1e-12, atol=0.0)
        positive = reference[reference > 0]
        assert tree.min == (positive.min() if positive.size else math.inf)
        np.testing.assert_array_equal(tree.get(np.arange(capacity)), reference)


def test_sum_tree_find_matches_searchsorted_on_boundaries_and_skips_zero_leaves() -> None:
    """find agrees with searchsorted exactly, boundaries included, and never returns a zero-priority leaf."""
    rng = np.random.default_rng(1)
    capacity = 37  # not a power of two: 27 padding leaves
    priorities = rng.integers(1, 40, size=capacity) / 8.0  # dyadic: every sum is exact, boundaries are exact
    priorities[rng.choice(capacity, size=12, replace=False)] = 0.0
    priorities[[0, -1]] = 0.0  # zero leaves at both ends and (with high probability) in runs inside
    tree = SumTree(capacity)
    tree.set(np.arange(capacity), priorities)
    cumulative = np.cumsum(priorities)
    boundaries = np.concatenate([[0.0], cumulative[cumulative < tree.total]])
    values = np.concatenate([boundaries, rng.uniform(0.0, tree.total, size=2000)])
    found = tree.find(values)
    np.testing.assert_array_equal(found, reference_find(priorities, values))
    assert np.all(priorities[found] > 0)
    # at (or rounded past) the total, the draw falls back onto the last leaf with mass, never a padding/zero leaf
    last_positive = np.flatnonzero(priorities)[-1]
    np.testing.assert_array_equal(tree.find(np.array([tree.total, tree.total * (1 + 1e-15)])), [last_positive] * 2)


def test_sum_tree_find_matches_searchsorted_on_random_float_priorities() -> None:
    """With arbitrary float priorities find agrees with searchsorted away from rounding distance of a boundary."""
    rng = np.random.default_rng(2)
    for capacity in (3, 50, 129):
        priorities = rng.exponential(size=capacity) * (rng.random(capacity) < 0.7)
        priorities[0] = 0.5  # at least one positive
        tree = SumTree(capacity)
        tree.set(np.arange(capacity), np.ones(capacity))  # stale values, all overwritten below
        tree.set(np.arange(capacity), priorities)
        values = rng.uniform(0.0, tree.total, size=5000)
        cumulative = np.cumsum(priorities)
        gaps = np.abs(values[:, None] - cumulative[None, :]).min(axis=1)
        values = values[gaps > 1e-9 * tree.total]
        found = tree.find(values)
        np.testing.assert_array_equal(found, reference_find(priorities, values))
        assert np.all(priorities[found] > 0)


def test_sum_tree_with_one_leaf() -> None:
    """Capacity 1: the root is the leaf; total, min and find work and out-of-range leaves are refused."""
    tree = SumTree(1)
    tree.set(np.array([0]), np.array([2.5]))
    assert tree.total == 2.5 and tree.min == 2.5
    np.testing.assert_array_equal(tree.find(np.array([0.0, 1.0, 2.4999, 2.5])), [0, 0, 0, 0])
    tree.set(np.array([0, 0]), np.array([4.0, 3.0]))
    assert tree.total == 3.0 and tree.min == 3.0
    with pytest.raises(IndexError):
        tree.set(np.array([1]), np.array([1.0]))
    with pytest.raises(ValueError):
        SumTree(0)


def test_sum_tree_refuses_negative_or_nonfinite_priorities() -> None:
    """Negative, nan and inf priorities raise instead of corrupting the sums."""
    tree = SumTree(4)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            tree.set(np.array([1]), np.array([bad]))
    assert tree.total == 0.0


def test_sum_tree_state_dict_round_trip() -> None:
    """A saved tree loads into a fresh one with identical sums, mins and draws; another capacity is refused."""
    rng = np.random.default_rng(3)
    tree = SumTree(21)
    priorities = rng.exponential(size=21) * (rng.random(21) < 0.8)
    tree.set(np.arange(21), priorities)
    state = tree.state_dict()
    tree.set(np.array([4]), np.array([100.0]))  # the saved state is a snapshot
    loaded = SumTree(21)
    loaded.set(np.arange(21), np.ones(21))  # stale content must be wiped
    loaded.load_state_dict(state)
    np.testing.assert_array_equal(loaded.get(np.arange(21)), priorities)
    fresh = SumTree(21)
    fresh.set(np.arange(21), priorities)
    np.testing.assert_array_equal(loaded.sums, fresh.sums)
    np.testing.assert_array_equal(loaded.mins, fresh.mins)
    values = rng.uniform(0, loaded.total, size=500)
    np.testing.assert_array_equal(loaded.find(values), fresh.find(values))
    with pytest.raises(ValueError):
        SumTree(20).load_state_dict(state)


# ---------------------------------------------------------------------------------------------------------------
# PrioritizedReplay


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


# ---------------------------------------------------------------------------------------------------------------
# NStepAccumulator

N, GAMMA = 3, 0.9
REWARDS = [1.0, 2.0, 4.0, 8.0, 16.0]


def run_single_episode(ending: str) -> list[list[tuple]]:
    """Steps t = 0..4 of one env with obs [t, -t], action t; the last step ends by ``ending``; output per step."""
    acc = NStepAccumulator(N, GAMMA, num_envs=1)
    outputs = []
    for t, reward in enumerate(REWARDS):
        last = t == len(REWARDS) - 1
        out = acc.add(
            obs=np.array([[t, -t]], dtype=np.float32),
            actions=np.array([t]),
            rewards=np.array([reward]),
            next_obs=np.array([[t + 1, -(t + 1)]], dtype=np.float32),
            terminated=np.array([last and ending == "terminated"]),
            truncated=np.array([last and ending == "truncated"]),
        )
        outputs.append(rows(out))
    assert all(len(window) == 0 for window in acc.windows)
    return outputs


@pytest.mark.parametrize("ending", ["terminated", "truncated"])
def test_nstep_episode_end_emits_exact_returns_discounts_and_flags(ending: str) -> None:
    """n=3, gamma=0.9, 5 steps: hand-computed returns, gamma^k, next_obs; terminal only for a true termination."""
    outputs = run_single_episode(ending)
    assert [len(o) for o in outputs] == [0, 0, 1, 1, 3]
    emitted = [row for o in outputs for row in o]
    np.testing.assert_allclose([r[2] for r in emitted], [6.04, 12.08, 24.16, 22.4, 16.0], rtol=1e-12)
    np.testing.assert_allclose([r[5] for r in emitted], [0.729, 0.729, 0.729, 0.81, 0.9], rtol=1e-12)
    np.testing.assert_array_equal([r[0] for r in emitted], [[t, -t] for t in range(5)])
    np.testing.assert_array_equal([r[1] for r in emitted], np.arange(5))
    np.testing.assert_array_equal([r[3] for r in emitted], [[3, -3], [4, -4], [5, -5], [5, -5], [5, -5]])
    terminal = ending == "terminated"
    assert [r[4] for r in emitted] == [False, False, terminal, terminal, terminal]


def test_nstep_parallel_envs_with_different_episode_lengths_never_mix() -> None:
    """Two envs with interleaved episodes of different lengths and endings equal a per-episode brute force."""
    n, gamma = 3, 0.8
    rng = np.random.default_rng(10)
    schedules = {  # per env: (length, ending) of consecutive episodes, 9 steps each
        0: [(2, "terminated"), (1, "truncated"), (4, "truncated"), (2, "running")],
        1: [(5, "terminated"), (4, "running")],
    }
    steps: dict[int, list[tuple]] = {0: [], 1: []}  # per env and global step: obs, action, reward, next, term, trunc
    expected: dict[int, list[tuple]] = {0: [], 1: []}
    for env, episodes in schedules.items():
        for episode, (length, ending) in enumerate(episodes):
            obs = [np.array([env, episode, t], dtype=np.float32) for t in range(length + 1)]
            actions = [int(rng.integers(0, 5)) for _ in range(length)]
            rewards = [float(rng.normal()) for _ in range(length)]
            start = len(steps[env])
            for t in range(length):
                last = t == length - 1
                terminated, truncated = last and ending == "terminated", last and ending == "truncated"
                steps[env].append((obs[t], actions[t], rewards[t], obs[t + 1], terminated, truncated))
            expected[env] += reference_nstep(obs[:-1], actions, rewards, obs[-1], ending, n, gamma, start)
    acc = NStepAccumulator(n, gamma, num_envs=2)
    got: dict[int, list[tuple]] = {0: [], 1: []}
    for step in range(9):
        columns = list(zip(steps[0][step], steps[1][step]))
        out = acc.add(*(np.stack([np.asarray(c) for c in column]) for column in columns))
        for row in rows(out):
            assert row[0][0] == row[3][0] and row[0][1] == row[3][1]  # same env, same episode
            got[int(row[0][0])].append((step, *row))
    for env in (0, 1):
        assert [g[0] for g in got[env]] == [e[0] for e in expected[env]]  # emitted at the right step
        assert_same_rows([g[1:] for g in got[env]], [e[1:] for e in expected[env]])
    assert [len(w) for w in acc.windows] == [2, 2]  # the running episodes wait: n - 1 steps each


def test_nstep_with_n_one_gives_plain_one_step_transitions() -> None:
    """n=1: every step of every env leaves at once as (obs, action, r, next_obs, terminated, gamma)."""
    rng = np.random.default_rng(11)
    acc = NStepAccumulator(1, 0.99, num_envs=3)
    for _ in range(20):
        obs, next_obs = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
        actions, rewards = rng.integers(0, 4, size=3), rng.normal(size=3)
        terminated, truncated = rng.random(3) < 0.2, rng.random(3) < 0.2
        out = acc.add(obs, actions, rewards, next_obs, terminated, truncated)
        assert out is not None
        np.testing.assert_array_equal(out.obs, obs)
        np.testing.assert_array_equal(out.actions, actions)
        np.testing.assert_array_equal(out.returns, rewards)
        np.testing.assert_array_equal(out.next_obs, next_obs)
        np.testing.assert_array_equal(out.terminated, terminated)
        np.testing.assert_allclose(out.discounts, [0.99] * 3, rtol=1e-15)
    assert all(len(w) == 0 for w in acc.windows)


def test_nstep_state_dict_round_trip_mid_episode() -> None:
    """Windows saved mid-episode (a snapshot) and loaded elsewhere emit exactly what the original emits."""
    rng = np.random.default_rng(12)
    data = [
        (
            rng.normal(size=(2, 3)),
            rng.integers(0, 4, size=2),
            rng.normal(size=2),
            rng.normal(size=(2, 3)),
            np.array([step == 6, False]),
            np.array([False, step == 7]),
        )
        for step in range(12)
    ]
    acc = NStepAccumulator(4, 0.95, num_envs=2)
    for step in range(5):
        acc.add(*data[step])
    assert [len(w) for w in acc.windows] == [3, 3]
    buffer = io.BytesIO()
    torch.save(acc.state_dict(), buffer)
    in_memory = acc.state_dict()  # must not follow the windows as they move on
    original = [rows(acc.add(*data[step])) for step in range(5, 12)]
    buffer.seek(0)
    for state in (torch.load(buffer, weights_only=False), in_memory):
        loaded = NStepAccumulator(4, 0.95, num_envs=2)
        loaded.load_state_dict(state)
        resumed = [rows(loaded.add(*data[step])) for step in range(5, 12)]
        for a, b in zip(original, resumed):
            assert_same_rows(b, a)
    assert sum(len(o) for o in original) > 0
    with pytest.raises(ValueError):
        NStepAccumulator(3, 0.95, num_envs=2).load_state_dict(acc.state_dict())


# ---------------------------------------------------------------------------------------------------------------
# categorical projection


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


# ---------------------------------------------------------------------------------------------------------------
# NoisyLinear


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


# ---------------------------------------------------------------------------------------------------------------
# QHead


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


# ---------------------------------------------------------------------------------------------------------------
# value targets


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
