"""Faces: dlib HOG detection, gap filling across frames, square crop with margin, resize.

Boxes are float ``(left, top, right, bottom)`` in pixels of the frame they were found in.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

Box = tuple[float, float, float, float]


@functools.lru_cache(maxsize=1)
def detector():
    """dlib's frontal-face HOG detector (loaded once per process)."""
    import dlib  # writing half only

    return dlib.get_frontal_face_detector()


def detect(frame: np.ndarray, upsample: int = 0) -> Box | None:
    """The highest-scoring face in an RGB uint8 ``(h, w, 3)`` frame, or None."""
    rects, scores, _ = detector().run(frame, upsample, 0.0)
    if not rects:
        return None
    best = rects[int(np.argmax(scores))]
    return (float(best.left()), float(best.top()), float(best.right()), float(best.bottom()))


def detect_near(frame: np.ndarray, previous: Box | None, upsample: int = 0, reach: float = 0.6) -> Box | None:
    """``detect``, searching first a window around ``previous`` (the last frame's face).

    Faces move little between the 6 sampled frames, and HOG's cost grows with
    the area searched: the window (the box plus ``reach`` of its side on every
    side) is about 40 % of a RAVDESS frame at 480 px. No face there: the
    whole frame is searched.
    """
    if previous is not None:
        h, w = frame.shape[:2]
        left, top, right, bottom = previous
        pad = reach * max(right - left, bottom - top)
        x0, y0 = max(0, int(left - pad)), max(0, int(top - pad))
        x1, y1 = min(w, int(right + pad)), min(h, int(bottom + pad))
        if (x1 - x0) * (y1 - y0) < 0.8 * h * w:
            found = detect(np.ascontiguousarray(frame[y0:y1, x0:x1]), upsample)
            if found is not None:
                return (found[0] + x0, found[1] + y0, found[2] + x0, found[3] + y0)
    return detect(frame, upsample)


def fill_missing(boxes: list[Box | None]) -> list[Box] | None:
    """Give each frame without a face the box of its nearest frame with one.

    Ties go to the earlier frame. Returns None when no frame has a face.
    """
    found = [i for i, b in enumerate(boxes) if b is not None]
    if not found:
        return None
    return [boxes[min(found, key=lambda j: (abs(j - i), j))] for i in range(len(boxes))]


def square_box(box: Box, margin: float) -> Box:
    """A square around the box's centre, side = longer side * (1 + 2 * margin)."""
    left, top, right, bottom = box
    side = max(right - left, bottom - top) * (1.0 + 2.0 * margin)
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    return (cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0)


def center_box(height: int, width: int) -> Box:
    """The largest centred square: the fallback crop with ``allow_center_crop``."""
    side = min(height, width)
    left, top = (width - side) / 2.0, (height - side) / 2.0
    return (left, top, left + side, top + side)


def crop_resize(frame: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Crop ``box`` (edges replicated where it leaves the frame) and resize to ``size``.

    Returns:
      uint8 ``(size, size, 3)``.
    """
    h, w = frame.shape[:2]
    left, top, right, bottom = (int(round(v)) for v in box)
    pad = max(0, -left, -top, right - w, bottom - h)
    if pad:
        frame = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    crop = frame[top + pad: bottom + pad, left + pad: right + pad]
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
