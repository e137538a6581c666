"""Console entry points (``rl-train``, ``rl-eval``, ``rl-plot``). The heavy imports (torch, gymnasium, hydra)
take seconds; a Ctrl-C during them ends the process at once with one line and exit code 130 instead of a
traceback through importlib (raising from a signal handler inside a C extension's import can abort the
interpreter, so the handler exits without unwinding: nothing has been written yet). Once the imports are done,
Ctrl-C raises ``KeyboardInterrupt`` again, which the programs turn into one line, and training replaces it while
it runs."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def describe_os_error(error: OSError) -> str:
    """An operating-system error as one line: the file, then the cause."""
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{error.strerror or error}"


def exit_quietly_on_interrupt(program: str) -> None:
    def interrupted(number: int, frame: FrameType | None) -> None:
        sys.stderr.write(f"{program}: interrupted\n")
        sys.stderr.flush()
        os._exit(130)

    signal.signal(signal.SIGINT, interrupted)


def interrupts_raise() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def train() -> None:
    exit_quietly_on_interrupt("rl-train")
    from rl_runner.train import main

    interrupts_raise()
    main()


def evaluate() -> None:
    exit_quietly_on_interrupt("rl-eval")
    from rl_runner.evaluate import main

    interrupts_raise()
    main()


def plot() -> None:
    exit_quietly_on_interrupt("rl-plot")
    from rl_runner.plot import main

    interrupts_raise()
    main()
