"""Entry point: ``rl-train`` / ``python -m rl_runner.train``.

``train(cfg)`` does the work and is what tests call in-process; ``main()`` is the command line: it checks
the overrides before Hydra creates a run directory (one-line errors), turns ``resume=<run dir>`` into the
original run's overrides plus that directory, then hands over to ``@hydra.main``, whose task function
returns the agent's objective (``agent.objective.metric``) for sweepers.
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m rl_runner.train`: a Ctrl-C during the imports below is one line
    from rl_runner.cli import exit_quietly_on_interrupt

    exit_quietly_on_interrupt("rl-train")

import logging
import os
import sys
import tempfile
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rl_runner.checkpoint import CheckpointError
from rl_runner.cli import describe_os_error
from rl_runner.config import (
    CONF_DIR,
    ConfigError,
    check_config,
    output_directory,
    resume_arguments,
    validate_overrides,
)
from rl_runner.logging import TrainingDiverged
from rl_runner.runners import runner_function
from rl_runner.runners.base import RunContext
from rl_runner.runners.record import RunRecord
from rl_runner.runtime import RunLock, RunLocked, resolve_device, seed_everything, set_matmul_precision

PROGRAM = "rl-train"
log = logging.getLogger(__name__)


def train(cfg: DictConfig, run_dir: Path | None = None) -> dict:
    """Train with a composed config; returns the run summary (step, metrics, sps, checkpoint path).

    One process at a time per run directory. ``run.json`` records the outcome; a resume that fails before its
    checkpoint has loaded leaves the run as it was (``run.json`` and, from the command line, ``.hydra/``)."""
    check_config(cfg)  # again inside the job: a sweeper may have sampled these values
    resume_from = Path(cfg.resume).resolve() if cfg.resume else None
    if run_dir is None:
        run_dir = resume_from or Path(HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        device = resolve_device(cfg.device)
        set_matmul_precision(cfg.matmul_precision)
        seed_everything(cfg.seed)
        log.info("run directory %s, device %s", run_dir, device)
        record = RunRecord(run_dir, cfg)
        context = RunContext(run_dir=run_dir, device=device, resume_from=resume_from)
        context.on_start.append(lambda: record.start(str(device)))
        if resume_from is not None and HydraConfig.initialized():
            context.on_start.append(lambda: save_job_config(run_dir, cfg))
        try:
            summary = runner_function(cfg.agent.runner, "run")(cfg, context)
        except BaseException as error:
            if record.started or resume_from is None:
                record.end(outcome(error), error=f"{type(error).__name__}: {error}")
            raise
        record.end("interrupted" if summary["interrupted"] else "finished", summary)
    return summary


def outcome(error: BaseException) -> str:
    """run.json's status for a run that ended with ``error``."""
    if isinstance(error, TrainingDiverged):
        return "diverged"
    if isinstance(error, KeyboardInterrupt) or (isinstance(error, SystemExit) and error.code == 130):
        return "interrupted"  # a second Ctrl-C, or one while the run was being set up (rl_runner.cli)
    return "failed"


def save_job_config(run_dir: Path, cfg: DictConfig) -> None:
    """What Hydra writes to ``.hydra/`` for a new run, written for a resume only once its checkpoint has loaded
    (``main`` tells Hydra not to write it), so a resume with overrides that do not fit changes nothing."""
    hydra_dir = run_dir / ".hydra"
    for name, content in (
        ("overrides.yaml", OmegaConf.create(list(HydraConfig.get().overrides.task))),
        ("config.yaml", cfg),
    ):
        temporary = hydra_dir / f".{name}.tmp"
        OmegaConf.save(content, temporary)
        os.replace(temporary, hydra_dir / name)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        summary = train(cfg)
    except ConfigError as error:
        fail(str(error), code=2)
    except (ValueError, FileNotFoundError, CheckpointError, TrainingDiverged, RunLocked) as error:
        fail(str(error), code=1)
    except OSError as error:  # a full disk or a directory that cannot be written: the file and the cause
        fail(describe_os_error(error), code=1)
    shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items()}
    print(f"{PROGRAM}: done {shown}")
    if summary.get("interrupted"):
        print(
            f"{PROGRAM}: stopped by a signal; continue with: {PROGRAM} resume={Path(summary['checkpoint']).parents[1]}"
        )
        sys.exit(130)
    return summary.get(cfg.agent.objective.metric)  # what a sweeper optimises


def fail(message: str, code: int = 2) -> None:
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)
    sys.exit(code)


FLAGS_THAT_SKIP_CHECKS = {
    "--help",
    "-h",
    "--hydra-help",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--version",
    "--shell-completion",
    "-sc",
}


def main(argv: list[str] | None = None) -> None:
    try:
        _main(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:  # a second Ctrl-C stops at once (a checkpoint being written is completed first)
        fail("interrupted", code=130)


def _main(argv: list[str]) -> None:
    flags = [a for a in argv if a.startswith("-")]
    overrides = [a for a in argv if not a.startswith("-")]
    if not any(flag.split("=")[0] in FLAGS_THAT_SKIP_CHECKS for flag in flags):
        try:
            resume = [o for o in overrides if o.startswith("resume=")]
            if resume and resume[-1] != "resume=null":
                overrides = resume_arguments(resume[-1].split("=", 1)[1], [o for o in overrides if o not in resume])
                # Hydra would rewrite .hydra/ before the checkpoint loads; train() writes it once it has
                overrides.append("hydra.output_subdir=null")
                argv = flags + overrides
            for warning in validate_overrides(overrides):
                print(f"{PROGRAM}: warning: {warning}", file=sys.stderr)
            check_writable(output_directory(overrides, multirun=any(f in ("-m", "--multirun") for f in flags)))
        except ConfigError as error:
            fail(str(error))
        except OSError as error:
            fail(describe_os_error(error), code=1)
    sys.argv = [PROGRAM, *argv]
    _hydra_main()


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
    from rl_runner.cli import interrupts_raise

    interrupts_raise()
    main()
