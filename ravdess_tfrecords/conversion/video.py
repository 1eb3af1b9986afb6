"""Video: pick frame times over the trimmed interval and decode only those frames."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ravdess_tfrecords.conversion import ffmpeg
from ravdess_tfrecords.conversion.errors import ClipError


def frame_times(start: float, end: float, num_frames: int) -> np.ndarray:
    """Centres of ``num_frames`` equal segments of ``[start, end]``, in seconds.

    Returns:
      float64 ``(num_frames,)``, strictly inside the interval.
    """
    step = (end - start) / num_frames
    return start + step * (np.arange(num_frames) + 0.5)


def frame_indices(times: np.ndarray, fps: float, duration: float) -> np.ndarray:
    """Frame numbers showing ``times`` in a constant-rate stream; int64 ``(F,)``."""
    last = max(int(np.floor(duration * fps)) - 1, 0)
    return np.clip(np.floor(times * fps).astype(np.int64), 0, last)


def work_size(width: int, height: int, work_width: int) -> tuple[int, int]:
    """Frame size after downscaling to at most ``work_width`` (even sides, aspect kept)."""
    if width <= work_width:
        w, h = width, height
    else:
        w, h = work_width, height * work_width / width
    return int(w) // 2 * 2, int(round(h / 2)) * 2


class FrameStream:
    """Decode frames ``indices`` in one ffmpeg process, started at construction.

    ffmpeg selects the wanted frames, scales them to ``work_width`` inside ffmpeg
    (a 4K clip never reaches Python at full size) and stops after the last one.
    Iterating yields each frame as soon as it is decoded, so the caller's work
    (MFCCs, face detection) overlaps the decoding. Use as a context manager.

    Decoded pixels do not depend on ``threads`` (H.264 decoding is bit-exact).

    Yields:
      uint8 ``(h, w, 3)`` RGB frames of ``np.unique(indices)``, fewer if the
      stream ends early.
    """

    def __init__(self, path: str, indices: np.ndarray, width: int, height: int, work_width: int,
                 threads: int = 0):
        self.wanted = np.unique(indices)
        self.width, self.height = work_size(width, height, work_width)
        select = "+".join(f"eq(n\\,{int(i)})" for i in self.wanted)
        # threads=0: ffmpeg's choice (all cores); 1 when several workers share the cores.
        self._proc = ffmpeg.open_pipe(
            ["-threads", str(threads), "-i", path, "-map", "0:v:0", "-an",
             "-vf", f"select='{select}',scale={self.width}:{self.height}:flags=area",
             "-fps_mode", "passthrough", "-frames:v", str(len(self.wanted)),
             "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        size = self.height * self.width * 3
        for _ in self.wanted:
            buf = self._proc.stdout.read(size)
            if len(buf) < size:
                # A short stream ends cleanly; a killed or failed ffmpeg must not pass for one.
                if self._proc.wait() != 0:
                    raise ClipError("unreadable", f"ffmpeg stopped with {self._proc.returncode} decoding the frames")
                return
            yield np.frombuffer(buf, dtype=np.uint8).reshape(self.height, self.width, 3)

    def close(self) -> None:
        self._proc.stdout.close()
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def expand(items: list, indices: np.ndarray) -> list:
    """Map per-unique-frame ``items`` back onto ``indices`` (duplicates repeat).

    A stream shorter than its header claims yields fewer frames: the last one
    stands in for the missing ones.

    Raises:
      ClipError: ``no_video`` when no frame was decoded.
    """
    if not items:
        raise ClipError("no_video", "no video frame could be decoded")
    position = np.minimum(np.searchsorted(np.unique(indices), indices), len(items) - 1)
    return [items[i] for i in position]
