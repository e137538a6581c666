"""The errors a user can cause or meet, defined on the ground floor so that every layer can raise them and every
command line can report them in one line without importing the layer that raised them."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad command line or an impossible combination; reported as one line."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written, read or applied to this run."""


class CorruptCheckpoint(CheckpointError):
    """A checkpoint file that cannot be read at all (truncated, overwritten, not a checkpoint)."""


class NonFiniteLossError(RuntimeError):
    """A logged metric turned NaN or infinite (raised when the metrics are read back)."""


class TrainingDiverged(RuntimeError):
    """The run stopped on a non-finite metric; the message names the last good checkpoint."""


class RunLocked(RuntimeError):
    """Another process is training in this run directory."""


def expected_errors() -> tuple[type[BaseException], ...]:
    """What a user can cause or meet (a bad value, an unknown env, a corrupt checkpoint, a full disk): reported in
    one line. Anything else is a bug and keeps its traceback."""
    import gymnasium  # gymnasium's own errors (an env that cannot be made or rendered); imported only when needed

    return (ValueError, CheckpointError, TrainingDiverged, RunLocked, OSError, gymnasium.error.Error)


def describe_os_error(error: OSError) -> str:
    """An operating-system error as one line: the file, then the cause."""
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{error.strerror or error}"


def describe_failure(error: BaseException) -> str:
    """One line for an error a user can cause or meet (a full disk: the file and the cause)."""
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError):
        return describe_os_error(error)
    return str(error)
