"""Return of DDPG on HalfCheetah-v5 after N environment steps, over several seeds (defaults otherwise).

    python scripts/bench_returns.py --seeds 0 1 2 --steps 100000
    python scripts/bench_returns.py --from-runs /tmp/bench/hc100k     # summarise runs made with rl-train -m

Each run is a normal rl-train run (its directory has TensorBoard logs and checkpoints). The report gives,
per seed, the final evaluation (10 deterministic episodes by default) and the mean of the last 10 training
episodes, then the mean and standard deviation across seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def run_seed(seed: int, steps: int, out: Path, extra: list[str]) -> Path:
    from hydra import compose, initialize_config_dir

    from rl_runner.config import CONF_DIR
    from rl_runner.training import train

    overrides = [
        "agent=ddpg",
        "env=halfcheetah",
        f"seed={seed}",
        f"total_steps={steps}",
        "progress=false",
        "eval.every=10000",
        "eval.episodes=10",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    run_dir = out / f"seed{seed}"
    train(cfg, run_dir=run_dir)
    return run_dir


def summarise(run_dir: Path) -> dict:
    from rl_runner.logging import read_scalars

    scalars = read_scalars(run_dir / "tb")
    evaluations = scalars.get("eval/return_mean", [])
    train_returns = [value for _, value in scalars.get("train/episode_return", [])]
    return {
        "run": str(run_dir),
        "final_step": evaluations[-1][0] if evaluations else None,
        "final_eval_return": evaluations[-1][1] if evaluations else None,
        "eval_curve": " ".join(f"{step}:{value:.0f}" for step, value in evaluations),
        "train_return_last10": statistics.mean(train_returns[-10:]) if train_returns else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "bench_returns")
    parser.add_argument("--from-runs", type=Path, help="summarise existing run directories below this one instead")
    parser.add_argument("overrides", nargs="*", help="extra rl-train overrides, e.g. device=cuda")
    args = parser.parse_args()

    if args.from_runs:
        run_dirs = sorted(p.parent for p in args.from_runs.glob("*/tb"))
    else:
        run_dirs = [run_seed(seed, args.steps, args.out, args.overrides) for seed in args.seeds]
    per_run = [summarise(run_dir) for run_dir in run_dirs]
    finals = [r["final_eval_return"] for r in per_run if r["final_eval_return"] is not None]
    report = {"per_run": per_run}
    if finals:
        report["final_eval_mean"] = statistics.mean(finals)
        report["final_eval_std"] = statistics.pstdev(finals)
        report["final_eval_min_max"] = [min(finals), max(finals)]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
