"""``UserError``: the project's own checks of what a user passed (a flag, a path, a split, a model directory).

A command line (``ravdess_tfrecords._cli``) prints one of these as one ``error: ...`` line and exits
with status 2; any other exception is a bug or a runtime failure: a traceback and exit status 1.
It is a ``ValueError``, so a library caller that catches ``ValueError`` still catches it.
Standard library only: every module may import it.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in what the user passed, raised on purpose by a check, with a message that says what to do."""


class UserOSError(OSError):
    """An ``OSError`` that comes from what the user passed: a port already taken, an address nobody answers at."""


class UserTimeoutError(UserOSError, TimeoutError):
    """Nothing answered, within the timeout the user set, at an address the user gave (a peer, a dispatcher)."""


class MissingExtraError(ImportError):
    """A part of the package needs an extra that is not installed; the message names the ``pip install``."""


# What the tf.data reader, the trainers and URIs need (setup.cfg's [tf] extra).
TF_EXTRA_HINT = 'pip install "ravdess-tfrecords[tf]"'


def tensorflow_missing(what: str) -> MissingExtraError:
    """The one-line error for ``what`` in an install without TensorFlow (the base or ``[grain]`` install)."""
    return MissingExtraError(f"{what} needs TensorFlow, which this install lacks: {TF_EXTRA_HINT} "
                             "(ravdess_tfrecords.data_source reads ArrayRecord shards without it)")
