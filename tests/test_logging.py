"""rl_runner/logging.py: TensorBoard events on a full disk are one error naming the run's event folder."""

from __future__ import annotations

import errno
import queue
import threading
import time
from pathlib import Path

import pytest
from tensorboard.summary.writer import record_writer
from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

import rl_runner.logging as logging_module
from rl_runner.logging import RunLogger


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # pytest's own thread hook
def test_a_full_disk_under_the_event_writer_is_one_error_naming_the_folder(tmp_path: Path, monkeypatch) -> None:
    logger = RunLogger(tmp_path / "tb", total_steps=10, start_step=0, show_progress=False)

    def full(self, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(record_writer.RecordWriter, "write", full)
    with pytest.raises(OSError, match="No space left on device") as raised:
        for step in range(50):  # the writer's thread fails first; a later call raises it here
            logger.scalars({"loss/x": 1.0}, step)
            time.sleep(0.01)
        logger.close()
    assert raised.value.filename == str(tmp_path / "tb") and raised.value.errno == errno.ENOSPC
    logger.close(quietly=True)  # the run ends with that error: closing again raises nothing


def test_the_event_writer_threads_own_failure_prints_nothing_other_threads_failures_still_do(monkeypatch) -> None:
    reported = []
    monkeypatch.setattr(logging_module, "_PREVIOUS_THREAD_EXCEPTHOOK", reported.append)
    writer_thread = _AsyncWriterThread(queue.Queue(), None, 1)
    full = OSError(errno.ENOSPC, "No space left on device")
    logging_module._quiet_event_writer_failures(threading.ExceptHookArgs((OSError, full, None, writer_thread)))
    assert reported == []  # the training thread raises it at the writer's next call
    other = threading.ExceptHookArgs((OSError, full, None, threading.current_thread()))
    logging_module._quiet_event_writer_failures(other)
    assert reported == [other]
