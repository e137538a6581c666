"""Console entry points (``rl-train``, ``rl-eval``). They only install a quiet Ctrl-C handler before the heavy
imports (torch, gymnasium, hydra take seconds), so an interrupt while starting ends with one line and exit
code 130 instead of a traceback through importlib. Training replaces the handler with its own while it runs."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def exit_quietly_on_interrupt(program: str) -> None:
    def interrupted(number: int, frame: FrameType | None) -> None:
        print(f"{program}: interrupted", file=sys.stderr)
        raise SystemExit(130)

    signal.signal(signal.SIGINT, interrupted)


def train() -> None:
    exit_quietly_on_interrupt("rl-train")
    from rl_runner.train import main

    main()


def evaluate() -> None:
    exit_quietly_on_interrupt("rl-eval")
    from rl_runner.evaluate import main

    main()
