"""The writing half: RAVDESS clips -> preprocessing (ffmpeg, librosa, dlib) -> sharded TFRecords.

Needs the ``[convert]`` extra (librosa, dlib-bin, imageio-ffmpeg, pillow, tqdm, array-record):
``pip install "ravdess-tfrecords[convert]"``. A plain ``pip install ravdess-tfrecords``
reads shards, builds models and trains, and lacks them; every command line that
converts calls ``require_extra`` first, so it ends with one ``error:`` line naming
the extra instead of an ImportError in the middle of a run.

Modules: ``cli`` (the command line), ``convert`` (the local pool), ``beam_convert``
(the same on Apache Beam), ``beam_quiet`` (Beam's log off), ``preprocess`` (one clip), ``audio``, ``video``, ``faces``,
``ffmpeg``, ``sources`` (folders, zips, ``tf.io.gfile`` paths), ``storage``,
``writer`` (staged, atomic publishing; TFRecord or ArrayRecord shards), ``reformat`` (a converted directory's
shards in the other format), ``errors``, ``progress``, ``synthetic``.
It meets the reading half only at ``ravdess_tfrecords.schema``.

This file imports only the standard library, so the check costs nothing.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping, Sequence

# What the [convert] extra installs, as import name -> distribution (setup.cfg, extras_require).
NEEDS: Mapping[str, str] = {
    "librosa": "librosa",
    "dlib": "dlib-bin",
    "imageio_ffmpeg": "imageio-ffmpeg",
    "PIL": "pillow",
    "tqdm": "tqdm",
    "threadpoolctl": "threadpoolctl",  # one BLAS thread for the MFCCs: the same bytes on any machine
}
EXTRA = "convert"
# What the [synthetic] extra adds for ``synthetic`` (tools.make_synthetic_corpus, tools.demo): real face crops.
SYNTHETIC_NEEDS: Mapping[str, str] = {"skimage": "scikit-image"}
DISTRIBUTION = "ravdess-tfrecords"


def missing(modules: Sequence[str] = tuple(NEEDS)) -> list[str]:
    """The import names among ``modules`` that cannot be found (nothing is imported)."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def missing_extra_message(what: str, extras: Sequence[str] = (EXTRA,),
                          modules: Sequence[str] = tuple(NEEDS)) -> str | None:
    """``None`` if ``modules`` are all installed, else the one line that says which extras to install.

    ``the converter needs an extra: pip install "ravdess-tfrecords[convert]" (missing: librosa, dlib)``
    """
    absent = missing(modules)
    if not absent:
        return None
    noun = "an extra" if len(extras) == 1 else "extras"
    return (f'{what} needs {noun}: pip install "{DISTRIBUTION}[{",".join(extras)}]" '
            f"(missing: {', '.join(absent)})")


def require_extra(what: str, extras: Sequence[str] = (EXTRA,), modules: Sequence[str] = tuple(NEEDS)) -> None:
    """For command lines: if a module of ``modules`` is missing, print one ``error: ...`` line and exit 2.

    Call it before importing anything of this package but this file.
    """
    message = missing_extra_message(what, extras, modules)
    if message:
        from ravdess_tfrecords import _cli  # standard library only

        print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(_cli.USER_ERROR_STATUS)


def require_synthetic_extras(what: str) -> None:
    """``require_extra`` for what makes a synthetic corpus: ``[convert]`` plus ``[synthetic]`` (scikit-image)."""
    require_extra(what, (EXTRA, "synthetic"), (*NEEDS, *SYNTHETIC_NEEDS))
