"""Environment steps per second of DDPG on HalfCheetah-v5, rl_runner against Stable-Baselines3.

Both use 256x256 actor and critic, batch 256, Adam 3e-4, tau 0.005, Gaussian noise 0.1, one gradient update
per environment step, one env, CPU, and the same float32 matmul precision (--matmul-precision). Each round
times the learning phase only (after ``--warmup`` random steps) of each library back to back; the report
gives per-round numbers, medians and the median ratio.

    python scripts/bench_sps.py --rounds 5 --steps 3000
    python scripts/bench_sps.py --device cuda [--matmul-precision high] [--compile]   # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
LOG_EVERY = 500
UNTIMED_LEARNING_STEPS = LOG_EVERY  # both libraries skip their first learning steps before timing


def rl_runner_sps(steps: int, warmup: int, device: str, precision: str, compile_losses: bool, seed: int) -> float:
    from hydra import compose, initialize_config_dir

    from rl_runner.config import CONF_DIR
    from rl_runner.logging import read_scalars
    from rl_runner.training import train

    overrides = [
        "agent=ddpg",
        "env=halfcheetah",
        f"device={device}",
        f"matmul_precision={precision}",
        f"seed={seed}",
        "progress=false",
        "net.hidden=256",
        "net.depth=2",
        "agent.batch_size=256",
        "agent.updates_per_step=1",
        f"agent.learning_starts={warmup}",
        f"agent.compile={str(compile_losses).lower()}",
        f"total_steps={warmup + steps}",
        "eval.every=0",
        "eval.episodes=0",
        "checkpoint.every=0",
        f"log.every={LOG_EVERY}",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        train(cfg, run_dir=Path(run_dir))
        intervals = [
            sps
            for step, sps in read_scalars(Path(run_dir) / "tb")["charts/sps"]
            if step > warmup + UNTIMED_LEARNING_STEPS
        ]
    # every interval covers log_every steps: total steps over total time is the harmonic mean
    return len(intervals) / sum(1.0 / sps for sps in intervals)


def stable_baselines3_sps(steps: int, warmup: int, device: str, precision: str, seed: int) -> float:
    import gymnasium as gym
    from stable_baselines3 import DDPG
    from stable_baselines3.common.noise import NormalActionNoise

    from rl_runner.choices import MatmulPrecision
    from rl_runner.runtime import set_matmul_precision

    set_matmul_precision(MatmulPrecision(precision))  # the same matmul precision as the rl_runner measurement

    env = gym.make("HalfCheetah-v5")
    action_dim = env.action_space.shape[0]
    model = DDPG(
        "MlpPolicy",
        env,
        learning_rate=3e-4,
        buffer_size=1_000_000,
        learning_starts=warmup,
        batch_size=256,
        tau=0.005,
        gamma=0.99,
        train_freq=1,
        gradient_steps=1,
        action_noise=NormalActionNoise(np.zeros(action_dim), 0.1 * np.ones(action_dim)),
        policy_kwargs={"net_arch": [256, 256]},
        device=device,
        seed=seed,
        verbose=0,
    )
    model.learn(total_timesteps=warmup + UNTIMED_LEARNING_STEPS)  # random warm-up plus a few updates
    start = time.perf_counter()
    model.learn(total_timesteps=steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3000, help="timed learning steps per measurement")
    parser.add_argument("--warmup", type=int, default=1000, help="random-action steps before learning")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--matmul-precision", default="highest", choices=["highest", "high", "medium"])
    parser.add_argument("--compile", action="store_true", help="agent.compile=true (torch.compile of the losses)")
    parser.add_argument("--skip-sb3", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    results: dict[str, list[float]] = {"rl_runner": [], "stable_baselines3": []}
    loads = []
    for round_index in range(args.rounds):
        loads.append(os.getloadavg()[0])
        results["rl_runner"].append(
            rl_runner_sps(args.steps, args.warmup, args.device, args.matmul_precision, args.compile, round_index)
        )
        if not args.skip_sb3:
            results["stable_baselines3"].append(
                stable_baselines3_sps(args.steps, args.warmup, args.device, args.matmul_precision, round_index)
            )
        shown = {name: round(values[-1], 1) for name, values in results.items() if values}
        print(f"round {round_index + 1}/{args.rounds}: {shown}  (1-min load before: {loads[-1]:.2f})", flush=True)

    report = {
        "device": args.device,
        "matmul_precision": args.matmul_precision,
        "compile": args.compile,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_before_rounds": loads,
        "per_round": results,
        "median": {name: statistics.median(values) for name, values in results.items() if values},
    }
    if results["stable_baselines3"]:
        ratios = [a / b for a, b in zip(results["rl_runner"], results["stable_baselines3"])]
        report["ratio_per_round"] = ratios
        report["ratio_median"] = statistics.median(ratios)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
