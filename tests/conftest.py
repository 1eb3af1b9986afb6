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
def tfrecords_dir(synthetic_corpus, tmp_path_factory) -> str:
    from ravdess_tfrecords.conversion import convert

    out = tmp_path_factory.mktemp("tfrecords")
    convert.convert([synthetic_corpus], str(out), workers=2, progress=False)
    return str(out)
