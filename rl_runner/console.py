"""What the command lines (``rl-train``, ``rl-eval``, ``rl-plot``) share about Ctrl-C and exits.

The heavy imports (torch, gymnasium, hydra) take seconds; a Ctrl-C during them ends the process at once with one
line and exit code 130 instead of a traceback through importlib (raising from a signal handler inside a C
extension's import can abort the interpreter, so the handler exits without unwinding: nothing has been written
yet). Once the imports are done, Ctrl-C raises ``KeyboardInterrupt`` again, which the programs turn into one line,
and training replaces it while it runs. This module imports nothing heavy: the entry points import it first.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import NoReturn


def exit_quietly_on_interrupt(program: str) -> None:
    def interrupted(number: int, frame: FrameType | None) -> None:
        sys.stderr.write(f"{program}: interrupted\n")
        sys.stderr.flush()
        os._exit(130)

    signal.signal(signal.SIGINT, interrupted)


def interrupts_raise() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_interrupted(program: str) -> NoReturn:
    """A Ctrl-C the program did not handle itself: the same line as one during the imports, exit code 130."""
    print(f"{program}: interrupted", file=sys.stderr)
    sys.exit(130)


def fail(program: str, message: str, code: int = 2) -> NoReturn:
    """``<program>: error: <message>`` on stderr, then exit with ``code``."""
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(code)
