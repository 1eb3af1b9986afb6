"""Session fixtures: one small synthetic corpus, converted once, shared by every test module.

All 24 actors (so every split scheme has its actors), 3 clips each, spread
over the emotions; made and converted with the real ffmpeg, librosa and dlib.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CLIPS_PER_ACTOR = 3


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory) -> str:
    from ravdess_tfrecords.conversion import synthetic

    out = tmp_path_factory.mktemp("corpus")
    synthetic.make_corpus(str(out), clips_per_actor=CLIPS_PER_ACTOR, workers=2)
    return str(out)


@pytest.fixture(scope="session")
def fit_run(tfrecords_dir, tmp_path_factory) -> dict:
    """One 2-epoch ``python -m trainers.fit`` of the cheap video baseline (``helpers.FAST_FIT``) with plain
    paths and the old flag ``--distribution_strategy=mirrored``, run from an empty working directory.

    Shared by the tests that check what a run writes (``test_trainer``) and that a run under URIs writes
    the same (``test_model_dir_uri``): ``{"model_dir", "cwd", "proc"}``.
    """
    import helpers

    root = tmp_path_factory.mktemp("fit")
    cwd, model_dir = root / "cwd", str(root / "run")
    cwd.mkdir()
    proc = helpers.fit(cwd, f"--data_dir={tfrecords_dir}", f"--model_dir={model_dir}", "--epochs=2",
                       *helpers.FAST_FIT, "--distribution_strategy=mirrored")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"model_dir": model_dir, "cwd": str(cwd), "proc": proc}


@pytest.fixture(scope="session")
def tfrecords_dir(synthetic_corpus, tmp_path_factory) -> str:
    from ravdess_tfrecords.conversion import convert

    out = tmp_path_factory.mktemp("tfrecords")
    convert.convert([synthetic_corpus], str(out), workers=2, progress=False)
    return str(out)


@pytest.fixture(scope="session")
def array_record_dir(tfrecords_dir, tmp_path_factory) -> str:
    """``tfrecords_dir``'s records as ArrayRecord shards (``file_format: array_record``), for ``rt.data_source``."""
    import array_record_shards

    return array_record_shards.write(tfrecords_dir, str(tmp_path_factory.mktemp("array_record")))
