"""Process-level pieces every runner shares: device choice, seeding, RNG snapshots, stop signals."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import signal
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import IO, Iterator

import numpy as np
import torch

from rl_runner.choices import MatmulPrecision
from rl_runner.errors import RunLocked

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cpu``, ``cuda`` and ``cuda:N`` force a device."""
    if not DEVICE_PATTERN.match(requested):
        raise ValueError(f"device={requested!r} is not one of auto, cpu, cuda, cuda:N")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={requested} was asked for, but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device={requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def set_matmul_precision(precision: MatmulPrecision) -> None:
    torch.set_float32_matmul_precision(precision.value)
    # on CPUs with bf16 support, oneDNN's reduced-precision fp32 matmul is the counterpart of TF32
    mkldnn_matmul = getattr(torch.backends.mkldnn, "matmul", None)
    if mkldnn_matmul is not None and hasattr(mkldnn_matmul, "fp32_precision"):
        mkldnn_matmul.fp32_precision = "bf16" if precision is MatmulPrecision.medium else "ieee"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device as well


def rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        # only when this process uses CUDA: querying it would create a context on every GPU
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def restore_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_initialized():
        torch.cuda.set_rng_state_all(state["cuda"])


# SIGUSR2: what SLURM sends (through submitit) before a time limit or a preemption; rl_runner.training hands it on to
# submitit's requeue handler once the checkpoint is written
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


class StopSignals:
    """Turns SIGINT/SIGTERM/SIGUSR2 into a flag the loop checks between steps, so the run stops at a consistent
    point and writes a checkpoint. A second Ctrl-C stops at once, except inside ``protect()`` (a checkpoint
    being written), where it waits until the write is complete."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}
        self._protected = False
        self._interrupt_pending = False

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.received is not None and number == signal.SIGINT:
            if self._protected:
                self._interrupt_pending = True
                return
            raise KeyboardInterrupt
        if self.received is None:  # the first signal decides (SIGUSR2 then SIGTERM: still a requeue)
            self.received = number

    @contextlib.contextmanager
    def protect(self) -> Iterator[None]:
        """A section that a second Ctrl-C does not cut short; it takes effect when the section ends."""
        self._protected = True
        try:
            yield
        finally:
            self._protected = False
        if self._interrupt_pending:
            raise KeyboardInterrupt

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


class RunLock:
    """One process at a time per run directory: an exclusive ``flock`` on ``<run>/.lock``, which the operating
    system releases when its holder exits or dies, so a crashed or requeued job never leaves a stale lock."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self.file: IO[str] | None = None

    def __enter__(self) -> "RunLock":
        file = open(self.path, "a+")
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            file.close()
            raise RunLocked(f"{self.path.parent} is in use by {holder}; wait for it to end or stop it") from None
        file.seek(0)
        file.truncate()
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        file.write(f"process {os.getpid()} on {socket.gethostname()} (since {started})\n")
        file.flush()
        self.file = file
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.file is not None:
            self.file.close()  # closing releases the lock
            self.file = None
