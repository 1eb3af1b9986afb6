"""The corpus' codes and the class labels: the single source of truth for both halves.

RAVDESS names eight emotions (codes 1..8). The product trains on seven classes by
default, merging neutral (1) and calm (2), which the corpus authors themselves
describe as nearly indistinguishable; ``num_classes=8`` keeps them apart.
"""

from __future__ import annotations

NUM_ACTORS = 24  # actors 1..24, odd male, even female

# Code -> name tables of the fields of a RAVDESS file name (MM-VV-EE-II-SS-RR-AA).
MODALITIES = {1: "audio-video", 2: "video-only", 3: "audio-only"}
VOCAL_CHANNELS = {1: "speech", 2: "song"}
INTENSITIES = {1: "normal", 2: "strong"}
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}

# Code -> name, in the corpus' own order (the EE field of a file name).
EMOTIONS: dict[int, str] = {
    1: "neutral",
    2: "calm",
    3: "happy",
    4: "sad",
    5: "angry",
    6: "fearful",
    7: "disgust",
    8: "surprised",
}

CLASS_NAMES_8: tuple[str, ...] = tuple(EMOTIONS.values())
CLASS_NAMES: tuple[str, ...] = ("neutral/calm",) + CLASS_NAMES_8[2:]
NUM_CLASSES: int = len(CLASS_NAMES)


def class_names(num_classes: int = NUM_CLASSES) -> tuple[str, ...]:
    """Class names for 7 (merged) or 8 (corpus) classes."""
    if num_classes == 7:
        return CLASS_NAMES
    if num_classes == 8:
        return CLASS_NAMES_8
    raise ValueError(f"num_classes must be 7 or 8, got {num_classes}")


def label_from_emotion(code: int, num_classes: int = NUM_CLASSES) -> int:
    """Map an emotion code 1..8 to a label 0..num_classes-1.

    7 classes: neutral and calm -> 0, happy -> 1, ..., surprised -> 6.
    8 classes: code - 1.
    """
    if code not in EMOTIONS:
        raise ValueError(f"emotion code must be one of 1..8, got {code}")
    if num_classes == 8:
        return code - 1
    if num_classes == 7:
        return max(code - 2, 0)
    raise ValueError(f"num_classes must be 7 or 8, got {num_classes}")
