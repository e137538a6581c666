"""Wall time of the command line's quick answers: ``rl-train --help``, a refused value, ``--cfg job``, and the time
until a good run's first step, for one or more source trees (this one and, say, a worktree of an older commit),
alternating runs so that machine load falls on all alike.

    python scripts/bench_cli.py --trees . /tmp/old --repeats 5

Each command runs as ``python -m rl_runner.train ...`` with the tree as working directory, so that the tree's own
``rl_runner`` is imported. Prints the median and the range of each (tree, command) pair.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "--help": ["--help"],
    "refused value (agent.gamma=1.5)": ["agent.gamma=1.5"],
    "refused choice (agent=nope)": ["agent=nope"],
    "--cfg job": ["--cfg", "job"],
    "refused env (env.id=Nope-v0)": ["env.id=Nope-v0"],
    "CartPole Rainbow, 1 step run": ["agent=rainbow", "env=cartpole", "total_steps=1", "eval.episodes=0"],
    "HalfCheetah DDPG, 1 step run": ["total_steps=1", "eval.episodes=0"],
}


def time_command(tree: Path, arguments: list[str], out_dir: Path) -> float:
    extra = [f"hydra.run.dir={out_dir}"] if not arguments[0].startswith("-") else []
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rl_runner.train", *arguments, *extra],
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=300,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", nargs="+", type=Path, default=[Path(".")])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=None, help="command names to time (default: all)")
    args = parser.parse_args()
    commands = {name: argv for name, argv in COMMANDS.items() if not args.only or name in args.only}
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for name, arguments in commands.items():
                for tree in args.trees:
                    out_dir = Path(scratch) / f"{repeat}_{len(times)}"
                    times.setdefault((str(tree), name), []).append(time_command(tree.resolve(), arguments, out_dir))
    print(f"| command | {' | '.join(str(t) for t in args.trees)} |")
    print(f"|---|{'---|' * len(args.trees)}")
    for name in commands:
        cells = []
        for tree in args.trees:
            values = times[(str(tree), name)]
            cells.append(f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})")
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
