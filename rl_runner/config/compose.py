"""Composing configs outside ``@hydra.main``: the command line's up-front check, a run's saved overrides
(``rl-train resume=``, ``rl-eval``) and the tests all go through here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from rl_runner.config import store  # noqa: F401  (the schemas and resolvers, before anything is composed)
from rl_runner.config.checks import check_config, config_warnings
from rl_runner.config.groups import CONF_DIR
from rl_runner.errors import ConfigError


def compose_config(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """The job config for these overrides, as ``rl-train`` would compose it (no checks beyond Hydra's); with
    ``with_hydra``, Hydra's own config under ``hydra`` as well. A config search path among the overrides
    (``hydra.searchpath=[file:///my/conf]``) is honoured."""
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(describe_error(error)) from error


def config_groups(overrides: list[str]) -> dict[str, list[str]]:
    """Each config group and its options, from this project's ``conf/`` and the folders of a config search path
    among the overrides (Hydra's own groups and the schemas left out)."""
    folders = [CONF_DIR]
    for override in overrides:
        if _is_searchpath(override):
            folders += [Path(match.group(1)) for match in SEARCHPATH_FOLDER.finditer(override)]
    groups: dict[str, set[str]] = {}
    for folder in folders:
        for option in folder.glob("*/*.yaml") if folder.is_dir() else []:
            if option.parent.name not in ("hydra", "schema"):
                groups.setdefault(option.parent.name, set()).add(option.stem)
    return {group: sorted(options) for group, options in sorted(groups.items())}


def saved_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides a run was made with (without ``resume=``), from its ``.hydra/``, with the config
    search path it was composed with (a user's own config folder): Hydra keeps that among its own overrides in
    ``hydra.yaml``; the runs whose ``.hydra/`` this project writes keep it in ``overrides.yaml``."""
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    if not saved_file.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no .hydra/overrides.yaml)")
    try:
        overrides = [str(o) for o in yaml.safe_load(saved_file.read_text()) or [] if not str(o).startswith("resume=")]
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{saved_file}: cannot be read ({_first_line(error)})") from error
    if not any(_is_searchpath(o) for o in overrides):
        overrides = searchpath_of_hydra_run(run_dir) + overrides
    return overrides


def searchpath_of_hydra_run(run_dir: Path) -> list[str]:
    """The ``hydra.searchpath=`` override of a run whose ``.hydra/`` Hydra wrote, if it had one."""
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    try:
        hydra_overrides = yaml.safe_load(hydra_file.read_text())["hydra"]["overrides"]["hydra"] or []
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return []
    return [str(o) for o in hydra_overrides if _is_searchpath(str(o))]


def run_config(run_dir: Path, overrides: list[str] = ()) -> DictConfig:
    """A run's config, re-composed from its saved overrides (so every schema check applies), plus new ones."""
    overrides = saved_overrides(run_dir) + list(overrides)
    try:
        cfg = compose_config(overrides)
    except ConfigError as error:
        raise ConfigError(f"{run_dir}: {error}") from error
    # rl-eval picks its own device; the runner's loading makes the env and reads the data, and refuses a mistake
    # in them in one line itself, so they are made and read once, not also here
    check_config(cfg, check_device=False, sources=False)
    return cfg


def resume_arguments(run_dir: str, overrides: list[str]) -> list[str]:
    """The original run's overrides, then the new ones, then the directory to continue in."""
    path = Path(run_dir).expanduser().resolve()
    saved = saved_overrides(path)
    return saved + overrides + [f"resume={_quoted(path)}", f"hydra.run.dir={_quoted(path)}"]


def _quoted(path: Path) -> str:
    """A path as a quoted override value (it may hold '=', ',' or spaces)."""
    escaped = str(path).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def is_sweep_directory(path: str) -> bool:
    """A directory ``rl-train -m`` made (it holds Hydra's ``multirun.yaml``)."""
    return (Path(path).expanduser() / "multirun.yaml").is_file()


# Hydra overrides of a sweep that are not carried over when it runs again: the directory is given anew, and the
# job-name keys are worked out again from the command line.
NOT_CARRIED_OVER = (
    "hydra.sweep.dir=",
    "hydra.mode=",
    "hydra.job.config.override_dirname.exclude_keys=",
    "hydra.output_subdir=",
)


def sweep_arguments(sweep_dir: str, overrides: list[str]) -> list[str]:
    """The command line of the sweep that made ``sweep_dir`` (launcher and sweeper choices included), then the new
    overrides, then that directory: running it again skips the finished jobs and resumes the others."""
    path = Path(sweep_dir).expanduser().resolve()
    try:
        saved = OmegaConf.load(path / "multirun.yaml").hydra.overrides
        hydra_overrides = [str(o) for o in saved.hydra if not str(o).startswith(NOT_CARRIED_OVER)]
        task_overrides = [str(o) for o in saved.task if not str(o).startswith("resume=")]
    except (OSError, OmegaConfBaseException, AttributeError, TypeError, yaml.YAMLError) as error:
        raise ConfigError(f"resume={sweep_dir}: cannot read its multirun.yaml ({_first_line(error)})") from error
    # Hydra would rewrite every job's .hydra/ before the job runs, a finished one's too: a job that trains writes
    # its own once it has started (rl_runner.training)
    again = [f"hydra.sweep.dir={_quoted(path)}", "hydra.output_subdir=null"]
    return [*hydra_overrides, *task_overrides, *overrides, *again]


# ------------------------------------------------------------------------- the command line's check
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
        parts.append(f"{lines[starts[0]]} {', '.join(options)}")
    return ": ".join(part.rstrip(".") for part in parts)


def _override_variants(overrides: list[str]) -> list[list[str]]:
    """Each sweep value once, the others at their first value: every value of a sweep gets checked."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = [_sweep_values(o) if o.is_sweep_override() else [o.input_line] for o in parsed]
    keys = [o.get_key_element() for o in parsed]

    def line(index: int, value: str) -> str:
        return value if not parsed[index].is_sweep_override() else f"{keys[index]}={value}"

    base = [line(i, values[0]) for i, values in enumerate(choices)]
    variants = [base]
    for i, values in enumerate(choices):
        for value in values[1:]:
            variants.append(base[:i] + [line(i, value)] + base[i + 1 :])
    return variants


def _sweep_values(override: Override) -> list[str]:
    """The values to check of a sweep: each listed one, or both ends of an Optuna ``interval(low, high)`` as the
    sampler draws them (floats, unless written ``int(interval(...))``)."""
    if override.is_interval_sweep():
        interval = override.value()
        return [repr(end) for end in (interval.start, interval.end)]
    return list(override.sweep_string_iterator())


def hydra_settings(overrides: list[str]) -> DictConfig:
    """Hydra's own config (``hydra.*``: run and sweep directories, launcher, sweeper) for these overrides."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=_override_variants(overrides)[0], return_hydra_config=True).hydra


def output_directory(overrides: list[str], multirun: bool) -> Path:
    """Where Hydra will put the run (or the sweep), for these overrides."""
    hydra = hydra_settings(overrides)
    return Path(str(hydra.sweep.dir if multirun else hydra.run.dir))


@dataclass(frozen=True)
class CheckedOverrides:
    """What the command line hands to Hydra once its overrides passed every check: the overrides, with integral
    floats of integer keys written as integers (``total_steps=2e5``) and relative paths made absolute (a config
    folder, ``data.path``: a run must find them from any directory later), and the warnings to print."""

    overrides: list[str]
    warnings: list[str]


def validate_overrides(overrides: list[str], sources: bool = True) -> list[str]:
    """Compose and check the config for these overrides (each sweep value too); raise ConfigError on any problem.
    Returns warnings: settings that are legal but probably not meant."""
    return check_overrides(overrides, sources).warnings


def check_overrides(overrides: list[str], sources: bool = True) -> CheckedOverrides:
    """``validate_overrides``, and the overrides to run with (``CheckedOverrides``). ``sources=False`` checks the
    values but makes no env and reads no data (``--cfg job``: it prints the config without importing an env)."""
    parser = OverridesParser.create()
    for override in overrides:  # grammar of each, hydra.* included, so the message can name it
        try:
            (parsed,) = parser.parse_overrides([override])
        except HydraException as error:
            raise ConfigError(
                f"cannot parse override {override!r}: {_first_line(error)} (quote values with '=' or ',')"
            ) from error
        key = parsed.get_key_element()
        if override.startswith("+hydra.searchpath"):
            raise ConfigError(f"{override}: Hydra reads the search path only as hydra.searchpath=[...] (drop the +)")
        if (CONF_DIR / key).is_dir() and parsed.value() is None and not parsed.is_delete():
            raise ConfigError(f"{override}: a config group cannot be set to null; remove it with ~{key}")
    overrides = [_absolute_searchpath(o) for o in overrides]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            overrides = _integers_as_integers(overrides)
            own = _own(overrides)
            base, searched = compose_with_search_space(own, overrides)
            relative_data = _relative_data_path(base, own)
            if relative_data is not None:  # in place of a sweep over files, else after what the user typed
                swept = [o for o in own if o.startswith("data.path=") and "," in relative_data]
                overrides = [o for o in overrides if o not in swept] + [relative_data]
                own = [o for o in own if o not in swept] + [relative_data]
                base, searched = compose_with_search_space(own, overrides)
            swept = own + searched
            warnings: list[str] = []
            for index, variant in enumerate(_override_variants(swept)):
                # without a search space, the first variant is the configuration just composed
                cfg = base if index == 0 and not searched else compose(config_name="config", overrides=variant)
                check_config(cfg, sources=sources)
                warnings += [w for w in config_warnings(cfg) if w not in warnings]
    except ConfigError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        raise ConfigError(_composition_problem(error, overrides)) from error
    return CheckedOverrides(overrides, warnings)


def _own(overrides: list[str]) -> list[str]:
    """The run's own overrides: all but Hydra's, except the config search path, which every composition needs."""
    return [o for o in overrides if not o.lstrip("+~").startswith("hydra") or _is_searchpath(o)]


def _is_searchpath(override: str) -> bool:
    return override.lstrip("+").startswith("hydra.searchpath=")


SEARCHPATH_FOLDER = re.compile(r"file://([^,\]\s'\"]+)")


def _absolute_searchpath(override: str) -> str:
    """``hydra.searchpath=[file://my/conf]`` with its relative folders made absolute: the run saves the search path,
    and ``rl-eval`` or a resume from another directory must find the same folders."""
    if not _is_searchpath(override):
        return override
    key, value = override.split("=", 1)

    def absolute(match: re.Match) -> str:
        return "file://" + str(Path(match.group(1)).expanduser().resolve())

    return f"{key}={SEARCHPATH_FOLDER.sub(absolute, value)}"


INTEGRAL_FLOAT = re.compile(r"(?<![\w.])[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)(?![\w.])|(?<![\w.])[+-]?\d+\.0*(?![\w.])")


def _integers_as_integers(overrides: list[str]) -> list[str]:
    """``total_steps=2e5`` (or ``1e6``, ``3.0``) for an integer key, written as the integer it is: OmegaConf would
    refuse the float. Only overrides holding such a number are looked at, one composition each, and only those
    whose key turns out to be an integer are rewritten."""

    def integral_floats(override: str) -> list[re.Match]:
        if override.startswith(("hydra.", "~")) or "=" not in override:
            return []
        return [m for m in INTEGRAL_FLOAT.finditer(override.split("=", 1)[1]) if float(m.group()).is_integer()]

    result = list(overrides)
    for index, override in enumerate(overrides):
        numbers = integral_floats(override)
        if not numbers:
            continue
        key, value = override.split("=", 1)
        # this one float among the others without theirs: a refusal is then about this key alone
        others = [o for o in result if o is not override and not integral_floats(o)]
        trial = [*others, f"{key}={numbers[0].group()}"]
        try:
            compose(config_name="config", overrides=_override_variants(_own(trial))[0])
        except (HydraException, OmegaConfBaseException) as error:
            if "could not be converted to Integer" not in describe_error(error):
                continue  # some other problem: the checks that follow name it
            written = INTEGRAL_FLOAT.sub(
                lambda m: str(int(float(m.group()))) if float(m.group()).is_integer() else m.group(), value
            )
            result[index] = f"{key}={written}"
    return result


def _relative_data_path(cfg: DictConfig, own: list[str]) -> str | None:
    """An override that makes a relative ``data.path`` absolute (from the command line or from a YAML default):
    ``rl-eval`` and ``rl-train resume=`` read the run's saved overrides from any directory."""
    path = OmegaConf.select(cfg, "data.path", throw_on_missing=False)
    if not isinstance(path, str) or path in ("", MISSING) or Path(path).expanduser().is_absolute():
        return None
    swept = [
        o for o in own if o.startswith("data.path=") and OverridesParser.create().parse_override(o).is_sweep_override()
    ]
    if swept:  # a sweep over files: each of them, absolute
        files = OverridesParser.create().parse_override(swept[-1]).sweep_string_iterator()
        return "data.path=" + ",".join(_quoted(Path(file).expanduser().resolve()) for file in files)
    return f"data.path={_quoted(Path(path).expanduser().resolve())}"


def _composition_problem(error: BaseException, overrides: list[str]) -> str:
    """One line for a config that does not compose, naming what to change."""
    message = describe_error(error)
    if "could not be converted to Integer" in message and any("interval(" in o for o in overrides):
        message += " (interval() samples floats: write int(interval(low, high)) for an integer key)"
    cause = error.__cause__ or error.__context__
    key = getattr(cause, "full_key", None) or getattr(error, "full_key", None) or ""
    new_key = re.search(r"Could not override '((?:env\.kwargs|env\.wrappers)\.[^']+)'.*is not in struct", message)
    if new_key:  # a free-form table (an env's kwargs, its wrappers) takes new keys with +
        return f"{new_key.group(1)} is not set by this env group: add it with +{new_key.group(1)}=..."
    net = [o for o in overrides if o.startswith("net=")]
    if str(key).startswith("net.") and net:  # a preset's net keys on a net of another kind: which nets fit
        try:
            agent = compose_config([o for o in _own(overrides) if o not in net]).agent
        except ConfigError:
            return message
        chosen = net[-1].split("=", 1)[1]
        if chosen not in list(agent.nets):
            return f"agent={agent.name} cannot build {net[-1]}; it builds {', '.join(agent.nets)}"
        return f"{message} ({net[-1]} has no key {str(key).split('.', 1)[1]!r}, which a preset or override sets)"
    return message


def compose_with_search_space(own: list[str], overrides: list[str]) -> tuple[DictConfig, list[str]]:
    """The config of the first variant of ``own`` (the run's own overrides), and the Optuna sweeper's search space
    (``hydra.sweeper.params``, from ``conf/search/``) as overrides, less the keys the command line fixes (the
    sweeper leaves those out too): one composition, with the Hydra overrides that choose the sweeper."""
    parser = OverridesParser.create()
    hydra_overrides = [o for o in overrides if o not in own and not parser.parse_override(o).is_sweep_override()]
    try:
        cfg = compose(
            config_name="config", overrides=_override_variants(own)[0] + hydra_overrides, return_hydra_config=True
        )
    except AssertionError as error:  # OmegaConf's way of saying that hydra.sweeper has no such key
        params = [o for o in hydra_overrides if o.startswith("hydra.sweeper.params")]
        if params:
            raise ConfigError(f"{params[0]}: a search space needs the Optuna sweeper (search=<agent>)") from error
        raise ConfigError(f"cannot apply {' '.join(hydra_overrides)}") from error
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    fixed = {o.split("=", 1)[0].lstrip("+~") for o in own}
    with open_dict(cfg):
        del cfg["hydra"]  # the job's config, as compose() without return_hydra_config gives it
    return cfg, [f"{key}={value}" for key, value in params.items() if key not in fixed]
