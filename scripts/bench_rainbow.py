"""Rainbow on a preset (CartPole-v1 by default): env steps until the evaluation mean first reaches a threshold,
over seeds, for full Rainbow, for Rainbow without each of its parts (an ablation table in the spirit of Hessel et
al.) and for plain DQN (``dqn``: all six parts off), with the mean evaluation curve of each variant.

Each run is the real command line (`rl-train experiment=rainbow_cartpole seed=S ...`) in its own process with
one torch thread, `--jobs` at a time; results are read back from the runs' TensorBoard files. A run that never
reaches the threshold within `--steps` counts as "not reached".

    .venv/bin/python scripts/bench_rainbow.py --seeds 0 1 2 3 4 --steps 30000
    .venv/bin/python scripts/bench_rainbow.py --seeds 0 1 --ablations double dueling per noisy n_step distributional
    .venv/bin/python scripts/bench_rainbow.py --experiment rainbow_minatar_breakout --seeds 0 1 2 --ablations dqn \
        --steps 300000 --eval-every 25000 --threshold 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from learning_runs import median_sps, median_steps, steps_to, train

from rl_runner.agents.rainbow import PARTS_OFF

VARIANTS = {name: [override] for name, override in PARTS_OFF.items()} | {"dqn": list(PARTS_OFF.values())}


def run(variant: str, seed: int, steps: int, eval_every: int, root: Path, extra: list[str], experiment: str) -> dict:
    overrides = VARIANTS.get(variant, [])
    start = time.monotonic()
    scalars = train(
        root / f"{variant}_seed{seed}",
        [
            f"experiment={experiment}",
            f"seed={seed}",
            f"total_steps={steps}",
            f"eval.every={eval_every}",
            "eval.episodes=10",
            *extra,
            *overrides,
        ],
    )
    return {
        "variant": variant,
        "seed": seed,
        "evaluations": scalars["eval/return_mean"],
        "sps_median": median_sps(scalars),
        "wall_seconds": round(time.monotonic() - start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="rainbow_cartpole", help="the preset every run starts from")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=30000, help="cap per run (env steps)")
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--ablations", nargs="*", default=[], choices=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for every run, e.g. agent.lr=5e-4")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    variants = ["full", *args.ablations]
    with tempfile.TemporaryDirectory() as directory, ThreadPoolExecutor(args.jobs) as pool:
        jobs = [(v, s) for v in variants for s in args.seeds]
        results = list(
            pool.map(
                lambda job: run(*job, args.steps, args.eval_every, Path(directory), args.set, args.experiment), jobs
            )
        )

    print(
        f"| variant | steps to eval mean >= {args.threshold:g}, per seed {args.seeds} | median | reached | final eval |"
    )
    print("| --- | --- | --- | --- | --- |")
    report = {"threshold": args.threshold, "cap": args.steps, "seeds": args.seeds, "set": args.set, "variants": {}}
    for variant in variants:
        rows = [r for r in results if r["variant"] == variant]
        reached = [steps_to(r["evaluations"], args.threshold) for r in rows]
        shown = median_steps(reached, args.steps, args.eval_every)
        finals = [round(r["evaluations"][-1][1]) for r in rows]
        per_seed = ", ".join("—" if step is None else str(step) for step in reached)
        count = sum(step is not None for step in reached)
        print(f"| {variant} | {per_seed} | {shown} | {count}/{len(rows)} | {finals} |")
        report["variants"][variant] = {
            "steps_to_threshold": reached,
            "final_eval": finals,
            "evaluations": {r["seed"]: r["evaluations"] for r in rows},
            "env_steps_per_second_median": statistics.median(r["sps_median"] for r in rows),
            "wall_seconds": [r["wall_seconds"] for r in rows],
        }
    print("\nmean evaluation return over seeds, by env step:")
    for variant in variants:
        rows = [r for r in results if r["variant"] == variant]
        steps = [step for step, _ in rows[0]["evaluations"]]
        means = [statistics.mean(r["evaluations"][i][1] for r in rows) for i in range(len(steps))]
        print(f"{variant}: " + ", ".join(f"{step // 1000}k {mean:.1f}" for step, mean in zip(steps, means)))
    for variant, data in report["variants"].items():
        print(f"{variant}: median {data['env_steps_per_second_median']:.0f} env steps/s, wall {data['wall_seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
