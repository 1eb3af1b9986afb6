"""Session fixtures: one small synthetic corpus, converted once, shared by every test module.

All 24 actors (so every split scheme has its actors), 3 clips each, spread
over the emotions; made and converted with the real ffmpeg, librosa and dlib.

Under pytest-xdist (``make test`` runs ``-n 2``) each fixture is made once for the
whole run, not once per worker: the first worker to need it builds it under a file
lock in the run's common temporary folder, the others wait and reuse it
(``_once``). Tests treat them as read-only (they copy what they change).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A suite started in the background of a shell without job control (``make test &``, ``nohup``, some CI
# runners) inherits SIGINT ignored, and so would every converter and trainer it starts: their Ctrl-C tests
# would send a signal nobody hears. A Python handler here gives those children the terminal's default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

CLIPS_PER_ACTOR = 3


@contextlib.contextmanager
def _once(tmp_path_factory, name: str):
    """``(folder, done)`` for a fixture made once per run: ``done`` is its stored result (JSON) when
    another xdist worker (or an earlier call) made it; else ``None``, and the caller makes it in
    ``folder`` and stores its result with ``_store`` while still holding the lock."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker's basetemp sits in the run's one folder
        shared = shared.parent
    folder = shared / f"shared-{name}"
    with open(shared / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        result = folder / "result.json"
        yield folder, (json.loads(result.read_text()) if result.is_file() else None)


def _store(folder, value):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(value))
    return value


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory) -> str:
    from ravdess_tfrecords.conversion import synthetic

    with _once(tmp_path_factory, "corpus") as (folder, done):
        if done is not None:
            return done
        out = folder / "corpus"
        synthetic.make_corpus(str(out), clips_per_actor=CLIPS_PER_ACTOR, workers=2)
        return _store(folder, str(out))


@pytest.fixture(scope="session")
def fit_run(tfrecords_dir, tmp_path_factory) -> dict:
    """One 2-epoch ``python -m trainers.fit`` of the cheap video baseline (``helpers.FAST_FIT``) with plain
    paths and the old flag ``--distribution_strategy=mirrored``, run from an empty working directory.

    Shared by the tests that check what a run writes (``test_trainer``) and that a run under URIs writes
    the same (``test_model_dir_uri``): ``{"model_dir", "cwd", "proc"}``.
    """
    import helpers

    with _once(tmp_path_factory, "fit") as (root, done):
        if done is None:
            cwd, model_dir = root / "cwd", str(root / "run")
            cwd.mkdir(parents=True)
            proc = helpers.fit(cwd, f"--data_dir={tfrecords_dir}", f"--model_dir={model_dir}", "--epochs=2",
                               *helpers.FAST_FIT, "--distribution_strategy=mirrored")
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            done = _store(root, {"model_dir": model_dir, "cwd": str(cwd), "args": proc.args,
                                 "stdout": proc.stdout, "stderr": proc.stderr})
    proc = subprocess.CompletedProcess(done["args"], 0, done["stdout"], done["stderr"])
    return {"model_dir": done["model_dir"], "cwd": done["cwd"], "proc": proc}


@pytest.fixture(scope="session")
def tfrecords_dir(synthetic_corpus, tmp_path_factory) -> str:
    from ravdess_tfrecords.conversion import convert

    with _once(tmp_path_factory, "tfrecords") as (folder, done):
        if done is not None:
            return done
        out = folder / "tfrecords"
        convert.convert([synthetic_corpus], str(out), workers=2, progress=False)
        return _store(folder, str(out))


@pytest.fixture(scope="session")
def array_record_dir(synthetic_corpus, tfrecords_dir, tmp_path_factory) -> str:
    """The same corpus converted with ``file_format="array_record"``: the TFRecord conversion's clip cache
    copied in first, so only pass 2 (padding, writing the shards) runs."""
    import shutil

    from ravdess_tfrecords.conversion import convert

    out = tmp_path_factory.mktemp("array_record")
    shutil.copytree(os.path.join(tfrecords_dir, convert.CACHE_DIRNAME), out / convert.CACHE_DIRNAME)
    convert.convert([synthetic_corpus], str(out), workers=2, progress=False, file_format="array_record")
    return str(out)
