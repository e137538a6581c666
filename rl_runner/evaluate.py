"""``rl-eval <run dir> [checkpoint=latest|best|step_...] [device=cpu] [option=value ...] [group.key=value ...]``

Loads a run's config (re-composed from its saved overrides, so every schema check applies; dotted
``group.key=value`` arguments are composed on top, e.g. ``data.path=new.csv``) and a checkpoint (the latest
unless named; the run directory may also be a checkpoint directory itself), then hands over to the run's runner
(``rl_runner/registry.py``): an env run plays deterministic-policy episodes (``episodes=N``, ``seed=N``,
``video=true``), a dataset run scores the windows of its data.
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m rl_runner.evaluate`: a Ctrl-C during the imports below is one line
    from rl_runner.console import exit_quietly_on_interrupt

    exit_quietly_on_interrupt("rl-eval")

import sys
from pathlib import Path

from rl_runner.checkpoint import resolve_checkpoint
from rl_runner.config import run_config
from rl_runner.console import fail, stop_interrupted
from rl_runner.errors import describe_os_error, expected_errors
from rl_runner.registry import runner_entry, runner_function
from rl_runner.runtime import resolve_device

PROGRAM = "rl-eval"
COMMON_OPTIONS = ("checkpoint", "device")
USAGE = (
    f"usage: {PROGRAM} RUN_DIR [checkpoint=latest|best|step_...] [device=auto|cpu|cuda] [episodes=N] [seed=N] "
    "[video=true] [split=test|val|all] [group.key=value ...]"
)


def parse_arguments(argv: list[str]) -> tuple[Path, dict[str, str], list[str]]:
    """The run directory, the ``key=value`` options and the dotted config overrides."""
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0)
    if not argv:
        raise ValueError(USAGE)
    options, overrides = {}, []
    for argument in argv[1:]:
        key, sep, value = argument.partition("=")
        if not sep:
            raise ValueError(f"unknown argument {argument!r}; {USAGE}")
        if "." in key:
            overrides.append(argument)
        else:
            options[key] = value
    return Path(argv[0]), options, overrides


def evaluate_run(run_dir: Path, options: dict[str, str] | None = None, overrides: list[str] = ()) -> dict:
    """Evaluate a checkpoint of a run with its runner's ``evaluate``; the result has a printable ``report``."""
    options = dict(options or {})
    run_dir, checkpoint = resolve_checkpoint(run_dir, options.pop("checkpoint", None))
    cfg = run_config(run_dir, list(overrides))
    allowed = COMMON_OPTIONS + runner_entry(cfg.agent.runner).eval_options
    unknown = [key for key in options if key not in allowed]
    if unknown:
        raise ValueError(f"unknown option {unknown[0]}=: runner {cfg.agent.runner} takes {', '.join(allowed)}")
    device = resolve_device(options.pop("device", "auto"))
    return runner_function(cfg.agent.runner, "evaluate")(cfg, checkpoint, device, options)


def main(argv: list[str] | None = None) -> None:
    try:
        run_dir, options, overrides = parse_arguments(list(sys.argv[1:] if argv is None else argv))
        result = evaluate_run(run_dir, options, overrides)
    except OSError as error:  # a missing run or checkpoint, a read-only or full disk for the video or the scores
        fail(PROGRAM, describe_os_error(error))
    except expected_errors() as error:
        fail(PROGRAM, str(error))
    except KeyboardInterrupt:
        stop_interrupted(PROGRAM)
    for line in result["report"].splitlines():
        print(f"{PROGRAM}: {line}")


if __name__ == "__main__":
    from rl_runner.console import interrupts_raise

    interrupts_raise()
    main()
