"""Small test helpers shared by several test modules (imported as ``helpers``, like ``fake_shards``)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The cheap trainer run of the subprocess tests: the video baseline with a 2-block backbone, no augmentation.
FAST_FIT = ["--model=video", "--filters=8,16", "--batch_size=8", "--augment=", "--seed=1"]


def repo_env(**extra: str) -> dict[str, str]:
    """This process's environment with the repository first on ``PYTHONPATH`` (a subprocess run from
    anywhere imports the repo), plus ``extra``."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p),
                **extra)


def python_m_telling_tensorflow(module: str) -> list[str]:
    """The argv of ``python -m MODULE`` whose last line on stdout, at its exit, is ``tensorflow imported: BOOL``
    (append the module's arguments)."""
    program = ("import atexit, runpy, sys\n"
               "atexit.register(lambda: print('tensorflow imported:', 'tensorflow' in sys.modules, flush=True))\n"
               f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n")
    return [sys.executable, "-c", program]


def fit_env() -> dict[str, str]:
    """The environment of a ``python -m trainers.fit`` run from outside the repository (it imports the repo)."""
    return repo_env(TF_CPP_MIN_LOG_LEVEL="2")


def fit(cwd, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m trainers.fit ARGS`` run in ``cwd`` (``env``: added to ``fit_env()``); output captured."""
    return subprocess.run([sys.executable, "-m", "trainers.fit", *args], cwd=cwd, env=dict(fit_env(), **(env or {})),
                          capture_output=True, text=True, timeout=600)


@contextlib.contextmanager
def tmpfs(parent: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (``"4m"``) mounted at ``parent/disk``; the test is skipped where mount is refused."""
    disk = parent / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}): needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


class Killed(Exception):
    """What ``KillAfter`` raises: a stand-in for the process dying mid-run."""


def kill_after(epochs: int):
    """A Keras callback that ends fit with ``Killed`` after ``epochs`` epochs, after every other callback
    (no ``on_train_end``), as a killed process would."""
    from tensorflow import keras

    class KillAfter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == epochs:
                raise Killed()

    return KillAfter()


def fit_with_backup(model_dir: str, epochs: int, *extra, learning_rate: float = 0.01):
    """A tiny Keras model fitted on fixed random data with the trainer's callbacks (``make_callbacks``:
    ``ResumableBackup`` into ``model_dir/backup``, history, checkpoints), then ``extra`` callbacks
    (``kill_after(n)`` leaves the backup of epoch n as a killed run would). Returns ``(history, model)``."""
    import numpy as np
    from tensorflow import keras

    from trainers import callbacks, train_lib

    config = train_lib.TrainConfig("unused", model_dir, early_stopping_patience=100, lr_patience=100)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 3, size=32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, validation_data=(x, y), epochs=epochs, batch_size=8, verbose=0,
                        callbacks=[*callbacks.make_callbacks(config, model_dir), *extra])
    return history, model


@contextlib.contextmanager
def background(jobs: dict[str, Callable[[], object]], at_once: int = 4) -> Iterator[dict[str, Future]]:
    """``{name: Future}`` of ``jobs`` run in threads, ``at_once`` at a time, from the start: a module fixture's
    command lines (each a fresh interpreter that imports TensorFlow, librosa or dlib, seconds of mostly
    one-core work) run side by side instead of one test after the other. Waits for them all at the end."""
    with concurrent.futures.ThreadPoolExecutor(at_once) as pool:
        yield {name: pool.submit(job) for name, job in jobs.items()}
