"""Rainbow on Atari Breakout: what its replay costs and how fast it acts and learns.

``--replay``: a 1M-transition prioritized ``FrameReplay`` filled with 84x84 frame stacks (random frames, episodes
of ``--episode-steps`` steps, the way the Atari pipeline produces them: the stack shifts by one frame per step, a
reset repeats its first frame). Reports the bytes it holds per transition, the process's resident memory
before and after, its peak, and the time to sample a batch.

``--sps``: ``rl-train experiment=rainbow_breakout`` for ``--steps`` env steps on this machine (all its threads),
and the env steps per second once learning has started (one update every 4 steps, batch 32, Nature CNN).

    .venv/bin/python scripts/bench_atari.py --replay
    .venv/bin/python scripts/bench_atari.py --sps --steps 12000 --device cpu
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from rl_runner.buffers import FrameReplay, PrioritizedReplay  # noqa: E402
from rl_runner.logging import read_scalars  # noqa: E402


def replay_memory(transitions: int, episode_steps: int) -> None:
    process = psutil.Process()
    before = process.memory_info().rss
    storage = FrameReplay(transitions, (4, 84, 84), num_envs=1, device=torch.device("cpu"))
    replay = PrioritizedReplay(storage, alpha=0.5, seed=0)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (997, 84, 84), dtype=np.uint8)  # cycled: making 1M random frames costs more
    zeros = np.zeros(1)
    start = time.monotonic()
    for step in range(transitions):
        if step % episode_steps == 0:
            obs = np.repeat(frames[step % 997][None, None], 4, axis=1)  # a reset stack repeats its frame
        next_obs = np.concatenate([obs[:, 1:], frames[(step + 1) % 997][None, None]], axis=1)
        obs_handles, next_handles = storage.encode(obs, next_obs)
        replay.add(obs=obs_handles, actions=zeros, rewards=zeros, next_obs=next_handles, terminated=zeros,
                   truncated=zeros, discounts=zeros)  # fmt: skip
        obs = next_obs
    fill_seconds = time.monotonic() - start
    after = process.memory_info().rss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    start = time.monotonic()
    for _ in range(200):
        replay.sample(32, beta=0.5)
    sample_ms = (time.monotonic() - start) / 200 * 1000
    lost = int(storage.lost(np.arange(len(storage))).sum())
    print(f"{transitions} transitions, episodes of {episode_steps} steps, filled in {fill_seconds:.0f} s")
    print(f"planes written {storage.store.written}, ring of {storage.store.capacity} planes, lost transitions {lost}")
    print(f"bytes per transition held (frame + handles + row): {storage.bytes_per_transition()}")
    print(f"prioritized replay's sum and min trees: {replay.tree.sums.nbytes + replay.tree.mins.nbytes} bytes")
    grown = after - before
    print(f"resident memory: {before / 1e9:.2f} GB before, {after / 1e9:.2f} GB after ({grown / 1e9:.2f} GB for the")
    print(f"replay, {grown / transitions:.0f} bytes per transition); peak {peak / 1e9:.2f} GB")
    print(f"sampling a prioritized batch of 32 stacks: {sample_ms:.2f} ms")


def acting_and_learning(steps: int, learning_starts: int, device: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        command = [
            sys.executable, "-m", "rl_runner.train", "experiment=rainbow_breakout", f"total_steps={steps}",
            f"agent.learning_starts={learning_starts}", f"device={device}", "eval.every=0", "eval.episodes=0",
            "checkpoint.every=0", "progress=false", "log.every=1000", f"hydra.run.dir={directory}",
        ]  # fmt: skip
        start = time.monotonic()
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        wall = time.monotonic() - start
        if result.returncode != 0:
            raise SystemExit(result.stderr[-2000:])
        sps = read_scalars(Path(directory) / "tb")["charts/sps"]
    learning = [value for step, value in sps if step > learning_starts + 1000]
    warmup = [value for step, value in sps if step <= learning_starts]
    print(f"{steps} steps in {wall:.0f} s on {device} with {torch.get_num_threads()} threads")
    print(f"random warm-up: median {statistics.median(warmup):.0f} env steps/s")
    print(f"acting + learning (1 update per 4 steps, batch 32): median {statistics.median(learning):.0f} env steps/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replay", action="store_true")
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--episode-steps", type=int, default=500)
    parser.add_argument("--sps", action="store_true")
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument("--learning-starts", type=int, default=4000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.replay:
        replay_memory(args.transitions, args.episode_steps)
    if args.sps:
        acting_and_learning(args.steps, args.learning_starts, args.device)


if __name__ == "__main__":
    main()
