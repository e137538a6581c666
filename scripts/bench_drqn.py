"""DRQN on memory tasks: the T-maze (success rate and env steps to reach a threshold, per corridor length,
recurrent cell and replay mode, over seeds), CartPole with hidden velocities (evaluation return after a fixed
budget), and learning updates per second for a batch of sequences.

Each run is the real command line (`rl-train experiment=drqn_tmaze ...`) in its own process with one torch
thread, `--jobs` at a time, read back from its TensorBoard files. A run that never reaches the threshold
within `--steps` counts as "not reached".

    .venv/bin/python scripts/bench_drqn.py tmaze --lengths 10 20 --cells lstm gru none --replays episodes windows
    .venv/bin/python scripts/bench_drqn.py tmaze --variant two_goal --lengths 10 --cells lstm gru none
    .venv/bin/python scripts/bench_drqn.py cartpole --cells lstm none --steps 100000
    .venv/bin/python scripts/bench_drqn.py updates --batch 32 --sequence 80
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

ENV_OF_VARIANT = {"either": "tmaze", "both": "tmaze_both", "two_goal": "tmaze_two_goal"}


def replay_overrides(replay: str, length: int) -> list[str]:
    if replay == "windows":  # R2D2-style: short windows, the memory of earlier steps from the stored state
        return ["agent.replay=windows", "agent.sequence_length=20", "agent.burn_in=20", "agent.stored_state=true"]
    # whole episodes, never cut: a cut part would start from a zero state that has not seen the cue
    return ["agent.replay=episodes", f"agent.sequence_length={4 * (length + 2) + 10}"]


def tmaze_run(job: tuple, args: argparse.Namespace, root: Path) -> dict:
    length, cell, replay, seed = job
    name = f"L{length}_{cell}_{replay}_seed{seed}"
    overrides = [
        "experiment=drqn_tmaze",
        f"env={ENV_OF_VARIANT[args.variant]}",
        f"env.kwargs.length={length}",
        f"agent.cell={cell}",
        f"seed={seed}",
        f"total_steps={args.steps}",
        f"eval.every={args.eval_every}",
        f"eval.episodes={args.eval_episodes}",
        *replay_overrides(replay, length),
        *args.set,
    ]
    started = time.perf_counter()
    scalars = train(root / name, overrides)
    return {
        "job": name,
        "key": (length, cell, replay),
        "seed": seed,
        "success": scalars["eval/success_rate"],
        "sps": median_sps(scalars),
        "wall_s": time.perf_counter() - started,
    }


def tmaze(args: argparse.Namespace) -> dict:
    jobs = [(n, c, r, s) for n in args.lengths for c in args.cells for r in args.replays for s in args.seeds]
    with tempfile.TemporaryDirectory() as directory, ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: tmaze_run(job, args, Path(directory)), jobs))
    print(f"T-maze ({args.variant}), cap {args.steps} steps, seeds {args.seeds}")
    print(
        f"| length | cell | replay | steps to success >= {args.threshold:g} per seed | median | final success | sps |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    report = {"variant": args.variant, "cap": args.steps, "threshold": args.threshold, "seeds": args.seeds, "rows": []}
    for key in dict.fromkeys(r["key"] for r in results):
        rows = [r for r in results if r["key"] == key]
        reached = [steps_to(r["success"], args.threshold) for r in rows]
        finals = [round(r["success"][-1][1], 2) for r in rows]
        per_seed = ", ".join("—" if step is None else str(step) for step in reached)
        sps = statistics.median(r["sps"] for r in rows)
        shown = median_steps(reached, args.steps, args.eval_every)
        print(f"| {key[0]} | {key[1]} | {key[2]} | {per_seed} | {shown} | {finals} | {sps:.0f} |")
        report["rows"].append(
            {"key": key, "steps_to_threshold": reached, "final_success": finals, "curves": [r["success"] for r in rows]}
        )
    report["wall_s"] = {r["job"]: round(r["wall_s"]) for r in results}
    return report


def cartpole(args: argparse.Namespace) -> dict:
    def one(job: tuple) -> dict:
        cell, seed = job
        overrides = [
            "experiment=drqn_cartpole_pomdp",
            f"agent.cell={cell}",
            f"seed={seed}",
            f"total_steps={args.steps}",
        ]
        scalars = train(Path(directory) / f"{cell}_seed{seed}", overrides + args.set)
        return {"cell": cell, "seed": seed, "returns": scalars["eval/return_mean"], "sps": median_sps(scalars)}

    with tempfile.TemporaryDirectory() as directory, ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, [(c, s) for c in args.cells for s in args.seeds]))
    print(f"CartPole, velocities hidden, {args.steps} steps, seeds {args.seeds}")
    print("| cell | final eval return per seed | mean of the last 3 evaluations per seed | sps |")
    print("| --- | --- | --- | --- |")
    for cell in args.cells:
        rows = [r for r in results if r["cell"] == cell]
        finals = [round(r["returns"][-1][1]) for r in rows]
        last3 = [round(statistics.mean(v for _, v in r["returns"][-3:])) for r in rows]
        print(f"| {cell} | {finals} | {last3} | {statistics.median(r['sps'] for r in rows):.0f} |")
    return {"steps": args.steps, "results": results}


def updates(args: argparse.Namespace) -> dict:
    """Learning updates per second on a replay of random episodes, nothing else running in the process."""
    import gymnasium as gym
    import numpy as np
    import torch

    from rl_runner.agents import build_agent
    from rl_runner.agents.base import Transition
    from rl_runner.clock import Clock
    from rl_runner.config import compose_config

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rates = {}
    for cell in args.cells:
        cfg = compose_config(
            ["agent=drqn", "env=tmaze", f"agent.cell={cell}", f"agent.batch_size={args.batch}"]
            + [f"agent.sequence_length={args.sequence}", *args.set]
        )
        agent = build_agent(
            cfg.agent,
            net=cfg.net,
            observation_space=gym.spaces.Box(0, 1, (args.obs,)),
            action_space=gym.spaces.Discrete(4),
            num_envs=1,
            device=device,
            clock=Clock(horizon=10**6),
        )
        rng = np.random.default_rng(0)
        for step in range(args.sequence * 40):  # 40 episodes of exactly one sequence each
            end = (step + 1) % args.sequence == 0
            obs = rng.random((1, args.obs), dtype=np.float32)
            agent.warm_up(obs)  # random actions, as the runner takes them before learning_starts
            agent.observe(
                Transition(obs, rng.integers(4, size=1), rng.random(1), obs, np.array([end]), np.array([False]), {})
            )
        for _ in range(5):
            agent.update()  # warm-up: allocator, first-call overheads
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(args.count):
            metrics = agent.update()
        float(metrics["loss/q"])  # waits for the device
        rates[cell] = args.count / (time.perf_counter() - started)
        print(
            f"{cell}: {rates[cell]:.1f} updates/s (batch {args.batch} x {args.sequence} steps, net.hidden="
            f"{cfg.net.hidden}, rnn_hidden={cfg.agent.rnn_hidden}, {args.threads} threads, {device})"
        )
    return {"updates_per_second": rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["tmaze", "cartpole", "updates"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru", "none"])
    parser.add_argument("--replays", nargs="+", default=["episodes"], choices=["episodes", "windows"])
    parser.add_argument("--variant", default="either", choices=list(ENV_OF_VARIANT))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30000, help="cap per run (env steps)")
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for every run, e.g. agent.lr=5e-4")
    parser.add_argument("--batch", type=int, default=32, help="updates: sequences per batch")
    parser.add_argument("--sequence", type=int, default=80, help="updates: steps per sequence")
    parser.add_argument("--obs", type=int, default=4, help="updates: observation size")
    parser.add_argument("--count", type=int, default=200, help="updates: timed updates")
    parser.add_argument("--threads", type=int, default=2, help="updates: torch threads")
    parser.add_argument("--device", default="cpu", help="updates: cpu or cuda")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    report = {"tmaze": tmaze, "cartpole": cartpole, "updates": updates}[args.task](args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
