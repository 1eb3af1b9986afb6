"""RAVDESS file names: ``MM-VV-EE-II-SS-RR-AA.ext`` parsed into a frozen dataclass.

Fields (Livingstone & Russo 2018): modality, vocal channel, emotion, intensity,
statement, repetition, actor. Odd actors are male, even actors female.
"""

from __future__ import annotations

import dataclasses
import os

from ravdess_tfrecords import labels
from ravdess_tfrecords.labels import INTENSITIES, MODALITIES, NUM_ACTORS, STATEMENTS, VOCAL_CHANNELS

# Field name and the codes it may take, in file-name order.
_FIELDS: tuple[tuple[str, range | dict], ...] = (
    ("modality", MODALITIES),
    ("vocal_channel", VOCAL_CHANNELS),
    ("emotion", labels.EMOTIONS),
    ("intensity", INTENSITIES),
    ("statement", STATEMENTS),
    ("repetition", range(1, 3)),
    ("actor", range(1, NUM_ACTORS + 1)),
)


@dataclasses.dataclass(frozen=True, order=True)
class ClipName:
    """The seven coded fields of one RAVDESS file name (all ints, as coded)."""

    modality: int
    vocal_channel: int
    emotion: int
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def clip_id(self) -> str:
        """``MM-VV-EE-II-SS-RR-AA``: the name without extension."""
        return "-".join(f"{v:02d}" for v in dataclasses.astuple(self))

    @property
    def gender(self) -> str:
        return "male" if self.actor % 2 else "female"

    @property
    def vocal_channel_name(self) -> str:
        return VOCAL_CHANNELS[self.vocal_channel]

    @property
    def emotion_name(self) -> str:
        return labels.EMOTIONS[self.emotion]

    def label(self, num_classes: int = labels.NUM_CLASSES) -> int:
        return labels.label_from_emotion(self.emotion, num_classes)


def parse(path: str) -> ClipName:
    """Parse a RAVDESS file name (any directory and extension).

    Raises:
      ValueError: quoting the name and the field that does not fit.
    """
    base = os.path.basename(path)
    stem = base.split(".", 1)[0]
    parts = stem.split("-")
    if len(parts) != len(_FIELDS):
        raise ValueError(
            f"{base!r} is not a RAVDESS name: expected 7 two-digit fields "
            f"MM-VV-EE-II-SS-RR-AA, found {len(parts)}"
        )
    values = {}
    for (field, allowed), part in zip(_FIELDS, parts, strict=True):
        if len(part) != 2 or not part.isdigit():
            raise ValueError(f"{base!r} is not a RAVDESS name: {field} field {part!r} is not two digits")
        code = int(part)
        if code not in allowed:
            raise ValueError(f"{base!r} is not a RAVDESS name: {field} code {part} is out of range")
        values[field] = code
    clip = ClipName(**values)
    if clip.emotion == 1 and clip.intensity == 2:
        raise ValueError(f"{base!r} is not a RAVDESS name: neutral has no strong intensity")
    return clip
