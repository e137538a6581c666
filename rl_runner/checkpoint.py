"""Checkpoints: one directory per save, one file per state group, written atomically.

Layout: ``<run>/checkpoints/step_000000050000/{actor,critic,target_actor,...,progress}.pt``, and beside them
``best/`` with the same files, for the evaluation with the best objective. A save writes
into ``.tmp-step_...``, fsyncs every file, then renames the directory into place: a kill at any moment
leaves either the old set of checkpoints or the old set plus a complete new one, never a half-written
one that ``latest_checkpoint`` would pick. A save that fails (a full disk) removes its temporary directory,
so that the space it took is free again for run.json, and says which checkpoint is still the latest good one.

Loading reads every file of a checkpoint before it changes anything, so a corrupt file is told apart from
a file that does not fit the run (other layer sizes), and a resume can fall back to an older checkpoint.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path
from typing import IO, Any, Iterable, Mapping, Protocol

import torch

from rl_runner.errors import CheckpointError, CorruptCheckpoint

CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")
TEMPORARY_PREFIX = ".tmp-"
REPLACED_PREFIX = f"{TEMPORARY_PREFIX}replaced-"  # the old copy while a checkpoint of the same step replaces it
CORRUPT_PREFIX = ".corrupt-"  # a checkpoint a resume found unreadable and skipped
BEST = "best"  # checkpoints/best: the evaluation with the best objective so far (checkpoint.best=true)
# The layout of progress.pt. Format 1 (no "format" key) was the DDPG-only runner's; format 2 splits it into
# the skeleton's counters, the clock and the runner loop's own state. Bump it whenever that layout changes.
PROGRESS_FORMAT = 2


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...


def checkpoint_name(step: int) -> str:
    return f"step_{step:012d}"


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def save_checkpoint(root: Path, step: int, states: Mapping[str, dict], keep: int) -> Path:
    """Write ``{name}.pt`` for each entry of ``states`` into a new checkpoint for ``step``; keep the newest ``keep``."""
    final = write_checkpoint(root / checkpoint_name(step), states)
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


class _WriteThrough:
    """The file ``torch.save`` writes to, keeping the first OS error of a write. Torch's zip writer does not pass
    it on: it fails later with its own ``RuntimeError`` ("[enforce fail at inline_container.cc] unexpected pos
    64 vs 0"), which hides the cause (a full disk)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        if self.error is not None:  # the zip writer goes on (its end records); the file is lost already
            raise self.error
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.file.flush()


def _write_state(state: dict, path: Path) -> None:
    """One state file, on disk (fsynced) before this returns; a failed write raises its own ``OSError``."""
    with open(path, "wb") as file:  # buffered: a raw write may write part of its bytes and raise nothing
        through = _WriteThrough(file)
        try:
            torch.save(state, through)
        except Exception:
            if through.error is None:
                raise
            raise through.error from None  # the cause, not torch's report of a short write
        file.flush()
        os.fsync(file.fileno())


def write_checkpoint(final: Path, states: Mapping[str, dict]) -> Path:
    """``states`` as the checkpoint directory ``final`` (``step_...`` or ``best``), replacing one of that name
    only once the new one is complete."""
    root = final.parent
    temporary = root / f"{TEMPORARY_PREFIX}{final.name}"
    writing = ""
    try:
        root.mkdir(parents=True, exist_ok=True)
        _recover_replaced(root)
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        for name, state in states.items():
            writing = f" ({name}.pt)"
            _write_state(state, temporary / f"{name}.pt")
        writing = ""
        _fsync_directory(temporary)
        if final.exists():  # a second save of the same name: move the old one aside (still complete) first;
            replaced = root / f"{REPLACED_PREFIX}{final.name}"  # a kill before the next rename leaves it in use
            shutil.rmtree(replaced, ignore_errors=True)
            os.rename(final, replaced)
        os.rename(temporary, final)
    except OSError as error:  # a full disk, a read-only or vanished directory: the previous checkpoints stay
        shutil.rmtree(temporary, ignore_errors=True)  # before the run records its end: this frees the space
        try:
            _recover_replaced(root)  # the old copy back in place, if it had been moved aside
        except OSError:
            pass  # named_checkpoints still finds it where it is
        previous = latest_checkpoint(root)
        raise CheckpointError(
            f"cannot write checkpoint {final}{writing}: {error.strerror or error}; "
            f"the latest good checkpoint is {previous or 'none'}"
        ) from error
    except BaseException:  # a bug or a second signal: no half-written directory holds on to the disk either
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    _fsync_directory(root)
    for leftover in root.glob(f"{TEMPORARY_PREFIX}*"):  # from an earlier kill mid-save, and the replaced copy
        shutil.rmtree(leftover, ignore_errors=True)
    return final


def _recover_replaced(root: Path) -> None:
    """A kill between moving a checkpoint aside and moving its replacement in: put the old one back."""
    for replaced in root.glob(f"{REPLACED_PREFIX}*"):
        original = root / replaced.name[len(REPLACED_PREFIX) :]
        if not original.exists():
            os.rename(replaced, original)


def named_checkpoints(root: Path) -> dict[str, Path]:
    """Complete checkpoint directories under ``root`` by name (``step_*``, ``best``), one moved aside by a save of
    the same name that was killed before it could put the new one in place included (it is still that checkpoint).
    Other hidden directories are unfinished saves (``.tmp-*``) or ones a resume found corrupt (``.corrupt-*``)."""
    found = {}
    for path in root.iterdir() if root.is_dir() else []:
        name = path.name.removeprefix(REPLACED_PREFIX)
        if path.is_dir() and not name.startswith(".") and (path.name == name or not (root / name).exists()):
            found[name] = path
    return found


def list_checkpoints(root: Path) -> list[Path]:
    """Complete ``step_*`` checkpoints under ``root``, oldest first."""
    steps = {}
    for name, path in named_checkpoints(root).items():
        match = CHECKPOINT_PATTERN.match(name)
        if match:
            steps[int(match.group(1))] = path
    return [steps[step] for step in sorted(steps)]


def missing_checkpoint_hint(run_dir: Path) -> str:
    """Why a run directory has no checkpoint to load, when it is a group of one run per seed (``seeds=N``)."""
    seeds = sorted(path.name for path in run_dir.glob("seed_*") if (path / "checkpoints").is_dir())
    return f"; it holds one run per seed ({', '.join(seeds)}): name one, e.g. {run_dir / seeds[0]}" if seeds else ""


def latest_checkpoint(root: Path) -> Path | None:
    checkpoints = list_checkpoints(root)
    return checkpoints[-1] if checkpoints else None


def load_state(checkpoint: Path, name: str, map_location: str | torch.device = "cpu") -> dict:
    path = checkpoint / f"{name}.pt"
    if not path.is_file():
        raise CorruptCheckpoint(f"checkpoint {checkpoint} has no {name}.pt")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # a truncated or foreign file: name it instead of a pickle traceback
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise CorruptCheckpoint(f"{path} is corrupt: {detail}") from error


def read_checkpoint(checkpoint: Path, names: Iterable[str], map_location: str | torch.device) -> dict[str, dict]:
    """Every named file of a checkpoint, read in full; raises ``CorruptCheckpoint`` before anything is applied."""
    return {name: load_state(checkpoint, name, map_location) for name in names}


def apply_states(checkpoint: Path, groups: Mapping[str, Stateful], states: Mapping[str, dict]) -> None:
    """Load states read from ``checkpoint`` into the run's objects (``actor.pt`` into ``groups["actor"]``, ...)."""
    for name, target in groups.items():
        try:
            target.load_state_dict(states[name])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:  # e.g. a resume with other layer sizes
            detail = " ".join(str(error).split())[:400] or type(error).__name__
            raise CheckpointError(f"{checkpoint / (name + '.pt')} does not fit this run's {name}: {detail}") from error


def load_into(checkpoint: Path, groups: Mapping[str, Stateful], map_location: str | torch.device) -> None:
    """Load every state group from one checkpoint; nothing is changed if a file is corrupt."""
    apply_states(checkpoint, groups, read_checkpoint(checkpoint, groups, map_location))


def load_finite_into(checkpoint: Path, groups: Mapping[str, Stateful], map_location: str | torch.device) -> None:
    """``load_into`` for evaluation: a checkpoint whose networks hold NaN or inf is refused, not played."""
    states = read_checkpoint(checkpoint, groups, map_location)
    for name, count in non_finite_entries(states).items():
        raise CheckpointError(f"{checkpoint / name} holds {count} non-finite value{'s' if count > 1 else ''}")
    apply_states(checkpoint, groups, states)


def check_progress_format(checkpoint: Path, progress: Any) -> dict:
    """``progress.pt``'s content, if it is of the current format; an older one is refused."""
    found = progress.get("format", 1) if isinstance(progress, dict) else None
    if found != PROGRESS_FORMAT:
        raise CheckpointError(
            f"{checkpoint / 'progress.pt'} has progress format {found}, this rl_runner reads format {PROGRESS_FORMAT}: "
            "it cannot be resumed (rl-eval still reads its networks); start a new run"
        )
    return progress


def load_progress(checkpoint: Path) -> dict:
    """``progress.pt`` of a checkpoint in the current format; an older one is refused before anything loads."""
    return check_progress_format(checkpoint, load_state(checkpoint, "progress"))


def non_finite_entries(states: Mapping[str, Any]) -> dict[str, int]:
    """``{file name: count}`` of NaN or infinite values in the floating-point tensors of state dicts."""
    found: dict[str, int] = {}

    def count(value: Any) -> int:
        if isinstance(value, torch.Tensor):
            return int((~torch.isfinite(value)).sum()) if value.is_floating_point() else 0
        if isinstance(value, float):
            return 0 if math.isfinite(value) else 1
        if isinstance(value, Mapping):
            return sum(count(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return sum(count(v) for v in value)
        return 0

    for name, state in states.items():
        bad = count(state)
        if bad:
            found[f"{name}.pt"] = bad
    return found


# -------------------------------------------------------------------------------------- finding one by name
def resolve_checkpoint(path: str | Path, checkpoint: str | int | None = None) -> tuple[Path, Path]:
    """``(run directory, checkpoint directory)`` for a run directory (with ``checkpoint``: ``None`` or ``"latest"``
    for the latest ``step_*``, a name such as ``"best"`` or ``"step_000000010000"``, or a step number), for a run's
    ``checkpoints/`` folder (its latest), or for a checkpoint directory ``<run>/checkpoints/<name>`` itself.

    Raises ``FileNotFoundError`` for a path or a checkpoint that does not exist (listing the checkpoints there are)
    and ``ValueError`` for a path that is neither a run nor one of its checkpoints."""
    path = Path(os.path.abspath(Path(path).expanduser()))  # "." inside a checkpoint has a parent to recognise
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if _is_run_dir(path):
        return path, _named_checkpoint(path, checkpoint)
    if path.name == "checkpoints" and _is_run_dir(path.parent):
        return path.parent, _named_checkpoint(path.parent, checkpoint)
    if path.is_dir() and path.parent.name == "checkpoints":  # <run>/checkpoints/<name>
        run_dir = path.parent.parent
        if not _is_run_dir(run_dir):
            raise ValueError(
                f"{path} is a checkpoint directory, but its run {run_dir} has no .hydra/overrides.yaml: the run's "
                "config is needed to rebuild the agent"
            )
        if checkpoint is not None and checkpoint != path.name:
            raise ValueError(f"{path} is a checkpoint directory already; checkpoint={checkpoint!r} contradicts it")
        if not any(path.glob("*.pt")):
            raise FileNotFoundError(f"{path} holds no checkpoint files (*.pt)")
        return run_dir, path
    if path.is_dir() and any(path.glob("*.pt")):
        raise ValueError(
            f"{path} holds checkpoint files but is not inside a run (<run>/checkpoints/<name>): the run's "
            ".hydra/overrides.yaml is needed to rebuild the agent"
        )
    raise ValueError(
        f"{path} is neither a run directory (no .hydra/overrides.yaml) nor a checkpoint directory "
        "(<run>/checkpoints/<name>)"
    )


def _is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "overrides.yaml").is_file()


def _available_checkpoints(root: Path) -> dict[str, Path]:
    """The run's checkpoints that hold files, ``step_*`` in step order (their names are zero-padded), then others
    such as ``best``."""
    found = {name: path for name, path in named_checkpoints(root).items() if any(path.glob("*.pt"))}
    return dict(sorted(found.items(), key=lambda item: (CHECKPOINT_PATTERN.match(item[0]) is None, item[0])))


def _named_checkpoint(run_dir: Path, checkpoint: str | int | None) -> Path:
    root = run_dir / "checkpoints"
    if checkpoint is None or checkpoint == "latest":
        latest = latest_checkpoint(root)
        if latest is None:
            hint = missing_checkpoint_hint(run_dir)
            raise FileNotFoundError(f"no step_* checkpoint under {root}; {_listing(root)}{hint}")
        return latest
    name = checkpoint_name(checkpoint) if isinstance(checkpoint, int) else str(checkpoint)
    available = _available_checkpoints(root)
    if name not in available:
        raise FileNotFoundError(f"no checkpoint {name!r} under {root}; {_listing(root)}")
    return available[name]


def _listing(root: Path) -> str:
    names = list(_available_checkpoints(root))
    return f"available: {', '.join(names)}" if names else "the run has saved none yet"
