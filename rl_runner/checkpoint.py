"""Checkpoints: one directory per save, one file per state group, written atomically.

Layout: ``<run>/checkpoints/step_000050000/{actor,critic,target_actor,...,progress}.pt``. A save writes
into ``.tmp-step_...``, fsyncs every file, then renames the directory into place: a kill at any moment
leaves either the old set of checkpoints or the old set plus a complete new one, never a half-written
one that ``latest_checkpoint`` would pick.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping, Protocol

import torch

CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")
TEMPORARY_PREFIX = ".tmp-"
# The layout of progress.pt. Format 1 (no "format" key) was the DDPG-only runner's; format 2 splits it into
# the skeleton's counters, the clock and the runner loop's own state. Bump it whenever that layout changes.
PROGRESS_FORMAT = 2


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...


class CheckpointError(RuntimeError):
    pass


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
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    temporary = root / f"{TEMPORARY_PREFIX}{final.name}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    for name, state in states.items():
        path = temporary / f"{name}.pt"
        with open(path, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
    _fsync_directory(temporary)
    if final.exists():  # a second save for the same step: move the old one aside (still complete) first
        replaced = root / f"{TEMPORARY_PREFIX}replaced-{final.name}"
        shutil.rmtree(replaced, ignore_errors=True)
        os.rename(final, replaced)
    os.rename(temporary, final)
    _fsync_directory(root)
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for leftover in root.glob(f"{TEMPORARY_PREFIX}*"):  # from an earlier kill mid-save
        shutil.rmtree(leftover, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := CHECKPOINT_PATTERN.match(p.name))]
    return [path for _, path in sorted(found)]


def latest_checkpoint(root: Path) -> Path | None:
    checkpoints = list_checkpoints(root)
    return checkpoints[-1] if checkpoints else None


def load_state(checkpoint: Path, name: str, map_location: str | torch.device = "cpu") -> dict:
    path = checkpoint / f"{name}.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {checkpoint} has no {name}.pt")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # a truncated or foreign file: name it instead of a pickle traceback
        raise CheckpointError(f"cannot read {path}: {error}") from error


def load_progress(checkpoint: Path) -> dict:
    """``progress.pt`` of a checkpoint in the current format; an older one is refused before anything loads."""
    progress = load_state(checkpoint, "progress")
    found = progress.get("format", 1) if isinstance(progress, dict) else None
    if found != PROGRESS_FORMAT:
        raise CheckpointError(
            f"{checkpoint / 'progress.pt'} has progress format {found}, this rl_runner reads format {PROGRESS_FORMAT}: "
            "it cannot be resumed (rl-eval still reads its networks); start a new run"
        )
    return progress


def load_into(checkpoint: Path, groups: Mapping[str, Stateful], map_location: str | torch.device) -> None:
    """Load every state group (``actor.pt`` into ``groups["actor"]``, ...) from one checkpoint."""
    for name, target in groups.items():
        try:
            target.load_state_dict(load_state(checkpoint, name, map_location))
        except (RuntimeError, ValueError, KeyError) as error:  # e.g. a resume with other layer sizes
            detail = " ".join(str(error).split())[:400] or type(error).__name__
            raise CheckpointError(f"{checkpoint / (name + '.pt')} does not fit this run's {name}: {detail}") from error
