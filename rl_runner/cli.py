"""Console entry points (``rl-train``, ``rl-eval``, ``rl-plot``): each installs the quiet Ctrl-C handler of
``rl_runner.console`` before its heavy imports, then hands over to its program."""

from __future__ import annotations

from rl_runner.console import exit_quietly_on_interrupt, interrupts_raise


def train() -> None:
    exit_quietly_on_interrupt("rl-train")
    from rl_runner.train import main

    main()  # it lets Ctrl-C raise once the config is checked and the training modules are imported


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
