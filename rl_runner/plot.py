"""``rl-plot DIR... [--tag TAG] [--band ci|std|minmax] [--smooth N] [--threshold X] [--minimize] [--out DIR]
[--tensorboard]``: the results of many runs at a glance.

Finds every run under the given directories (a run directory is one whose ``tb/`` holds TensorBoard event
files, so a sweep, a job with ``seed_N/`` runs inside or a single run all work), groups the runs by the config
keys that differ between them (seeds are what a group averages over), and writes:

* ``<tag>.png``: per group, the mean curve over seeds with a band (95% bootstrap CI of the mean, the standard
  deviation or the range), x = steps;
* ``results.md`` and ``results.csv``: per group the final value with a 95% bootstrap CI, the interquartile mean,
  the best value and, with ``--threshold``, the steps each seed took to reach it;
* with ``--tensorboard``, ``tb/<group>/``: the seed-averaged curves as TensorBoard runs.

A run that cannot be shown (it logged no events, as a sweep's job that failed at its start, none of the tag, or
nothing readable) is left out with a warning naming it, its ``run.json`` status and error and what it lacks, and
``results.md`` lists it under "Left out".

Scalars are read as TensorBoard shows them: a resumed run's later event files purge the steps the previous
attempt logged after its last checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from omegaconf import OmegaConf

from rl_runner.console import fail
from rl_runner.dotted import flatten_container
from rl_runner.errors import describe_os_error
from rl_runner.files import read_json
from rl_runner.logging import read_scalars
from rl_runner.runners.record import RECORD_NAME, read_record
from rl_runner.sweep import LAUNCH_FILE, short_names

PROGRAM = "rl-plot"
DEFAULT_TAG = "eval/return_mean"
FALLBACK_TAG = "train/episode_return"  # every env run logs it, even one that never evaluated
BANDS = ("ci", "std", "minmax")
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0  # the same directories always give the same table
TABLE_RESAMPLES = 10_000
CURVE_RESAMPLES = 2_000  # per step of every curve: fewer, the band is a picture

# Config keys that never define a setting, so runs differing only in them belong to one group: the seed is what
# a group averages over, and the rest say where, how fast or how verbosely a run ran, not what it learned.
# ``seeds`` (runs per job) is bookkeeping too. Keys that change what is measured or learned (``total_steps``,
# ``eval.episodes``, ``matmul_precision``, ``stop.at_objective``, ``stop.after_minutes``) stay: they do define a
# setting.
IGNORED_KEYS = frozenset({"seed", "seeds", "resume", "device", "progress", "threads", "eval.video"})
IGNORED_PREFIXES = ("hydra.", "checkpoint.", "log.")


class PlotError(ValueError):
    """A problem with the command line or the runs that ends rl-plot with one line and exit code 2."""


def warn(message: str) -> None:
    print(f"{PROGRAM}: warning: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------------------- finding runs
@dataclass
class Run:
    """One run directory: its scalars, its flattened config (``None`` without ``.hydra/config.yaml``) and its
    ``run.json`` (empty when it has none)."""

    path: Path
    scalars: dict[str, list[tuple[int, float]]]
    config: dict[str, Any] | None
    record: dict[str, Any]

    @property
    def seed(self) -> int | None:
        seed = self.record.get("seed", (self.config or {}).get("seed"))
        return seed if isinstance(seed, int) else None

    @property
    def status(self) -> str:
        return str(self.record.get("status", "unknown"))

    @property
    def objective(self) -> tuple[str | None, str | None]:
        """The metric the run optimised and its direction (``max`` or ``min``), where the run says."""
        objective = self.record.get("objective") or {}
        config = self.config or {}
        metric = objective.get("metric", config.get("agent.objective.metric"))
        direction = objective.get("direction", config.get("agent.objective.direction"))
        return metric, direction


@dataclass
class Skipped:
    """A run rl-plot leaves out: ``name`` (its path below the directory it was found under), what the plot lacks
    (``reason``), and how it ended by its ``run.json`` (``status``: ``failed``, ``diverged``, ``interrupted``, ...;
    ``unknown`` without one, ``not started`` for a sweep's job that never began) with its ``error``."""

    path: Path
    name: str
    reason: str
    status: str
    error: str | None = None

    def why(self) -> str:
        ended = ""
        if self.status not in ("finished", "unknown"):  # how it ended is the news, when it did not finish
            ended = f"{self.status} ({self.error}), " if self.error else f"{self.status}, "
        return ended + self.reason


def leave_out(skipped: list[Skipped] | None, run_dir: Path, reason: str, root: Path | None = None) -> None:
    """Warn that ``run_dir`` is left out and why, and add it to ``skipped`` (for the table) if given."""
    record = read_record(run_dir)
    status, error = str(record.get("status", "unknown")), record.get("error")
    if not record and (run_dir / ".hydra").is_dir() and not _event_files(run_dir / "tb"):
        # a sweep's job that ended before its run began (its launch marker has the error), or never began
        marker = read_json(run_dir / LAUNCH_FILE)
        status, error = ("failed", marker["error"]) if marker.get("error") else ("not started", None)
    if root is None or run_dir == root or root not in run_dir.parents:
        name = str(run_dir)
    else:
        name = str(run_dir.relative_to(root))
    entry = Skipped(run_dir, name, reason, status, " ".join(str(error).split()) if error else None)
    warn(f"{run_dir}: {entry.why()}; skipped")
    if skipped is not None:
        skipped.append(entry)


def find_runs(
    dirs: Sequence[Path | str], exclude: Path | None = None, skipped: list[Skipped] | None = None
) -> list[Run]:
    """Every run under ``dirs`` (each a run directory or any directory above runs), read; ``exclude`` (the
    output directory) is not searched. Runs that cannot be shown (no event files, none readable) are skipped with
    a warning, and added to ``skipped`` if given; no runs at all is an error."""
    roots = [Path(d) for d in dirs]
    for root in roots:
        if not root.exists():
            raise PlotError(f"no such directory: {root}")
        if not root.is_dir():
            raise PlotError(f"not a directory: {root}")
    seen: set[Path] = set()
    runs = []
    for root in roots:
        for run_dir, logged in _run_dirs(root, exclude):
            if run_dir.resolve() in seen:  # overlapping arguments (a sweep and one of its jobs)
                continue
            seen.add(run_dir.resolve())
            if not logged:
                leave_out(skipped, run_dir, "no event files", root)
                continue
            run = read_run(run_dir, skipped, root)
            if run is not None:
                runs.append(run)
    if not runs:
        raise PlotError(f"no runs found under {', '.join(map(str, roots))} (a run directory has tb/ event files)")
    return runs


def _run_dirs(root: Path, exclude: Path | None) -> list[tuple[Path, bool]]:
    """The runs under ``root``, each with whether it has event files. A run that logged none is one with a
    ``run.json`` (a job that failed at its start), or a sweep's job directory (``.hydra/``) with no run below it
    (one that never began); a job of several seeds keeps its runs in ``seed_N/`` below it."""
    excluded = exclude.resolve() if exclude is not None else None
    found: list[tuple[Path, bool]] = []
    quiet: list[Path] = []  # no event files: a run only if no run is below it (a job's seed_N/ runs are)
    for directory, subdirs, _ in os.walk(root):
        path = Path(directory)
        if excluded is not None and path.resolve() == excluded:
            subdirs.clear()
            continue
        if _event_files(path / "tb"):
            found.append((path, True))
        elif (path / RECORD_NAME).is_file() or (path / ".hydra").is_dir():
            quiet.append(path)
        # what a run keeps besides nested runs: large, and never holding a run
        subdirs[:] = sorted(d for d in subdirs if d not in ("tb", "checkpoints", ".hydra"))
    below = [path for path, _ in found] + quiet
    found += [(path, False) for path in quiet if not any(path in other.parents for other in below)]
    return sorted(found, key=lambda item: item[0].parts)  # the order os.walk found them in


def _event_files(tb_dir: Path) -> list[Path]:
    return sorted(p for p in tb_dir.glob("events.out.tfevents.*") if p.is_file()) if tb_dir.is_dir() else []


def read_run(run_dir: Path, skipped: list[Skipped] | None = None, root: Path | None = None) -> Run | None:
    """A run's scalars, config and record; ``None`` (with a warning, and added to ``skipped`` if given) when none
    of its scalars can be read."""
    for events in _event_files(run_dir / "tb"):
        if events.stat().st_size and not _readable(events):
            warn(f"{events}: not a readable TensorBoard event file; skipped")
    try:
        with _quiet_tensorboard():
            scalars = read_scalars(run_dir / "tb")
    except Exception as error:  # tensorboard raises all sorts on damaged files; one bad run must not stop a plot
        leave_out(skipped, run_dir, f"cannot read its events ({type(error).__name__}: {error})", root)
        return None
    if not scalars:
        leave_out(skipped, run_dir, "no scalars in its event files (empty or corrupt)", root)
        return None
    return Run(run_dir, scalars, read_config(run_dir), read_record(run_dir))


def _readable(events: Path) -> bool:
    """Whether the file's first record is an event: tensorboard skips damaged files without a word."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    try:
        with _quiet_tensorboard():
            return next(iter(EventFileLoader(str(events)).Load()), None) is not None
    except Exception:
        return False


@contextmanager
def _quiet_tensorboard() -> Iterator[None]:
    """Silence tensorboard's own logging (a resumed run's purge is reported as a warning) while it reads."""
    logger = logging.getLogger("tensorboard")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """The flattened ``.hydra/config.yaml`` of a run, or of the job holding it (a job's ``seed_N/`` runs may
    have none of their own); ``None`` when neither has one."""
    for directory in (run_dir, run_dir.parent):
        path = directory / ".hydra" / "config.yaml"
        if path.is_file():
            try:
                return flatten(path)
            except Exception as error:  # a damaged YAML file: the run still has curves worth seeing
                warn(f"{path}: cannot read it ({error}); the run is grouped by its directory name")
                return None
    return None


def flatten(config_file: Path) -> dict[str, Any]:
    """A config file as ``{dotted key: value}``, lists as strings (as ``rl_runner.dotted.flatten_config``)."""
    import rl_runner.config.store  # noqa: F401  (registers the resolvers a run's config may use, e.g. ${sum:...})

    cfg = OmegaConf.load(config_file)
    try:
        container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    except Exception:  # an interpolation that cannot be resolved here (an unset variable): compare it as written
        container = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    return flatten_container(container)


# ------------------------------------------------------------------------------------------- grouping
def _ignored(key: str) -> bool:
    return key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES)


def differing_keys(runs: Sequence[Run]) -> list[str]:
    """The config keys (in config order) whose values are not the same in every run that has a config; a key
    some runs lack differs too. Bookkeeping keys (``IGNORED_KEYS``) never count."""
    configs = [run.config for run in runs if run.config is not None]
    keys = list(dict.fromkeys(key for config in configs for key in config if not _ignored(key)))
    missing = object()
    return [key for key in keys if len({_hashable(config.get(key, missing)) for config in configs}) > 1]


def _hashable(value: Any) -> Any:
    return (type(value).__name__, value) if isinstance(value, (bool, type(None))) else value


def format_value(value: Any) -> str:
    """A config value as written on an rl-train command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value) if isinstance(value, float) else str(value)


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs grouped by the settings that differ between them, labelled like ``tau=0.005 hidden=64`` (``all
    runs`` when nothing differs); a run without a config is a group of its own, named after its directory."""
    keys = differing_keys(runs)
    names = short_names(keys)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.config is None:
            warn(f"{run.path}: no .hydra/config.yaml; grouped by its directory name")
            label = run.path.name
        elif keys:
            label = " ".join(f"{names[key]}={format_value(run.config[key])}" for key in keys if key in run.config)
        else:
            label = "all runs"
        groups.setdefault(label or "(no differing keys)", []).append(run)
    return groups


# ------------------------------------------------------------------------------------------- choosing the tag
def choose_tag(runs: Sequence[Run], tag: str | None) -> str:
    """The tag to show: ``tag`` if any run logged it; without one, ``DEFAULT_TAG``, or ``FALLBACK_TAG`` (with a
    note) when no run evaluated. An error names the tags there are."""
    wanted = tag or DEFAULT_TAG
    if any(wanted in run.scalars for run in runs):
        return wanted
    if tag is None and any(FALLBACK_TAG in run.scalars for run in runs):
        print(f"{PROGRAM}: note: no run logged {DEFAULT_TAG}; showing {FALLBACK_TAG}", file=sys.stderr)
        return FALLBACK_TAG
    tried = wanted if tag is not None else f"{DEFAULT_TAG} or {FALLBACK_TAG}"
    available = sorted({name for run in runs for name in run.scalars})
    raise PlotError(f"no run logged {tried}; tags: {', '.join(available)}")


def with_tag(
    groups: dict[str, list[Run]], tag: str, skipped: list[Skipped] | None = None, roots: Sequence[Path] = ()
) -> dict[str, list[Run]]:
    """The groups with only the runs that logged finite values of ``tag`` (the others named in a warning, and
    added to ``skipped`` if given); empty groups go."""
    kept = {}
    for label, runs in groups.items():
        logged = []
        for run in runs:
            root = next((root for root in roots if root == run.path or root in run.path.parents), None)
            if tag not in run.scalars:
                leave_out(skipped, run.path, f"no {tag}", root)
            elif not len(series(run, tag)[0]):  # a run that diverged at once logs only NaN
                leave_out(skipped, run.path, f"no finite {tag}", root)
            else:
                logged.append(run)
        if logged:
            kept[label] = logged
    return kept


def objective_direction(runs: Sequence[Run], tag: str) -> str:
    """``min`` when the runs that name ``tag`` as their objective all minimise it, else ``max``."""
    directions = {direction for metric, direction in (run.objective for run in runs) if metric == tag}
    return "min" if directions == {"min"} else "max"


# ------------------------------------------------------------------------------------------- curves
def series(run: Run, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """A run's points of ``tag`` as increasing steps and values: points logged at one step (episodes of
    parallel envs ending together) are averaged, non-finite ones dropped."""
    points = np.array(run.scalars.get(tag, []), dtype=float).reshape(-1, 2)
    points = points[np.isfinite(points[:, 1])]
    steps, inverse = np.unique(points[:, 0], return_inverse=True)
    values = np.bincount(inverse, weights=points[:, 1], minlength=len(steps)) / np.bincount(inverse)
    return steps, values


def common_grid(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Several runs' (steps, values) on one grid, as (steps, values [runs, steps]). Identical grids (evaluations
    at fixed steps) are kept as logged; otherwise the union of the steps where every run has data (from the
    latest first step to the earliest last one: nothing is extrapolated), interpolated linearly."""
    first_steps = curves[0][0]
    if all(np.array_equal(steps, first_steps) for steps, _ in curves):
        return first_steps, np.stack([values for _, values in curves])
    start = max(steps[0] for steps, _ in curves)
    end = min(steps[-1] for steps, _ in curves)
    grid = np.unique(np.concatenate([steps for steps, _ in curves]))
    grid = grid[(grid >= start) & (grid <= end)]
    return grid, np.stack([np.interp(grid, steps, values) for steps, values in curves])


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points along the last axis (fewer at the start, so no point is lost and
    none looks ahead)."""
    if window <= 1:
        return values
    sums = np.cumsum(values, axis=-1)
    shifted = np.concatenate([np.zeros_like(sums[..., :window]), sums[..., :-window]], axis=-1)
    counts = np.minimum(np.arange(1, values.shape[-1] + 1), window)
    return (sums - shifted) / counts


def bootstrap_ci(
    values: np.ndarray, confidence: float = CONFIDENCE, resamples: int = TABLE_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over the first axis (seeds) of ``values``, for every column."""
    values = np.asarray(values, dtype=float)
    runs = values.shape[0]
    rng = np.random.default_rng(seed)
    # each resample as how often it draws each seed: a [resamples, seeds] matrix product, not copies of the data
    weights = rng.multinomial(runs, np.full(runs, 1 / runs), size=resamples) / runs
    flat = values.reshape(runs, -1)
    quantiles = [(1 - confidence) / 2, (1 + confidence) / 2]
    lower, upper = np.empty(flat.shape[1]), np.empty(flat.shape[1])
    chunk = max(1, 4_000_000 // resamples)  # a few tens of MB at a time however long the curves
    for start in range(0, flat.shape[1], chunk):
        means = weights @ flat[:, start : start + chunk]
        lower[start : start + chunk], upper[start : start + chunk] = np.quantile(means, quantiles, axis=0)
    return lower.reshape(values.shape[1:]), upper.reshape(values.shape[1:])


@dataclass
class Curve:
    """A group's runs on a common grid, their mean and a band around it."""

    label: str
    steps: np.ndarray
    values: np.ndarray  # [runs, steps]
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @property
    def runs(self) -> int:
        return self.values.shape[0]


def aggregate(groups: dict[str, list[Run]], tag: str, band: str = "ci", smooth: int = 1) -> dict[str, Curve]:
    """Each group's mean curve of ``tag`` with a ``band`` (``ci``: 95% bootstrap CI of the mean, ``std``: one
    standard deviation either side, ``minmax``: the range over seeds), each run smoothed over ``smooth`` points
    first."""
    if band not in BANDS:
        raise PlotError(f"unknown band {band!r}; choose from {', '.join(BANDS)}")
    curves = {}
    for label, runs in groups.items():
        logged = [series(run, tag) for run in runs if tag in run.scalars]
        logged = [(steps, values) for steps, values in logged if len(steps)]
        if not logged:
            continue
        steps, values = common_grid(logged)
        values = moving_average(values, smooth)
        mean = values.mean(axis=0)
        if band == "ci":
            lower, upper = bootstrap_ci(values, resamples=CURVE_RESAMPLES)
        elif band == "std":
            spread = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros_like(mean)
            lower, upper = mean - spread, mean + spread
        else:
            lower, upper = values.min(axis=0), values.max(axis=0)
        curves[label] = Curve(label, steps, values, mean, lower, upper)
    return curves


BAND_NAMES = {"ci": "95% bootstrap CI of the mean", "std": "± 1 std", "minmax": "min to max"}


def draw_curves(curves: dict[str, Curve], tag: str, band: str = "ci") -> Any:
    """A matplotlib ``Figure`` with one mean line and one band per curve (no pyplot: nothing global, no display)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    figure = Figure(figsize=(8, 5), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    palette = colormaps["tab10" if len(curves) <= 10 else "tab20"]
    for index, curve in enumerate(curves.values()):
        color = palette(index % palette.N)
        axes.plot(curve.steps, curve.mean, color=color, linewidth=1.6, label=f"{curve.label} (n={curve.runs})")
        axes.fill_between(curve.steps, curve.lower, curve.upper, color=color, alpha=0.2, linewidth=0)
    axes.set_title(f"{tag}: mean over seeds, band: {BAND_NAMES[band]}")
    axes.set_xlabel("step")
    axes.set_ylabel(tag)
    axes.xaxis.set_major_formatter(EngFormatter(sep=""))
    axes.grid(alpha=0.3)
    if len(curves) > 8:  # a long legend goes beside the curves rather than over them
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        axes.legend(fontsize="small")
    return figure


def plot_curves(curves: dict[str, Curve], tag: str, out_dir: Path, band: str = "ci") -> Path:
    """The curves as ``<out_dir>/<tag with / as _>.png``; returns its path."""
    path = Path(out_dir) / f"{tag.replace('/', '_')}.png"
    draw_curves(curves, tag, band).savefig(path)
    return path


# ------------------------------------------------------------------------------------------- the table
@dataclass
class Row:
    """One group's numbers. ``final_*`` and ``iqm`` are over each seed's last logged value; ``best`` over each
    seed's best one; ``steps_to_threshold`` over the seeds that reached the threshold (``reached`` of them)."""

    label: str
    runs: int
    finished: int
    final_mean: float
    final_lower: float
    final_upper: float
    iqm: float
    best: float
    threshold: float | None = None
    steps_to_threshold: float | None = None
    reached: int = 0


def interquartile_mean(values: Sequence[float]) -> float:
    """The mean of the middle 50% of ``values`` (rliable's IQM): a quarter trimmed from each end, rounded down,
    so with fewer than 4 values nothing is trimmed and it is their mean."""
    from scipy.stats import trim_mean

    return float(trim_mean(np.asarray(values, dtype=float), 0.25))


def steps_to(steps: np.ndarray, values: np.ndarray, threshold: float, direction: str) -> float | None:
    """The first logged step whose value reaches ``threshold`` (``>=`` when maximising, ``<=`` when minimising)."""
    reached = values >= threshold if direction == "max" else values <= threshold
    return float(steps[np.argmax(reached)]) if reached.any() else None


def summarise(
    groups: dict[str, list[Run]], tag: str, threshold: float | None = None, direction: str = "max"
) -> list[Row]:
    """One row per group with runs that logged ``tag``, best final mean first."""
    rows = []
    for label, runs in groups.items():
        logged = [(run, *series(run, tag)) for run in runs if tag in run.scalars]
        logged = [(run, steps, values) for run, steps, values in logged if len(steps)]
        if not logged:
            continue
        finals = np.array([values[-1] for _, _, values in logged])
        best = [values.max() if direction == "max" else values.min() for _, _, values in logged]
        lower, upper = bootstrap_ci(finals)
        row = Row(
            label=label,
            runs=len(logged),
            finished=sum(run.status == "finished" for run, _, _ in logged),
            final_mean=float(finals.mean()),
            final_lower=float(lower),
            final_upper=float(upper),
            iqm=interquartile_mean(finals),
            best=float(np.mean(best)),
        )
        if threshold is not None:
            hits = [steps_to(steps, values, threshold, direction) for _, steps, values in logged]
            hits = [hit for hit in hits if hit is not None]
            row.threshold, row.reached = threshold, len(hits)
            row.steps_to_threshold = float(np.mean(hits)) if hits else None
        rows.append(row)
    sign = -1 if direction == "max" else 1
    return sorted(rows, key=lambda row: (math.isnan(row.final_mean), sign * row.final_mean))


def format_number(value: float | None) -> str:
    """Four significant digits, but never fewer than the integer part has (``-153.2``, ``12346``, ``0.005123``)."""
    if value is None:
        return "–"
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    decimals = 3 - math.floor(math.log10(abs(value)))
    return f"{value:.4g}" if decimals > 6 else f"{value:.{max(decimals, 0)}f}"


def write_markdown(rows: Sequence[Row], tag: str, direction: str, path: Path, skipped: Sequence[Skipped] = ()) -> Path:
    """The table as Markdown, with what each column means, and the runs left out with why."""
    better = "higher" if direction == "max" else "lower"
    threshold = rows[0].threshold if rows else None
    lines = [
        f"# {tag}",
        "",
        f"One row per group of runs (seeds), best final value first ({better} is better). **final**: mean over seeds "
        f"of each run's last logged value, with a {CONFIDENCE:.0%} percentile-bootstrap CI over seeds "
        f"({TABLE_RESAMPLES} resamples). **IQM**: interquartile mean of the final values (a quarter trimmed from "
        "each end; with fewer than 4 seeds nothing is trimmed and it equals the mean). "
        f"**best**: mean over seeds of each run's {'maximum' if direction == 'max' else 'minimum'}.",
        "",
    ]
    header = ["group", "runs", "finished", f"final ({CONFIDENCE:.0%} CI)", "IQM", "best"]
    align = ["---", "---:", "---:", "---", "---:", "---:"]
    if threshold is not None:
        header.append(f"steps to {threshold:g}")
        align.append("---")
        lines[2] += " **steps to**: the first logged step each seed reached it, mean over the seeds that did."
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for row in rows:
        final = f"{format_number(row.final_mean)} [{format_number(row.final_lower)}, {format_number(row.final_upper)}]"
        cells = [row.label.replace("|", "\\|"), str(row.runs), str(row.finished), final]
        cells += [format_number(row.iqm), format_number(row.best)]
        if threshold is not None:
            steps = f"{row.steps_to_threshold:.0f}" if row.steps_to_threshold is not None else "–"
            cells.append(f"{steps} ({row.reached}/{row.runs} reached)")
        lines.append("| " + " | ".join(cells) + " |")
    if skipped:
        lines += [
            "",
            "## Left out",
            "",
            f"{len(skipped)} run{'s' if len(skipped) != 1 else ''} in no row above: how each ended (`run.json`) and "
            "what the plot lacks.",
            "",
            "| run | status | why |",
            "| --- | --- | --- |",
        ]
        for entry in skipped:
            why = f"{entry.error}; {entry.reason}" if entry.error else entry.reason
            cells = [cell.replace("|", "\\|") for cell in (entry.name, entry.status, why)]
            lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")
    return path


CSV_COLUMNS = (
    "group",
    "runs",
    "finished",
    "final_mean",
    "final_ci_lower",
    "final_ci_upper",
    "iqm",
    "best",
    "threshold",
    "steps_to_threshold",
    "threshold_reached",
)


def write_csv(rows: Sequence[Row], path: Path) -> Path:
    """The table as CSV at full precision (empty cells where there is no threshold or no seed reached it)."""
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            threshold = row.threshold is not None
            writer.writerow(
                [
                    row.label,
                    row.runs,
                    row.finished,
                    repr(row.final_mean),
                    repr(row.final_lower),
                    repr(row.final_upper),
                    repr(row.iqm),
                    repr(row.best),
                    repr(row.threshold) if threshold else "",
                    repr(row.steps_to_threshold) if row.steps_to_threshold is not None else "",
                    row.reached if threshold else "",
                ]
            )
    return path


# ------------------------------------------------------------------------------------------- TensorBoard
def path_safe(label: str) -> str:
    """A group label as one path component (``tau=0.005 hidden=64`` → ``tau=0.005_hidden=64``)."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", label).strip("_.") or "group"


def write_tensorboard(curves: dict[str, Curve], tag: str, out_dir: Path) -> list[Path]:
    """Each curve as a TensorBoard run ``<out_dir>/<label>/`` with ``<tag>/mean``, ``/lower`` and ``/upper``;
    event files an earlier rl-plot left there are replaced, so TensorBoard never shows two versions."""
    from torch.utils.tensorboard import SummaryWriter

    written = []
    used: set[str] = set()
    for label, curve in curves.items():
        name = path_safe(label)
        while name in used:  # two labels that differ only in characters a path cannot hold
            name += "_"
        used.add(name)
        run_dir = Path(out_dir) / name
        run_dir.mkdir(parents=True, exist_ok=True)
        for old in _event_files(run_dir):
            old.unlink()
        writer = SummaryWriter(str(run_dir))
        try:
            for step, mean, lower, upper in zip(curve.steps, curve.mean, curve.lower, curve.upper):
                step = int(step)
                writer.add_scalar(f"{tag}/mean", float(mean), step)
                writer.add_scalar(f"{tag}/lower", float(lower), step)
                writer.add_scalar(f"{tag}/upper", float(upper), step)
        finally:
            writer.close()
        written.append(run_dir)
    return written


# ------------------------------------------------------------------------------------------- command line
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text}")
    return value


def parser() -> argparse.ArgumentParser:
    described = argparse.ArgumentParser(
        prog=PROGRAM,
        usage=(
            "%(prog)s DIR... [--tag TAG] [--band ci|std|minmax] [--smooth N] [--threshold X] [--minimize] [--out DIR] "
            "[--tensorboard]"
        ),
        description="Learning curves and a results table of many runs: a sweep directory, runs, or both.",
        epilog=(
            f"example: {PROGRAM} outputs/multirun/2025-01-01_12-00-00 --threshold -200  "
            "(writes <dir>/plots/eval_return_mean.png, results.md, results.csv)"
        ),
    )
    described.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="run directories or directories above")
    described.add_argument("--tag", help=f"scalar to show (default {DEFAULT_TAG}, else {FALLBACK_TAG})")
    described.add_argument("--band", choices=BANDS, default="ci", help="spread around the mean (default: ci)")
    described.add_argument("--smooth", type=_positive_int, default=1, metavar="N", help="moving average (points)")
    described.add_argument("--threshold", type=_finite_float, metavar="X", help="also report steps to reach X")
    described.add_argument("--minimize", action="store_true", help="lower is better (default: the runs' objective)")
    described.add_argument("--out", type=Path, metavar="DIR", help="default: DIR/plots for one DIR, else ./plots")
    described.add_argument("--tensorboard", action="store_true", help="also write seed-averaged TensorBoard runs")
    return described


def plot_runs(args: argparse.Namespace) -> list[Path]:
    """Everything ``rl-plot`` does for parsed arguments; returns the paths written."""
    out = args.out if args.out is not None else (args.dirs[0] / "plots" if len(args.dirs) == 1 else Path("plots"))
    skipped: list[Skipped] = []
    runs = find_runs(args.dirs, exclude=out, skipped=skipped)
    tag = choose_tag(runs, args.tag)
    groups = with_tag(group_runs(runs), tag, skipped, args.dirs)
    direction = "min" if args.minimize else objective_direction(runs, tag)
    rows = summarise(groups, tag, args.threshold, direction)
    if not rows:
        raise PlotError(f"no finite values of {tag} in any run")
    order = [row.label for row in rows]  # the legend in the table's order, best first
    curves = aggregate({label: groups[label] for label in order}, tag, args.band, args.smooth)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        plot_curves(curves, tag, out, args.band),
        write_markdown(rows, tag, direction, out / "results.md", skipped),
        write_csv(rows, out / "results.csv"),
    ]
    if args.tensorboard:
        # unsmoothed: TensorBoard has its own smoothing
        raw = curves if args.smooth == 1 else aggregate({label: groups[label] for label in order}, tag, args.band)
        written += write_tensorboard(raw, tag, out / "tb")
    return written


def main(argv: list[str] | None = None) -> None:
    """``rl-plot``: parse ``argv`` (default ``sys.argv[1:]``), write the plots and tables, print their paths."""
    try:
        args = parser().parse_args(sys.argv[1:] if argv is None else argv)
        for path in plot_runs(args):
            print(f"{PROGRAM}: wrote {path}")
    except PlotError as error:
        fail(PROGRAM, str(error))
    except OSError as error:  # an output directory that cannot be written, a run deleted while being read
        fail(PROGRAM, describe_os_error(error))
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
