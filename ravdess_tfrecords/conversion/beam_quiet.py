"""A quiet Apache Beam run on this machine: the summary, and Beam's real warnings and errors, not its log.

A DirectRunner conversion would otherwise print some 50 lines for the converter's few:
INFO lines of Beam's launcher and of every ``multi_processing`` worker (each a
subprocess writing to this process's stderr, with its own logging set to INFO),
``apitools not found`` (BigQuery's client, which the converter never uses) once per
process, and TensorFlow's start-up lines from each worker. So, unless ``--verbose``:

* ``quiet_logging``, before apache_beam is imported: Beam's Python loggers at WARNING
  on a local runner (a remote runner's INFO is the job's progress and console link:
  kept), and the apitools warning dropped;
* ``filtered_stderr`` around a local pipeline: file descriptor 2, which the workers
  inherit, goes through a pipe that drops INFO lines and known noise as they come.

Standard library only, so it runs before apache_beam is imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator

from ravdess_tfrecords import _cli

LOCAL_RUNNERS = ("direct", "directrunner")
# Beam's warnings that say nothing about the conversion on a local run.
NOISE = (
    "apitools not found",  # BigQuery's client libraries, not installed and never used
    "No semi_persistent_directory found",  # a local worker has none by design
)
# An INFO line: Python's default format (a worker), absl's (the launcher) or TensorFlow's C++ log.
_INFO = re.compile(r"^(INFO:|I\d{4} )")


def is_local(runner: str) -> bool:
    """Whether ``runner`` runs on this machine (the DirectRunner)."""
    return runner.lower() in LOCAL_RUNNERS


def is_noise(line: str) -> bool:
    """An INFO line, a ``NOISE`` line or TensorFlow start-up noise (``_cli.NOISE``)."""
    return bool(_INFO.match(line)) or any(n in line for n in (*NOISE, *_cli.NOISE))


def _not_noise(record: logging.LogRecord) -> bool:
    return not any(n in record.getMessage() for n in NOISE)


def quiet_logging(runner: str) -> None:
    """Beam's INFO log off on a local runner and its noise off everywhere; call before importing apache_beam."""
    logging.getLogger().addFilter(_not_noise)  # apitools' warning goes to the root logger
    if is_local(runner):
        logging.getLogger("apache_beam").setLevel(logging.WARNING)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Send file descriptor 2 (this process's and its children's) through ``is_noise``, line by line."""
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    saved = os.dup(2)

    def relay() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not is_noise(line.decode("utf-8", errors="replace")):
                    os.write(saved, line)

    thread = threading.Thread(target=relay, name="beam-stderr", daemon=True)
    thread.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer here; the workers have exited with the pipeline
        thread.join(timeout=10)
        if not thread.is_alive():  # else a straggling child still holds the pipe: leave the relay its fd
            os.close(saved)
