"""Episode-sequence replay for recurrent agents: steps stored per episode, sampled as padded sequences.

Each parallel env owns an equal region of one ``[capacity, width]`` device tensor and writes its steps there
in order, as a ring. An episode's steps are therefore contiguous (modulo the ring) and episodes of different
envs never interleave. The open episode of each env is not sampled until it ends or is cut; an episode is
cut into segments of at most ``max_segment`` steps, and a cut segment's last step bootstraps from its
``next_obs`` like a time-limit truncation. A segment disappears once its env's ring overwrites its first step.

Two sampling modes:

- ``episodes``: whole segments (episodes cut at ``sequence_length``), uniformly, each from a zero state:
  the seed's way, and DRQN's "bootstrapped sequential updates".
- ``windows``: a learning window of ``sequence_length`` steps placed uniformly over the window positions
  of all segments, preceded by up to ``burn_in`` earlier steps of the same segment that only warm the
  recurrent state (R2D2, Kapturowski et al. 2019). At a segment's start the burn-in is shorter (a
  segment starting an episode starts from a zero state, which is the true one). With stored states, the
  state the agent had when it acted on the first of these steps comes with the batch.

A batch is one gather of ``[B, burn-in + window]`` rows. Windows are padded at the end to the longest in the
batch and ``mask`` marks the real steps; a padded step repeats its sequence's last real step so that every
value stays finite.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from rl_runner.buffers.replay import RowLayout
from rl_runner.choices import SequenceReplay


class SequenceBatch(NamedTuple):
    obs: torch.Tensor  # [B, T, O] the learning window
    actions: torch.Tensor  # [B, T]
    rewards: torch.Tensor  # [B, T]
    next_obs: torch.Tensor  # [B, T, O]
    terminated: torch.Tensor  # [B, T] 1.0 where the episode ended in a terminal state
    mask: torch.Tensor  # [B, T] 1.0 on real steps, 0.0 on padding
    burn_in_obs: torch.Tensor  # [B, K, O] the steps before the window (K = 0 without burn-in), padded at the end
    burn_in_lengths: torch.Tensor  # [B] int64 on the CPU: real burn-in steps of each row
    start_state: torch.Tensor | None  # [B, S] the stored acting state before the first burn-in/window step


class EpisodeReplay:
    def __init__(
        self,
        capacity: int,
        obs_size: int,
        state_size: int,
        num_envs: int,
        device: torch.device,
        mode: SequenceReplay,
        sequence_length: int,
        burn_in: int,
        seed: int,
    ) -> None:
        self.mode = SequenceReplay(mode)
        self.num_envs, self.region = num_envs, capacity // num_envs
        self.sequence_length, self.burn_in = sequence_length, burn_in
        # an episodes-mode segment is a whole sampled sequence; windows cut only so that an open episode
        # never eats into its own region while the last closed one is still there to sample
        self.max_segment = sequence_length if self.mode is SequenceReplay.episodes else self.region // 2
        longest = sequence_length if self.mode is SequenceReplay.episodes else sequence_length + burn_in
        if self.region < 2 * longest:
            raise ValueError(
                f"agent.buffer_size={capacity} holds {self.region} steps per env; {self.mode.value} replay needs at "
                f"least {2 * longest} (twice agent.sequence_length{' + agent.burn_in' if burn_in else ''})"
            )
        self.device = device
        self.layout = RowLayout(
            {"obs": (obs_size,), "actions": (), "rewards": (), "next_obs": (obs_size,), "terminated": ()}
            | ({"state": (state_size,)} if state_size else {})
        )
        self.storage = torch.zeros((num_envs * self.region, self.layout.width), dtype=torch.float32, device=device)
        self.written = np.zeros(num_envs, dtype=np.int64)  # steps each env has written (ring position: % region)
        self.open_start = np.zeros(num_envs, dtype=np.int64)  # the first step of each env's open segment
        self.segments = np.zeros((0, 3), dtype=np.int64)  # closed segments: (env, first step, length)
        self.rng = np.random.default_rng(seed)

    @property
    def capacity(self) -> int:
        return self.num_envs * self.region

    def __len__(self) -> int:
        """Steps held, open episodes included."""
        return int(np.minimum(self.written, self.region).sum())

    def sampleable(self) -> int:
        """Closed segments that can be sampled."""
        self._drop_overwritten()
        return len(self.segments)

    # ---------------------------------------------------------------- writing
    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        states: torch.Tensor | None = None,
    ) -> None:
        """One step of every env (leading axis = env); ``states`` [N, S] are the acting states the actions
        were chosen from (required when the buffer stores states)."""
        values = [obs, actions, rewards, next_obs, terminated]
        rows = torch.from_numpy(self.layout.pack(values, self.num_envs)).to(self.device)
        if "state" in self.layout.shapes:
            rows = torch.cat([rows, states.to(self.device, torch.float32)], dim=1)
        slots = np.arange(self.num_envs) * self.region + self.written % self.region
        self.storage[torch.from_numpy(slots).to(self.device)] = rows
        self.written += 1
        full = self.written - self.open_start >= self.max_segment
        self.cut(np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool) | full)

    def cut(self, envs: np.ndarray) -> None:
        """Close the open segment of every env where ``envs`` is true (an episode end, or a reset the replay
        did not see, e.g. new episodes after a resume); empty segments are skipped."""
        lengths = self.written - self.open_start
        closing = np.flatnonzero(np.asarray(envs, dtype=bool) & (lengths > 0))
        if len(closing):
            closed = np.stack([closing, self.open_start[closing], lengths[closing]], axis=1)
            self.segments = np.concatenate([self.segments, closed])
            self.open_start[closing] = self.written[closing]

    def _drop_overwritten(self) -> None:
        env, first = self.segments[:, 0], self.segments[:, 1]
        alive = first >= self.written[env] - self.region
        if not alive.all():
            self.segments = self.segments[alive]

    # ---------------------------------------------------------------- sampling
    def sample(self, batch_size: int) -> SequenceBatch:
        self._drop_overwritten()
        if not len(self.segments):
            raise RuntimeError("no finished episode in the replay to sample from")
        window = self.sequence_length
        if self.mode is SequenceReplay.episodes:
            chosen = self.segments[self.rng.integers(len(self.segments), size=batch_size)]
            offset = np.zeros(batch_size, dtype=np.int64)
        else:  # every window position of every segment equally likely
            positions = np.maximum(self.segments[:, 2] - window + 1, 1)
            chosen = self.segments[self.rng.choice(len(self.segments), size=batch_size, p=positions / positions.sum())]
            offset = self.rng.integers(np.maximum(chosen[:, 2] - window + 1, 1))
        env, first, length = chosen.T
        burn = np.minimum(offset, self.burn_in)  # only earlier steps of the same segment
        window_start, window_length = first + offset, np.minimum(window, length - offset)
        burn_steps = _padded_steps(window_start - burn, burn)  # [B, K]
        window_steps = _padded_steps(window_start, window_length)  # [B, T]
        steps = np.concatenate([burn_steps, window_steps], axis=1)
        slots = env[:, None] * self.region + steps % self.region
        fields = self.layout.unpack(self.storage[torch.from_numpy(slots).to(self.device)])
        k = burn_steps.shape[1]
        mask = np.arange(window_steps.shape[1])[None] < window_length[:, None]
        return SequenceBatch(
            obs=fields["obs"][:, k:],
            actions=fields["actions"][:, k:],
            rewards=fields["rewards"][:, k:],
            next_obs=fields["next_obs"][:, k:],
            terminated=fields["terminated"][:, k:],
            mask=torch.from_numpy(mask.astype(np.float32)).to(self.device),
            burn_in_obs=fields["obs"][:, :k],
            burn_in_lengths=torch.from_numpy(burn),
            start_state=fields["state"][:, 0] if "state" in fields else None,
        )

    # ---------------------------------------------------------------- checkpoints
    def _filled_rows(self) -> torch.Tensor:
        return torch.cat(
            [
                torch.arange(e * self.region, e * self.region + min(int(w), self.region))
                for e, w in enumerate(self.written)
            ]
        )

    def state_dict(self) -> dict:
        return {
            "region": self.region,
            "num_envs": self.num_envs,
            "width": self.layout.width,
            "rows": self.storage[self._filled_rows().to(self.device)].cpu(),
            "written": self.written.copy(),
            "open_start": self.open_start.copy(),
            "segments": self.segments.copy(),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        saved = (state["num_envs"], state["region"], state["width"])
        if saved != (self.num_envs, self.region, self.layout.width):
            raise ValueError(
                f"saved episode replay (envs, steps per env, row width) = {saved} does not fit this run's "
                f"{(self.num_envs, self.region, self.layout.width)}"
            )
        self.written, self.open_start = state["written"].copy(), state["open_start"].copy()
        self.storage[self._filled_rows().to(self.device)] = state["rows"].to(self.device)
        self.segments = state["segments"].copy()
        self.rng.bit_generator.state = state["rng"]


def _padded_steps(start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """[B, max(length)] step numbers start..start+length-1 per row, the last one repeated as padding."""
    width = int(length.max(initial=0))
    return start[:, None] + np.minimum(np.arange(width)[None], np.maximum(length - 1, 0)[:, None])
