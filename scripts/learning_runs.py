"""What the learning benchmarks share: one training run as the real command line in its own process (one
torch thread, so that parallel runs do not fight over cores), its TensorBoard scalars read back, and
"steps until an evaluation metric first reaches a threshold" with runs that never reach it ranked last."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

Curve = list[tuple[int, float]]


def train(run_dir: Path, overrides: list[str]) -> dict[str, Curve]:
    """``rl-train <overrides>`` into ``run_dir`` on the CPU; every scalar it logged, by tag."""
    from rl_runner.logging import read_scalars

    command = [
        sys.executable,
        "-m",
        "rl_runner.train",
        *overrides,
        "checkpoint.every=0",
        "progress=false",
        "device=cpu",
        f"hydra.run.dir={run_dir}",
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(overrides)} failed: {result.stderr[-500:]}")
    return read_scalars(run_dir / "tb")


def steps_to(curve: Curve, threshold: float) -> int | None:
    return next((step for step, value in curve if value >= threshold), None)


def median_steps(reached: list[int | None], cap: int, eval_every: int) -> str:
    """The median over seeds, "not reached" counting as worse than any reached value."""
    median = statistics.median(step if step is not None else cap + eval_every for step in reached)
    return "not reached" if median > cap else f"{median:g}"


def median_sps(scalars: dict[str, Curve]) -> float:
    return statistics.median(value for _, value in scalars["charts/sps"][1:])  # the first interval is warm-up
