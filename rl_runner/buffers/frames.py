"""Replay for image observations: every distinct frame stored once as bytes, stacks rebuilt at sample time.

An Atari observation is a stack of the last 4 frames (``[4, 84, 84]``, newest last), so consecutive observations
share 3 of them, and a transition's ``next_obs`` is the next transition's ``obs``. Storing both observations of
every transition as float32 would cost 2 x 4 x 4 = 32 times the bytes of the one new frame per step. Here:

- A ``PlaneStore`` is a ring of uint8 planes on the device. A plane is addressed by its *write number* (how many
  planes were written before it), so a reference can tell whether its plane has since been overwritten.
- Observations become *handles*: the write numbers of their planes. Per env, the last ``next_obs`` and its handle
  are remembered: an ``obs`` equal to it reuses the handle, and a ``next_obs`` whose older frames equal the
  ``obs``'s newer ones (the frame stack shifted by one) stores only its newest frame. Anything else (the first
  observation of an episode, a stack that did not shift) stores its planes, identical neighbours once (a reset
  stack repeats its first frame). Sharing is decided by comparing contents, never assumed, so a stack can never
  cross an episode boundary: a new episode's frames differ from the old one's or are the same bytes anyway.
- Whether observations are frame stacks is seen at the first step (``next_obs[:-1] == obs[1:]`` in every env):
  then a plane is one frame and one is written per step; otherwise (MinAtar's object channels) a plane is a whole
  observation, again one per step. (An env that is not stacked but whose first two observations have identical
  planes, all blank say, is taken for stacked: still correct, but it fills the ring faster.) The ring holds
  ``capacity`` planes plus a spare (``spare_planes``: each episode ends up holding one plane more than it has
  transitions); the storage is allocated then, after a check against the device's free memory.
- Handles (int64) go through the n-step accumulator like observations, and the transition ring keeps them with
  the actions, rewards and flags (and each slot's oldest write number on the host). If episodes are so short
  that more planes than the spare were written while a transition stayed in the ring, that transition's planes
  are gone: ``lost`` reports it, sampling skips it (a prioritized replay sets its priority to 0), and it leaves
  the ring in turn.
"""

from __future__ import annotations

import numpy as np
import psutil
import torch

from rl_runner.buffers.replay import RowLayout, TransitionBatch


class PlaneStore:
    """A ring of ``capacity`` uint8 planes of ``plane_shape`` on ``device``, addressed by write number."""

    def __init__(self, capacity: int, plane_shape: tuple[int, ...], device: torch.device) -> None:
        self.capacity = capacity
        self.plane_shape = plane_shape
        # empty, not zeros: on a CPU the pages become resident as planes are written, not all at once
        self.planes = torch.empty((capacity, *plane_shape), dtype=torch.uint8, device=device)
        self.written = 0

    def write(self, plane: np.ndarray) -> int:
        """Store one plane; returns its write number."""
        number = self.written
        self.planes[number % self.capacity] = torch.from_numpy(np.asarray(plane, dtype=np.uint8))
        self.written += 1
        return number

    def oldest_alive(self) -> int:
        """The smallest write number whose plane is still stored."""
        return max(0, self.written - self.capacity)

    def state_dict(self) -> dict:
        kept = min(self.written, self.capacity)
        planes = self.planes[:kept]
        # a full CPU ring is saved as it is (checkpoints are written synchronously): a copy of a 7 GB Atari replay
        # would double the memory for the length of the save; a partial one is cut, else the rest is saved too
        if planes.device.type == "cpu" and kept < self.capacity:
            planes = planes.clone()
        return {"written": self.written, "capacity": self.capacity, "planes": planes.cpu()}

    def load_state_dict(self, state: dict) -> None:
        """Planes saved from a ring of any size (it grows with ``env.num_envs``) go where their write numbers
        put them in this one; what this ring cannot hold is the oldest, as if overwritten."""
        saved, saved_capacity, written = state["planes"], int(state["capacity"]), int(state["written"])
        if tuple(saved.shape[1:]) != tuple(self.planes.shape[1:]):
            raise ValueError(f"saved replay has frames of shape {tuple(saved.shape[1:])}, this env's are "
                             f"{tuple(self.planes.shape[1:])}")  # fmt: skip
        if saved_capacity == self.capacity:
            self.planes[: len(saved)].copy_(saved)  # copy_: no temporary copy of the whole ring on the device
        else:
            numbers = np.arange(max(0, written - min(saved_capacity, self.capacity)), written)
            for chunk in np.array_split(numbers, max(1, len(numbers) // 65536)):
                self.planes[torch.from_numpy(chunk % self.capacity).to(self.planes.device)] = saved[
                    torch.from_numpy(chunk % saved_capacity)
                ].to(self.planes.device)
        self.written = written


class FrameReplay:
    """Uniform replay of image observations with the ``ReplayBuffer`` interface, observations given as handles
    from ``encode``. ``gather`` returns observations as uint8 tensors ``[B, *obs_shape]`` (booleans as 0/1)."""

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        num_envs: int,
        device: torch.device,
        n_step: int = 1,
        discounts: bool = True,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"buffer_size must be positive, got {capacity}")
        if len(obs_shape) < 2:
            raise ValueError(f"FrameReplay stores images, got observations of shape {obs_shape}")
        self.capacity, self.obs_shape, self.num_envs, self.device = capacity, tuple(obs_shape), num_envs, device
        self.n_step = n_step
        self.layout = RowLayout(
            {"actions": (), "rewards": (), "terminated": (), "truncated": ()} | ({"discounts": ()} if discounts else {})
        )
        self.rows: torch.Tensor | None = None  # [capacity, width]: actions, rewards, flags
        self.position = 0
        self.size = 0
        self.stacked: bool | None = None  # seen at the first step; all storage is allocated then
        self.store: PlaneStore | None = None
        # [capacity, 2, planes per observation]: where each plane sits in the ring (int32: half the bytes of the
        # write numbers, which are known from the slot and the ring's count of writes while the plane is alive)
        self.planes_at: torch.Tensor | None = None
        self.oldest: np.ndarray | None = None  # [capacity] each slot's oldest write number, on the host: `lost`
        self.previous: list[tuple[np.ndarray, np.ndarray] | None] = [None] * num_envs  # per env: next_obs, handle

    def __len__(self) -> int:
        return self.size

    # ---------------------------------------------------------------- observations -> handles
    @property
    def planes_per_observation(self) -> int:
        return self.obs_shape[0] if self.stacked else 1

    @property
    def plane_shape(self) -> tuple[int, ...]:
        """One frame of a stack, or a whole observation when observations are not stacks."""
        return self.obs_shape[1:] if self.stacked else self.obs_shape

    def encode(self, obs: np.ndarray, next_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step of every env: observations [N, *obs_shape] -> handles [N, planes] (int64), storing the planes
        not stored yet. ``next_obs`` is the real successor (the final observation where an episode ended)."""
        if self.stacked is None:
            shifted = self.obs_shape[0] > 1 and all(np.array_equal(n[:-1], o[1:]) for o, n in zip(obs, next_obs))
            self._allocate(stacked=shifted)
        obs_handles = np.empty((len(obs), self.planes_per_observation), dtype=np.int64)
        next_handles = np.empty_like(obs_handles)
        for env, (observation, successor) in enumerate(zip(obs, next_obs)):
            previous = self.previous[env]
            if previous is not None and np.array_equal(previous[0], observation):
                obs_handles[env] = previous[1]
            else:
                obs_handles[env] = self._store(observation)
            if self.stacked and np.array_equal(successor[:-1], observation[1:]):
                next_handles[env, :-1] = obs_handles[env, 1:]
                next_handles[env, -1] = self.store.write(successor[-1])
            else:
                next_handles[env] = self._store(successor)
            self.previous[env] = (np.array(successor, copy=True), next_handles[env].copy())
        return obs_handles, next_handles

    def _store(self, observation: np.ndarray) -> np.ndarray:
        planes = observation if self.stacked else observation[None]
        handle = np.empty(len(planes), dtype=np.int64)
        for index, plane in enumerate(planes):
            if index > 0 and np.array_equal(plane, planes[index - 1]):
                handle[index] = handle[index - 1]
            else:
                handle[index] = self.store.write(plane)
        return handle

    def _allocate(self, stacked: bool) -> None:
        self.stacked = stacked
        planes = self.capacity + self.spare_planes()
        needed = self.bytes_per_transition() * self.capacity + (planes - self.capacity) * int(np.prod(self.plane_shape))
        available = _device_memory(self.device)
        if needed > available:
            raise ValueError(
                f"agent.buffer_size={self.capacity} needs {needed / 1e9:.1f} GB of replay for observations of shape "
                f"{self.obs_shape}, the {self.device.type} memory is {available / 1e9:.1f} GB: lower agent.buffer_size"
            )
        self.store = PlaneStore(planes, self.plane_shape, self.device)
        self.rows = torch.zeros((self.capacity, self.layout.width), dtype=torch.float32, device=self.device)
        self.planes_at = torch.zeros(
            (self.capacity, 2, self.planes_per_observation), dtype=torch.int32, device=self.device
        )
        self.oldest = np.zeros(self.capacity, dtype=np.int64)

    def spare_planes(self) -> int:
        """Planes beyond one per transition. A transition's planes must outlive it in the ring: the ones an
        n-step transition reaches back to when it is added, and one plane per episode more than it has
        transitions (its last next_obs, or its first obs). Up to 16 MB of spare (a quarter of the capacity at
        most) covers episodes longer than ~430 steps in a 1M Atari replay and any MinAtar episode; beyond that
        the oldest transitions lose their planes early (``lost``)."""
        plane_bytes = int(np.prod(self.plane_shape))
        per_episode = max(self.capacity // 512, min(self.capacity // 4, 16_000_000 // plane_bytes))
        return per_episode + 2 * self.num_envs * (self.n_step + self.planes_per_observation + 1)

    def bytes_per_transition(self) -> int:
        """Bytes this replay holds per transition once allocated: one plane, where its two observations' planes
        sit, its oldest write number and one row (the spare planes come on top: ``spare_planes``)."""
        return int(np.prod(self.plane_shape)) + 2 * self.planes_per_observation * 4 + 8 + self.layout.width * 4

    # ---------------------------------------------------------------- transitions
    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        discounts: np.ndarray | None = None,
    ) -> np.ndarray:
        """Add transitions whose ``obs`` and ``next_obs`` are handles from ``encode``; returns their slots."""
        count = len(rewards)
        values = [actions, rewards, terminated, truncated] + ([discounts] if "discounts" in self.layout.shapes else [])
        slots = (self.position + np.arange(count)) % self.capacity
        index = torch.from_numpy(slots).to(self.device)
        self.rows[index] = torch.from_numpy(self.layout.pack(values, count)).to(self.device)
        handles = np.stack([obs, next_obs], axis=1)  # [count, 2, planes] write numbers
        self.planes_at[index] = torch.from_numpy((handles % self.store.capacity).astype(np.int32)).to(self.device)
        self.oldest[slots] = handles.reshape(count, -1).min(axis=1)
        self.position = int((self.position + count) % self.capacity)
        self.size = min(self.size + count, self.capacity)
        return slots

    def lost(self, slots: np.ndarray) -> np.ndarray:
        """Which of these transitions had a plane overwritten (never sampled again)."""
        return self.oldest[np.asarray(slots)] < self.store.oldest_alive()

    def gather(self, slots: torch.Tensor) -> TransitionBatch:
        fields = self.layout.unpack(self.rows[slots])
        planes = self.store.planes[self.planes_at[slots].long()]  # [B, 2, planes, *plane_shape]
        observations = planes.reshape(len(slots), 2, *self.obs_shape)
        return TransitionBatch(obs=observations[:, 0], next_obs=observations[:, 1], **fields)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TransitionBatch:
        """A uniform batch of the transitions not lost. Drawn on the host, where ``lost`` is known, so that a
        GPU never waits for a transfer back."""
        index = torch.randint(0, self.size, (batch_size,), generator=generator).numpy()
        for _ in range(100):  # rejection: uniform over what is left; lost transitions are a sliver, if any
            lost = self.lost(index)
            if not lost.any():
                return self.gather(torch.from_numpy(index).to(self.device))
            index[lost] = torch.randint(0, self.size, (int(lost.sum()),), generator=generator).numpy()
        alive = np.flatnonzero(~self.lost(np.arange(self.size)))
        if len(alive) == 0:
            raise_all_lost(self.capacity)
        index = alive[torch.randint(0, len(alive), (batch_size,), generator=generator).numpy()]
        return self.gather(torch.from_numpy(index).to(self.device))

    # ---------------------------------------------------------------- checkpoints
    def _write_numbers(self, planes_at: torch.Tensor) -> torch.Tensor:
        """Ring positions -> write numbers: the one among the ring's last ``capacity`` writes (exact for every
        plane still stored; a lost transition's stay lost, by its ``oldest``)."""
        ring, newest = self.store.capacity, self.store.written - 1
        return newest - (newest - planes_at) % ring

    def state_dict(self) -> dict:
        state = {"capacity": self.capacity, "position": self.position, "size": self.size, "stacked": self.stacked}
        if self.stacked is not None:  # clone: a CPU view would save the whole capacity
            state |= {
                "rows": self.rows[: self.size].cpu().clone(),
                "handles": self._write_numbers(self.planes_at[: self.size].cpu().long()),
                "oldest": self.oldest[: self.size].copy(),
                "store": self.store.state_dict(),
                "previous": [None if p is None else (p[0].copy(), p[1].copy()) for p in self.previous],
            }
        return state

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(
                f"saved replay holds {state['capacity']} transitions, this run's buffer_size is {self.capacity}"
            )
        if state["stacked"] is None:
            return
        if state["rows"].shape[1] != self.layout.width or state["handles"].shape[2] != (
            self.obs_shape[0] if state["stacked"] else 1
        ):
            raise ValueError("saved replay has transitions of another shape than this env's")
        self._allocate(stacked=state["stacked"])
        size = state["size"]
        self.rows[:size] = state["rows"].to(self.device)
        self.planes_at[:size] = (state["handles"] % self.store.capacity).to(torch.int32).to(self.device)
        self.oldest[:size] = state["oldest"]
        self.store.load_state_dict(state["store"])
        self.position, self.size = state["position"], size
        if len(state["previous"]) == self.num_envs:  # else: another env.num_envs, whose episodes start anew
            self.previous = [None if p is None else (p[0].copy(), p[1].copy()) for p in state["previous"]]


def raise_all_lost(capacity: int) -> None:
    raise RuntimeError(
        f"every transition in the replay lost its frames: episodes are too short for agent.buffer_size={capacity} "
        "with these observations (each episode stores one frame more than it has steps): raise agent.buffer_size"
    )


def _device_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(psutil.virtual_memory().available)
