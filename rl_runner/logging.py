"""TensorBoard scalars, the HParams summary and the progress bar of a run."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import torch
from omegaconf import DictConfig
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries
from tqdm import tqdm

from rl_runner.dotted import flatten_config
from rl_runner.errors import NonFiniteLossError


class MetricAccumulator:
    """Sums per-update metrics as device tensors and reads them back once per log interval, so the hot
    loop never waits on the device or converts to Python floats. Each metric is averaged over the updates
    that reported it (a generator loss every few updates, an encoder loss only in the encoder phase)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.count = 0  # adds since the last pop_means

    def add(self, metrics: Mapping[str, torch.Tensor]) -> None:
        for name, value in metrics.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value.detach().clone()
            self.counts[name] = self.counts.get(name, 0) + 1
        self.count += 1

    def pop_means(self) -> dict[str, float]:
        """Means since the last call; raises ``NonFiniteLossError`` if any of them is NaN or infinite."""
        if not self.count:
            return {}
        means = {name: float(total) / self.counts[name] for name, total in self.sums.items()}
        self.sums, self.counts, self.count = {}, {}, 0
        _raise_if_not_finite(means)
        return means

    def check_finite(self) -> None:
        """Raises ``NonFiniteLossError`` if the interval so far holds a NaN or infinite metric (keeps the sums)."""
        _raise_if_not_finite({name: float(total) for name, total in self.sums.items()})

    # A checkpoint keeps the unfinished interval, so a resumed run logs the very points of an uninterrupted one.
    def state_dict(self) -> dict:
        sums = {name: total.cpu() for name, total in self.sums.items()}
        return {"sums": sums, "counts": dict(self.counts), "count": self.count}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.sums = {name: total.to(device) for name, total in state["sums"].items()}
        self.count = state["count"]
        self.counts = dict(state["counts"])


def _raise_if_not_finite(values: Mapping[str, float]) -> None:
    broken = [f"{name}={value}" for name, value in values.items() if not math.isfinite(value)]
    if broken:
        raise NonFiniteLossError(", ".join(broken))


@dataclass(frozen=True)
class Video:
    frames: np.ndarray  # [T, H, W, 3] uint8
    fps: int


def _quiet_event_writer_failures(args: threading.ExceptHookArgs) -> None:
    """TensorBoard writes events from a thread of its own, whose failure (a full disk) would print a traceback;
    the writer raises the same error in the training thread at its next call, and RunLogger reports it there."""
    if isinstance(args.thread, _AsyncWriterThread) and isinstance(args.exc_value, OSError):
        return
    _PREVIOUS_THREAD_EXCEPTHOOK(args)


_PREVIOUS_THREAD_EXCEPTHOOK = threading.excepthook
threading.excepthook = _quiet_event_writer_failures


@contextlib.contextmanager
def _naming(log_dir: Path) -> Iterator[None]:
    """An error of TensorBoard's event writer names no file: name the run's event folder."""
    try:
        yield
    except OSError as error:
        if error.filename:
            raise
        raise OSError(
            error.errno, f"cannot write TensorBoard events ({error.strerror or error})", str(log_dir)
        ) from error


class RunLogger:
    def __init__(self, log_dir: Path, total_steps: int, start_step: int, show_progress: bool) -> None:
        self.log_dir = log_dir
        self.closed = False
        # purge_step drops events a previous attempt wrote after its last checkpoint, so a resumed
        # curve has no duplicated steps
        with _naming(log_dir):
            self.writer = SummaryWriter(str(log_dir), purge_step=start_step + 1 if start_step else None)
        self.bar = (
            tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, file=sys.stdout)
            if show_progress and sys.stdout.isatty()
            else None
        )

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        with _naming(self.log_dir):
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def images(self, values: Mapping[str, np.ndarray], step: int) -> None:
        """[H, W, 3] uint8 figures."""
        with _naming(self.log_dir):
            for tag, value in values.items():
                self.writer.add_image(tag, value, step, dataformats="HWC")

    def videos(self, values: Mapping[str, Video], step: int) -> None:
        """Clips as the animated GIFs TensorBoard's image tab plays (``add_video`` needs moviepy 1, which the
        pinned packages exclude)."""
        with _naming(self.log_dir):
            for tag, video in values.items():
                self.writer._get_file_writer().add_summary(video_summary(tag, video.frames, video.fps), step)

    def advance(self, steps: int, summary: Mapping[str, float] | None = None) -> None:
        if self.bar is None:
            return
        self.bar.update(steps)
        if summary:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in summary.items()}, refresh=False)

    def hparams(self, cfg: DictConfig, final_metrics: Mapping[str, float], step: int) -> None:
        flat = flatten_config(cfg)
        metrics = {
            f"final/{k}": v for k, v in final_metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)
        }
        # into this writer's own event file: add_hparams would open a second writer whose file, created in the
        # same second, can sort before this one's, so that a resumed run's purge would drop the final metrics
        experiment, session_start, session_end = hparams_summaries(flat, metrics)
        with _naming(self.log_dir):
            file_writer = self.writer._get_file_writer()
            for summary in (experiment, session_start, session_end):
                file_writer.add_summary(summary, step)
        self.scalars(metrics, step)

    def close(self, quietly: bool = False) -> None:
        """Flush and close the events; ``quietly`` (the run is ending with an error of its own): a failure to do so
        is only logged."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        try:
            with _naming(self.log_dir):
                self.writer.flush()
                self.writer.close()
        except OSError as error:
            if not quietly:
                raise
            logging.getLogger(__name__).warning("%s: %s", error.filename, error.strerror)


def video_summary(tag: str, frames: np.ndarray, fps: int) -> Summary:
    """A TensorBoard image summary holding ``frames`` ([T, H, W, 3] uint8) as an endlessly looping GIF."""
    from PIL import Image

    first, *rest = (Image.fromarray(np.ascontiguousarray(frame)) for frame in frames)
    encoded = io.BytesIO()
    duration_ms = max(20, round(1000 / max(fps, 1)))  # browsers play GIF frames no faster than 50 per second
    first.save(encoded, format="GIF", save_all=True, append_images=rest, duration=duration_ms, loop=0)
    height, width = frames.shape[1:3]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=encoded.getvalue())
    return Summary(value=[Summary.Value(tag=tag, image=image)])


def read_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run's TensorBoard directory, as {tag: [(step, value), ...]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
