"""A real sweep, timed two ways, and its plot: DDPG on Pendulum, 3 seeds x 2 settings, run once with the joblib
launcher (2 jobs at a time, one torch thread each) and once with Hydra's basic launcher (one job at a time, all
cores), both through the real ``rl-train -m``; then ``rl-plot`` on the parallel sweep.

    python scripts/bench_sweep.py --out /tmp/bench_sweep [--steps 10000] [--figure docs/ddpg_pendulum_sweep.png]

Prints the wall time of each sweep and the table rl-plot wrote; copies the figure where ``--figure`` says.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SWEEP = [
    "experiment=ddpg_pendulum",
    "seed=0,1,2",
    "agent.tau=0.005,0.05",
    "eval.every=1000",
    "progress=false",
    "device=cpu",
]


def run_sweep(sweep_dir: Path, launcher: list[str], steps: int) -> float:
    command = [sys.executable, "-m", "rl_runner.train", "-m", *launcher, *SWEEP, f"total_steps={steps}"]
    command.append(f"hydra.sweep.dir={sweep_dir}")
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"sweep failed ({result.returncode}): {result.stderr[-2000:]}")
    print(next(line for line in result.stdout.splitlines() if line.startswith("rl-train: sweep")))
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_sweep"))
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--figure", type=Path, help="copy the learning-curve PNG here")
    parser.add_argument("--skip-sequential", action="store_true")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    walls = {
        "joblib, n_jobs=2": run_sweep(
            args.out / "parallel", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], args.steps
        )
    }
    if not args.skip_sequential:
        walls["basic (sequential)"] = run_sweep(args.out / "sequential", [], args.steps)
    for name, wall in walls.items():
        print(f"{name}: {wall:.0f} s wall for 6 jobs of {args.steps} steps")
    plots = args.out / "plots"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "rl_runner.plot",
            str(args.out / "parallel"),
            "--out",
            str(plots),
            "--threshold",
            "-300",
        ],
        cwd=REPO_ROOT,
        check=True,
    )
    print((plots / "results.md").read_text())
    if args.figure:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plots / "eval_return_mean.png", args.figure)
        print(f"figure copied to {args.figure}")


if __name__ == "__main__":
    main()
