"""Entry point: ``rl-train`` / ``python -m rl_runner.train``.

``main()`` is the command line: it checks the overrides before Hydra creates a run directory (one-line errors),
turns ``resume=<run dir>`` into the original run's overrides plus that directory, then hands over to
``@hydra.main``, whose task function runs ``rl_runner.training.train`` and returns the agent's objective
(``agent.objective.metric``) for sweepers. Nothing here imports torch, gymnasium or MuJoCo: ``--help`` and a
refused value answer at once; the training modules are imported once the config has passed its checks.
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m rl_runner.train`: a Ctrl-C during the imports below is one line
    from rl_runner.console import exit_quietly_on_interrupt

    exit_quietly_on_interrupt("rl-train")

import sys
import tempfile
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from rl_runner.config import (
    CONF_DIR,
    ConfigError,
    check_overrides,
    compose_config,
    config_groups,
    hydra_settings,
    is_sweep_directory,
    resume_arguments,
    sweep_arguments,
)
from rl_runner.console import fail, interrupts_raise, stop_interrupted
from rl_runner.errors import describe_failure, describe_os_error, expected_errors
from rl_runner.sweep import SweepSummary, constant_keys, is_sweep_job, run_sweep_job, worker_count_override

PROGRAM = "rl-train"


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    from rl_runner.training import train

    if is_sweep_job():
        return run_sweep_job(cfg, train)
    try:
        summary = train(cfg)
    except ConfigError as error:
        fail(PROGRAM, str(error), code=2)
    except expected_errors() as error:
        fail(PROGRAM, describe_failure(error), code=1)
    shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items()}
    print(f"{PROGRAM}: done {shown}")
    if summary.get("interrupted"):
        print(f"{PROGRAM}: stopped by a signal; continue with: {PROGRAM} resume={summary['run_dir']}")
        sys.exit(130)
    return summary.get(cfg.agent.objective.metric)  # what a sweeper optimises


# Hydra's flags that take a value: the value is not an override (``--cfg job``, ``-p agent``)
FLAGS_WITH_VALUES = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
}
INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}  # --info [topic]
FLAGS_THAT_SKIP_CHECKS = {"--hydra-help", "--info", "-i", "--version", "--shell-completion", "-sc"}
FLAGS_THAT_PRINT = FLAGS_THAT_SKIP_CHECKS | {"--cfg", "-c"}  # Hydra prints and exits: nothing is trained


def split_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """Hydra's flags (with their values) and the overrides."""
    flags, overrides = [], []
    arguments = iter(argv)
    for argument in arguments:
        if not argument.startswith("-"):
            overrides.append(argument)
            continue
        flags.append(argument)
        takes_value = argument in FLAGS_WITH_VALUES or (argument in ("--info", "-i") and argv[-1:] != [argument])
        if takes_value and "=" not in argument:
            value = next(arguments, None)
            if value is not None and (argument not in ("--info", "-i") or value in INFO_TOPICS):
                flags.append(value)
            elif value is not None:
                overrides.append(value)
    return flags, overrides


def main(argv: list[str] | None = None) -> None:
    try:
        _main(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:  # a second Ctrl-C stops at once (a checkpoint being written is completed first)
        stop_interrupted(PROGRAM)
    except BrokenPipeError:  # rl-train --help | head
        sys.stderr.close()


def _main(argv: list[str]) -> None:
    flags, overrides = split_arguments(argv)
    if any(flag in ("--help", "-h") for flag in flags):
        try:
            print(help_text(overrides))
        except ConfigError as error:
            fail(PROGRAM, str(error))
        return
    checking = not any(flag.split("=")[0] in FLAGS_THAT_SKIP_CHECKS for flag in flags)
    if any(flag.split("=")[0] in ("--config-dir", "-cd") for flag in flags):
        fail(
            PROGRAM,
            "--config-dir is not saved with a run: name your config folder with 'hydra.searchpath=[file://DIR]'",
        )
    if checking:
        printing = any(flag.split("=")[0] in FLAGS_THAT_PRINT for flag in flags)  # --cfg job: checked, not run
        try:
            resume = [o for o in overrides if o.startswith("resume=")]
            if resume and resume[-1] != "resume=null":
                others = [o for o in overrides if o not in resume]
                target = resume[-1].split("=", 1)[1]
                if is_sweep_directory(target):  # run the sweep again: finished jobs are skipped, the rest resumed
                    flags, overrides = sorted(set(flags) | {"--multirun"}), sweep_arguments(target, others)
                else:
                    overrides = resume_arguments(target, others)
                    # Hydra would rewrite .hydra/ before the checkpoint loads; train() writes it once it has
                    overrides.append("hydra.output_subdir=null")
            multirun = any(f in ("-m", "--multirun") for f in flags)
            checked = check_overrides(overrides, sources=not printing)
            for warning in checked.warnings:
                print(f"{PROGRAM}: warning: {warning}", file=sys.stderr)
            overrides = checked.overrides
            hydra = hydra_settings(overrides)
            if not printing:
                check_writable(Path(str(hydra.sweep.dir if multirun else hydra.run.dir)))
            if multirun:  # job directories are named by what the sweep varies (rl_runner/sweep.py)
                overrides.append(
                    f"hydra.job.config.override_dirname.exclude_keys=[{','.join(constant_keys(overrides))}]"
                )
                overrides += worker_count_override(overrides, hydra)
        except ConfigError as error:
            fail(PROGRAM, str(error))
        except OSError as error:
            fail(PROGRAM, describe_os_error(error), code=1)
    sys.argv = [PROGRAM, *flags, *overrides] if checking else [PROGRAM, *argv]  # --info takes a topic after it
    if not any(flag.split("=")[0] in FLAGS_THAT_PRINT for flag in flags):  # it will train
        import rl_runner.training  # noqa: F401  (torch and the runners, still under the quiet Ctrl-C of the imports)

    interrupts_raise()  # from here a Ctrl-C raises; a run records it (interrupted) and the skeleton checkpoints
    SweepSummary.last = None
    try:
        _hydra_main()
    except ValueError as error:  # Hydra's own usage errors, e.g. -m together with --cfg
        fail(PROGRAM, str(error))
    except (Exception, KeyboardInterrupt):
        if not SweepSummary.end_stopped_launch():  # else a joblib worker ended badly after a stop signal: stopped
            raise
    outcome = SweepSummary.last
    if outcome is not None and outcome.stopped:
        fail(PROGRAM, f"sweep stopped by a signal; continue with: {PROGRAM} resume={outcome.directory}", code=130)
    if outcome is not None and not outcome.ok:
        sys.exit(1)


def help_text(overrides: list[str]) -> str:
    """``rl-train --help``: the usage, the config groups and their options, the config these overrides compose,
    and examples, as Hydra's help template lays them out; written here because Hydra's own help lists each
    group's options by composing the whole config repository again for each (seconds)."""
    cfg = compose_config([o for o in overrides if not o.startswith("resume=")], with_hydra=True)
    groups = "\n".join(f"{group}: {', '.join(options)}" for group, options in config_groups(overrides).items())
    template = str(cfg.hydra.help.template)
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    for name, text in (("$APP_CONFIG_GROUPS", groups + "\n"), ("$CONFIG", OmegaConf.to_yaml(job))):
        template = template.replace(name, text)
    return template.rstrip()


def check_writable(directory: Path) -> None:
    """Fail before Hydra starts logging into a directory that cannot be written (read-only, no permission)."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise OSError(error.errno, f"cannot write the run directory ({error.strerror})", str(directory)) from error


if __name__ == "__main__":
    main()
