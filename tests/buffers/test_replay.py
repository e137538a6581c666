"""The uniform replay buffer (rl_runner/buffers/replay.py): a ring that overwrites the oldest transitions."""

from __future__ import annotations

import numpy as np
import torch

from rl_runner.buffers import ReplayBuffer


def test_replay_ring_buffer_overwrites_the_oldest() -> None:
    buffer = ReplayBuffer(5, (2,), (1,), torch.device("cpu"))
    for i in range(7):
        buffer.add(
            np.full((1, 2), i),
            np.full((1, 1), i),
            np.array([i]),
            np.full((1, 2), i + 1),
            np.array([i == 3]),
            np.array([i == 4]),
        )
    assert len(buffer) == 5
    stored = buffer.stored()
    assert sorted(stored.rewards.tolist()) == [2, 3, 4, 5, 6]
    assert all(field.dtype == torch.float32 for field in stored if field is not None)  # no discounts column here
    assert stored.obs.shape == (5, 2) and stored.actions.shape == (5, 1) and stored.rewards.shape == (5,)
    assert stored.terminated[stored.rewards == 3].item() == 1.0 and stored.truncated[stored.rewards == 4].item() == 1.0
    assert stored.terminated.sum() == 1 and stored.truncated.sum() == 1
    batch = buffer.sample(64)
    torch.testing.assert_close(batch.next_obs, batch.obs + 1)
