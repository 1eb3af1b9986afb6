"""Video: pick frame times over the trimmed interval and decode only those frames."""

from __future__ import annotations

import numpy as np

from ravdess_tfrecords import ffmpeg
from ravdess_tfrecords.errors import ClipError


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


def decode_frames(path: str, indices: np.ndarray, width: int, height: int, work_width: int) -> np.ndarray:
    """Decode frames ``indices`` in one ffmpeg pass, downscaled to ``work_width``.

    ffmpeg stops after the last wanted frame, and scaling happens inside ffmpeg,
    so a 4K clip never reaches Python at full size.

    Returns:
      uint8 ``(len(indices), h, w, 3)`` RGB.

    Raises:
      ClipError: ``no_video`` when no frame could be decoded.
    """
    wanted = np.unique(indices)
    w, h = work_size(width, height, work_width)
    select = "+".join(f"eq(n\\,{int(i)})" for i in wanted)
    raw = ffmpeg.run_to_bytes(
        ["-i", path, "-map", "0:v:0", "-an", "-vf", f"select='{select}',scale={w}:{h}:flags=area",
         "-fps_mode", "passthrough", "-frames:v", str(len(wanted)),
         "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        "video",
    )
    got = np.frombuffer(raw, dtype=np.uint8)
    count = got.size // (h * w * 3)
    if count == 0:
        raise ClipError("no_video", "no video frame could be decoded")
    frames = got[: count * h * w * 3].reshape(count, h, w, 3)
    # A stream shorter than its header claims: reuse the last decoded frame.
    position = np.minimum(np.searchsorted(wanted, indices), count - 1)
    return frames[position]
