"""Entry point: ``rl-train`` / ``python -m rl_runner.train``.

``train(cfg)`` does the work and is what tests call in-process; ``main()`` is the command line: it checks
the overrides before Hydra creates a run directory (one-line errors), turns ``resume=<run dir>`` into the
original run's overrides plus that directory, then hands over to ``@hydra.main``, whose task function
returns the agent's objective (``agent.objective.metric``) for sweepers.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rl_runner.checkpoint import CheckpointError
from rl_runner.config import CONF_DIR, ConfigError, check_config, resume_arguments, validate_overrides
from rl_runner.logging import TrainingDiverged
from rl_runner.runners import runner_function
from rl_runner.runners.base import RunContext
from rl_runner.runners.record import RunRecord
from rl_runner.runtime import resolve_device, seed_everything, set_matmul_precision

PROGRAM = "rl-train"
log = logging.getLogger(__name__)


def train(cfg: DictConfig, run_dir: Path | None = None) -> dict:
    """Train with a composed config; returns the run summary (step, metrics, sps, checkpoint path).

    ``run.json`` in the run directory records the outcome. A resume that fails before its checkpoint has
    loaded leaves it as it was."""
    check_config(cfg)  # again inside the job: a sweeper may have sampled these values
    resume_from = Path(cfg.resume).resolve() if cfg.resume else None
    if run_dir is None:
        run_dir = resume_from or Path(HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    set_matmul_precision(cfg.matmul_precision)
    seed_everything(cfg.seed)
    log.info("run directory %s, device %s", run_dir, device)
    record = RunRecord(run_dir, cfg)
    context = RunContext(run_dir=run_dir, device=device, resume_from=resume_from, record=record)
    try:
        summary = runner_function(cfg.agent.runner, "run")(cfg, context)
    except BaseException as error:
        if record.started or resume_from is None:
            status = {TrainingDiverged: "diverged", KeyboardInterrupt: "interrupted"}.get(type(error), "failed")
            record.end(status, error=f"{type(error).__name__}: {error}")
        raise
    record.end("interrupted" if summary["interrupted"] else "finished", summary)
    return summary


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        summary = train(cfg)
    except (ValueError, FileNotFoundError, CheckpointError, TrainingDiverged) as error:
        fail(str(error), code=1)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = [a for a in argv if a.startswith("-")]
    overrides = [a for a in argv if not a.startswith("-")]
    if not any(flag.split("=")[0] in FLAGS_THAT_SKIP_CHECKS for flag in flags):
        try:
            resume = [o for o in overrides if o.startswith("resume=")]
            if resume and resume[-1] != "resume=null":
                overrides = resume_arguments(resume[-1].split("=", 1)[1], [o for o in overrides if o not in resume])
                argv = flags + overrides
            validate_overrides(overrides)
        except ConfigError as error:
            fail(str(error))
    sys.argv = [PROGRAM, *argv]
    _hydra_main()


if __name__ == "__main__":
    main()
