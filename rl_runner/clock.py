"""The run's time, shared by the runner (which advances it) and the agent (which reads it).

Agents get the clock when they are built and read ``clock.step`` or ``clock.fraction`` in ``act`` and
``update``, so annealed schedules (PER's importance-sampling exponent, epsilon-greedy, learning rates)
never keep counters of their own. A step is an environment transition (summed over parallel envs) in an
env run and an optimiser step in a dataset run.

Schedules run over the *horizon*: the ``total_steps`` the run started with. It is saved in every
checkpoint and kept on resume, so raising ``total_steps`` on a resume continues a finished schedule at
its end value (epsilon stays at its floor, beta at 1, a decayed learning rate at its end) instead of
stretching it and jumping back; lowering ``total_steps`` ends the run before its schedules do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Clock:
    horizon: int  # the step at which schedules reach their end values
    step: int = 0

    @classmethod
    def at_end(cls, total_steps: int) -> "Clock":
        """The clock of a trained agent being evaluated: what it does must not depend on the time, so it is
        played as at the end of its schedules."""
        return cls(horizon=total_steps, step=total_steps)

    @property
    def fraction(self) -> float:
        """How far through the horizon the run is, in [0, 1]."""
        return min(1.0, self.step / self.horizon) if self.horizon > 0 else 1.0

    def state_dict(self) -> dict:
        return {"horizon": self.horizon, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.horizon, self.step = int(state["horizon"]), int(state["step"])


def linear_schedule(start: float, end: float, fraction: float, duration: float = 1.0) -> float:
    """``start`` moving linearly to ``end`` over the first ``duration`` of the horizon, then ``end``."""
    progress = min(1.0, fraction / duration) if duration > 0 else 1.0
    return start + (end - start) * progress


def cosine_schedule(start: float, end: float, fraction: float) -> float:
    """Half a cosine from ``start`` to ``end`` over the horizon."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, fraction)))
