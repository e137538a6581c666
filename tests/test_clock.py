"""The run clock and schedules (rl_runner/clock.py)."""

from __future__ import annotations

import pytest

from rl_runner.clock import Clock, cosine_schedule, linear_schedule


def test_clock_fraction_and_schedules() -> None:
    clock = Clock(horizon=200)
    assert clock.fraction == 0.0
    clock.step = 50
    assert clock.fraction == 0.25 and linear_schedule(1.0, 0.1, clock.fraction) == pytest.approx(0.775)
    assert linear_schedule(1.0, 0.1, clock.fraction, duration=0.25) == pytest.approx(0.1)  # reached its end early
    clock.step = 500  # past the horizon (a resume that raised total_steps): schedules stay at their end
    assert clock.fraction == 1.0 and cosine_schedule(3.0, 1.0, clock.fraction) == pytest.approx(1.0)
    assert cosine_schedule(3.0, 1.0, 0.5) == pytest.approx(2.0)
    restored = Clock(horizon=1)
    restored.load_state_dict(clock.state_dict())
    assert (restored.horizon, restored.step) == (200, 500)
