"""What can go wrong in a conversion: a clip's problem (skip it) or the machine's (stop the run)."""

from __future__ import annotations

import errno
import os

# code -> what it means; the converter's summary counts skipped clips by code.
REASONS = {
    "bad_name": "file name is not RAVDESS's",
    "other_modality": "not of the modality converted (one per output: audio-video 01 or audio-only 03)",
    "filtered": "vocal channel not selected",
    "duplicate": "same clip already found elsewhere",
    "unreadable": "ffmpeg cannot read the file",
    "truncated": "the file ends before its header says",
    "no_audio": "no audio stream",
    "no_video": "no video stream",
    "bad_audio": "the audio holds NaN or infinite samples",
    "silent": "audio is silent",
    "no_face": "no face found",
    "crashed": "the worker process died on it (a native library's crash, or the out-of-memory killer)",
    "internal": "unexpected error in the preprocessing (a bug: the traceback is in failures.jsonl)",
}

# Errors of the machine, not of a clip: a full disk or quota, too many open files, an output that
# cannot be written. Skipping clips for them would blame the clips; the run stops instead.
MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.EROFS})
# Permission errors are the machine's only where the converter writes (reading a source is the clip's).
WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM})


class ClipError(Exception):
    """A clip that cannot be converted; ``code`` is a key of ``REASONS``."""

    def __init__(self, code: str, message: str):
        if code not in REASONS:
            raise ValueError(f"unknown ClipError code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message


class MachineError(OSError):
    """The machine, not a clip, stops the conversion (disk full, no file handles, output not writable).

    The message says what failed and that the last published output is intact.
    """


def is_machine_error(error: BaseException, write_dir: str | None = None) -> bool:
    """Whether ``error`` is the machine's: an errno of ``MACHINE_ERRNOS``, or a permission
    error on a path under ``write_dir`` (the output or its cache) or with no path at all
    (a failed write to an open file)."""
    if not isinstance(error, OSError) or error.errno is None:
        return False
    if error.errno in MACHINE_ERRNOS:
        return True
    if error.errno in WRITE_ERRNOS:
        if error.filename is None:
            return True
        if write_dir is not None:
            path, root = os.path.realpath(os.fspath(error.filename)), os.path.realpath(write_dir)
            return os.path.commonpath([path, root]) == root
    return False
