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
