"""``rl-eval <run dir> [checkpoint=step_...] [device=cpu] [option=value ...] [group.key=value ...]``

Loads a run's config (re-composed from its saved overrides, so every schema check applies; dotted
``group.key=value`` arguments are composed on top, e.g. ``data.path=new.csv``) and a checkpoint (the latest
unless named), then hands over to the run's runner: an env run plays deterministic-policy episodes
(``episodes=N``, ``seed=N``, ``video=true``), a dataset run scores the validation windows of its data.
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m rl_runner.evaluate`: a Ctrl-C during the imports below is one line
    from rl_runner.cli import exit_quietly_on_interrupt

    exit_quietly_on_interrupt("rl-eval")

import sys
from pathlib import Path

import gymnasium as gym

from rl_runner.checkpoint import CheckpointError
from rl_runner.cli import describe_os_error

PROGRAM = "rl-eval"
COMMON_OPTIONS = ("checkpoint", "device")
USAGE = (
    f"usage: {PROGRAM} RUN_DIR [checkpoint=step_...] [device=auto|cpu|cuda] [episodes=N] [seed=N] [video=true] "
    "[group.key=value ...]"
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
    from rl_runner.checkpoint import latest_checkpoint, missing_checkpoint_hint
    from rl_runner.config import run_config
    from rl_runner.runners import runner_entry, runner_function
    from rl_runner.runtime import resolve_device

    options = dict(options or {})
    cfg = run_config(run_dir, list(overrides))
    allowed = COMMON_OPTIONS + runner_entry(cfg.agent.runner).eval_options
    unknown = [key for key in options if key not in allowed]
    if unknown:
        raise ValueError(f"unknown option {unknown[0]}=: runner {cfg.agent.runner} takes {', '.join(allowed)}")
    name = options.pop("checkpoint", None)
    path = run_dir / "checkpoints" / name if name else latest_checkpoint(run_dir / "checkpoints")
    if path is None or not path.is_dir():
        hint = missing_checkpoint_hint(run_dir)
        raise ValueError(f"no checkpoint {name or ''} under {run_dir / 'checkpoints'}{hint}")
    device = resolve_device(options.pop("device", "auto"))
    return runner_function(cfg.agent.runner, "evaluate")(cfg, path, device, options)


def main(argv: list[str] | None = None) -> None:
    try:
        run_dir, options, overrides = parse_arguments(list(sys.argv[1:] if argv is None else argv))
        result = evaluate_run(run_dir, options, overrides)
    except (ValueError, CheckpointError, gym.error.Error) as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:  # a missing run, a read-only or full disk for the video or the scores
        print(f"{PROGRAM}: error: {describe_os_error(error)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{PROGRAM}: error: interrupted", file=sys.stderr)
        sys.exit(130)
    for line in result["report"].splitlines():
        print(f"{PROGRAM}: {line}")


if __name__ == "__main__":
    from rl_runner.cli import interrupts_raise

    interrupts_raise()
    main()
