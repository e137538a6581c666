"""Entry point: ``rl-train`` / ``python -m rl_runner.train``.

``train(cfg)`` does the work and is what tests call in-process; ``main()`` is the command line: it checks
the overrides before Hydra creates a run directory (one-line errors), turns ``resume=<run dir>`` into the
original run's overrides plus that directory, then hands over to ``@hydra.main``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

import rl_runner.config  # noqa: F401  (registers the schemas with Hydra's ConfigStore)
from rl_runner.checkpoint import CheckpointError
from rl_runner.runners import runner_function
from rl_runner.runners.off_policy import TrainingDiverged
from rl_runner.runtime import resolve_device, seed_everything, set_matmul_precision

CONF_DIR = Path(__file__).resolve().parent / "conf"  # a link to the top-level conf/ in the source tree
PROGRAM = "rl-train"
log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A bad command line or an impossible combination; reported as one line."""


def check_compatibility(cfg: DictConfig) -> None:
    supported = list(cfg.agent.action_spaces)
    if cfg.env.action_space not in supported:
        names = ", ".join(space.value for space in supported)
        raise ConfigError(
            f"agent={cfg.agent.name} cannot run on env={cfg.env.id}: it has {cfg.env.action_space.value} actions "
            f"and {cfg.agent.name} supports only {names} actions"
        )
    resolve_device(cfg.device)  # raises on a malformed or unavailable device


def train(cfg: DictConfig, run_dir: Path | None = None) -> dict:
    """Train with a composed config; returns the run summary (step, returns, sps, checkpoint path)."""
    check_compatibility(cfg)
    resume_from = Path(cfg.resume).resolve() if cfg.resume else None
    if run_dir is None:
        run_dir = resume_from or Path(HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    set_matmul_precision(cfg.matmul_precision)
    seed_everything(cfg.seed)
    log.info("run directory %s, device %s", run_dir, device)
    return runner_function(cfg.agent.runner)(cfg, run_dir, device, resume_from)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
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


def fail(message: str, code: int = 2) -> None:
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)
    sys.exit(code)


# ------------------------------------------------------------------------- command line checks
def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def describe_error(error: BaseException) -> str:
    """Hydra and OmegaConf errors span several lines; keep the parts that name the problem."""
    parts = [_first_line(error)]
    cause = error.__cause__ or error.__context__
    if cause is not None and _first_line(cause) not in parts[0]:
        parts.append(_first_line(cause))
    key = getattr(cause, "full_key", None) or getattr(error, "full_key", None)
    if key and key not in " ".join(parts):
        parts.append(f"key: {key}")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("Available options")]
    if starts:  # "Available options in 'agent':" followed by one option per line
        options = [line for line in lines[starts[0] + 1 :] if " " not in line]
        parts.append(f"{lines[starts[0]]} {', '.join(o for o in options if not o.startswith('base_'))}")
    return ": ".join(part.rstrip(".") for part in parts)


def _override_variants(overrides: list[str]) -> list[list[str]]:
    """Each sweep value once, the others at their first value: every value of a sweep gets checked."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.input_line] for o in parsed]
    keys = [o.get_key_element() for o in parsed]

    def line(index: int, value: str) -> str:
        return value if not parsed[index].is_sweep_override() else f"{keys[index]}={value}"

    base = [line(i, values[0]) for i, values in enumerate(choices)]
    variants = [base]
    for i, values in enumerate(choices):
        for value in values[1:]:
            variants.append(base[:i] + [line(i, value)] + base[i + 1 :])
    return variants


def validate_overrides(overrides: list[str]) -> None:
    """Compose the config for these overrides (each sweep value too); raise ConfigError on any problem."""
    from hydra import compose, initialize_config_dir

    parser = OverridesParser.create()
    for override in overrides:  # grammar of each, hydra.* included, so the message can name it
        try:
            parser.parse_overrides([override])
        except HydraException as error:
            raise ConfigError(
                f"cannot parse override {override!r}: {_first_line(error)} (quote values with '=' or ',')"
            ) from error
    own = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    try:
        variants = _override_variants(own)
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            for variant in variants:
                check_compatibility(compose(config_name="config", overrides=variant))
    except ConfigError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        raise ConfigError(describe_error(error)) from error


def saved_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides a run was made with (without ``resume=``), from its ``.hydra/``."""
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    if not saved_file.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no .hydra/overrides.yaml)")
    return [o for o in yaml.safe_load(saved_file.read_text()) or [] if not o.startswith("resume=")]


def resume_arguments(run_dir: str, overrides: list[str]) -> list[str]:
    """The original run's overrides, then the new ones, then the directory to continue in."""
    path = Path(run_dir).expanduser().resolve()
    saved = saved_overrides(path)
    quoted = str(path).replace("\\", "\\\\").replace("'", "\\'")
    return saved + overrides + [f"resume='{quoted}'", f"hydra.run.dir='{quoted}'"]


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
