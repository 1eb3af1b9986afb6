"""The one exception a clip's preprocessing raises: a short code and a reason."""

from __future__ import annotations

# code -> what it means; the converter's summary counts skipped clips by code.
REASONS = {
    "bad_name": "file name is not RAVDESS's",
    "not_audio_video": "not an audio-video (modality 01) clip",
    "filtered": "vocal channel not selected",
    "duplicate": "same clip already found elsewhere",
    "unreadable": "ffmpeg cannot read the file",
    "truncated": "the file ends before its header says",
    "no_audio": "no audio stream",
    "no_video": "no video stream",
    "silent": "audio is silent",
    "no_face": "no face found",
}


class ClipError(Exception):
    """A clip that cannot be converted; ``code`` is a key of ``REASONS``."""

    def __init__(self, code: str, message: str):
        if code not in REASONS:
            raise ValueError(f"unknown ClipError code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
