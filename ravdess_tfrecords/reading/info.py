"""``ravdess_info.json``, the metadata the converter writes beside the shards: ``DatasetInfo``.

Read without TensorFlow (local paths through ``os``; URIs through ``storage``, which
imports TensorFlow only for them), so the TF-free data source and the tf.data
``Builder`` share one reader and one set of checks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
from collections.abc import Iterable
from typing import Any

from ravdess_tfrecords import labels, schema, storage
from ravdess_tfrecords.errors import UserError

_REQUIRED_KEYS = ("schema_version", "class_names", "num_classes", "audio_frames", "shards")


def _join(data_dir: str, name: str) -> str:
    # os.path.join would use "\\" on Windows for gs:// paths; gfile paths are posix.
    return posixpath.join(data_dir, name) if "://" in data_dir else os.path.join(data_dir, name)


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """One shard file: its name (no directory), actor, number of examples and size in bytes
    (-1: not recorded, as in hand-made directories)."""

    file: str
    actor: int
    num_examples: int
    sha256: str = ""
    size: int = -1


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """The contents of ``ravdess_info.json`` (written by the converter).

    Attributes:
      data_dir: the directory it was read from.
      class_names: the stored 7 class names (``labels.class_names(8)`` for 8 classes).
      audio_frames: M, the padded MFCC frame count; audio is ``(24, M, 1)``.
      modality: ``audio_video`` (audio and face crops) or ``audio`` (converted from RAVDESS's
        audio-only recordings: no ``video`` feature, ``video_shape`` None; ``as_dataset``
        yields ``(audio, label)``).
      counts: ``{"per_actor": {"1": n, ...}, "per_label": {...}, "per_emotion": {...}}``
        (JSON keys are strings).
      preprocessing: the converter's settings (sample rate, hop length, ...).
      shards: one ``ShardInfo`` per shard file.
      file_format: ``tfrecord`` or ``array_record`` (``schema.FILE_FORMATS``): how the shards are stored.
    """

    data_dir: str
    name: str
    version: str
    schema_version: int
    class_names: tuple[str, ...]
    num_classes: int
    audio_frames: int
    audio_shape: tuple[int, ...]
    video_shape: tuple[int, ...] | None
    num_examples: int
    counts: dict[str, Any]
    preprocessing: dict[str, Any]
    shards: tuple[ShardInfo, ...]
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    failures: tuple[dict[str, Any], ...] = ()
    modality: str = schema.DEFAULT_MODALITY
    file_format: str = schema.DEFAULT_FILE_FORMAT

    @property
    def has_video(self) -> bool:
        return self.modality == "audio_video"

    @property
    def input_names(self) -> tuple[str, ...]:
        """The model inputs this dataset feeds: ``("audio", "video")``, or ``("audio",)`` when audio-only."""
        return schema.input_names(self.modality)

    def __repr__(self) -> str:
        """One line: where, how many examples, actors and shards, the schema (``str`` has more)."""
        return (f"DatasetInfo({self.data_dir!r}: {self.num_examples} examples, {len(self.actors)} actors, "
                f"{len(self.shards)} shards, schema {self.schema_version})")

    def __str__(self) -> str:
        """A few readable lines; the full record (every shard and its sha256) stays in ``ravdess_info.json``."""
        per_label = self.counts.get("per_label") or {}
        names = labels.class_names(7)
        lines = [
            f"{self.name} {self.version} in {self.data_dir} (schema version {self.schema_version})".replace("  ", " "),
            f"  {self.num_examples} examples from {len(self.actors)} actors ({_ranges(self.actors)}) "
            f"in {len(self.shards)} shards",
            (f"  audio {self.audio_shape} float32, video {self.video_shape} uint8 (M = {self.audio_frames})"
             if self.has_video else
             f"  audio {self.audio_shape} float32 (M = {self.audio_frames}); audio only, no video"),
            f"  {self.num_classes} classes: {', '.join(self.class_names)}",
        ]
        if per_label:
            try:
                ordered = sorted(per_label.items(), key=lambda kv: int(kv[0]))
                shown = ", ".join(f"{names[int(k)]} {v}" for k, v in ordered)
            except (ValueError, IndexError):  # not the converter's label numbers: as they are
                shown = ", ".join(f"{k} {v}" for k, v in per_label.items())
            lines.append(f"  examples per label: {shown}")
        if self.failures:
            lines.append(f"  {len(self.failures)} clips failed to convert (listed in {schema.INFO_FILENAME})")
        return "\n".join(lines)

    @property
    def actors(self) -> tuple[int, ...]:
        """Actors with at least one example, sorted."""
        return tuple(sorted({s.actor for s in self.shards if s.num_examples > 0}))

    def examples_per_actor(self) -> dict[int, int]:
        """``{actor: examples}`` summed over that actor's shards."""
        out: dict[int, int] = {}
        for s in self.shards:
            out[s.actor] = out.get(s.actor, 0) + s.num_examples
        return dict(sorted(out.items()))

    def files(self, actors: Iterable[int]) -> list[str]:
        """Full paths of the shards of ``actors``, in actor then shard order."""
        wanted = set(actors)
        chosen = sorted((s for s in self.shards if s.actor in wanted), key=lambda s: (s.actor, s.file))
        return [_join(self.data_dir, s.file) for s in chosen]

    def num_bytes_of(self, actors: Iterable[int]) -> int | None:
        """Total size of the actors' shards, or None if a shard is listed without its size."""
        actors = set(actors)
        chosen = [s for s in self.shards if s.actor in actors]
        return None if any(s.size < 0 for s in chosen) else sum(s.size for s in chosen)

    def num_examples_of(self, actors: Iterable[int]) -> int:
        wanted = set(actors)
        return sum(s.num_examples for s in self.shards if s.actor in wanted)

    @classmethod
    def read(cls, data_dir: str | os.PathLike) -> DatasetInfo:
        """Read and check ``data_dir/ravdess_info.json`` and the shards it lists.

        Raises:
          FileNotFoundError: no directory, no ``ravdess_info.json``, or no / missing shards,
            with the command that writes them.
          ValueError: a schema version this reader does not know (a directory of an older
            converter, whose info was ``dataset_info.json``), or a malformed file.
        """
        data_dir = os.path.expanduser(os.fspath(data_dir))
        hint = schema.CONVERT_HINT.format(path=data_dir)
        if not storage.isdir(data_dir):
            raise FileNotFoundError(f"RAVDESS TFRecord directory {data_dir!r} does not exist: {hint}")
        path = _join(data_dir, schema.INFO_FILENAME)
        if not storage.exists(path):
            old = _old_info_message(data_dir)
            if old:
                raise UserError(old)
            found = [f for fmt in schema.FILE_FORMATS  # either format's shards
                     for f in storage.glob(_join(data_dir, schema.shard_glob(None, fmt)))]
            what = f"has {len(found)} shard files but no" if found else "has no shards and no"
            raise FileNotFoundError(f"{data_dir!r} {what} {schema.INFO_FILENAME}: {hint}")
        try:
            raw = json.loads(storage.read_text(path))
        except json.JSONDecodeError as e:
            raise UserError(f"{path} is not valid JSON ({e}): {hint}") from e
        missing = [k for k in _REQUIRED_KEYS if k not in raw]
        if missing:
            raise UserError(f"{path} lacks {missing}; is it a ravdess_tfrecords directory? {hint}")
        if raw["schema_version"] not in schema.READABLE_SCHEMA_VERSIONS:
            raise UserError(
                f"{path} was written with schema version {raw['schema_version']}, but this "
                f"ravdess_tfrecords reads schema version {schema.SCHEMA_VERSION}: re-convert, {hint}"
            )
        audio_frames = int(raw["audio_frames"])
        modality = raw.get("modality", schema.DEFAULT_MODALITY)
        if modality not in schema.MODALITIES:
            raise UserError(f"{path}: unknown modality {modality!r} (this reader knows "
                            f"{', '.join(schema.MODALITIES)}): {hint}")
        file_format = raw.get("file_format", schema.DEFAULT_FILE_FORMAT)
        if file_format not in schema.FILE_FORMATS:
            raise UserError(f"{path}: unknown file_format {file_format!r} (this reader knows "
                            f"{', '.join(schema.FILE_FORMATS)}): {hint}")
        stored_video = raw.get("video_shape")  # null in an audio-only directory
        video_shape = tuple(stored_video) if stored_video is not None else (
            schema.VIDEO_SHAPE if modality == "audio_video" else None)
        info = cls(
            data_dir=data_dir,
            name=raw.get("name", "ravdess"),
            version=raw.get("version", ""),
            schema_version=int(raw["schema_version"]),
            class_names=tuple(raw["class_names"]),
            num_classes=int(raw["num_classes"]),
            audio_frames=audio_frames,
            audio_shape=tuple(raw.get("audio_shape", schema.audio_shape(audio_frames))),
            video_shape=video_shape,
            num_examples=int(raw.get("num_examples", sum(s["num_examples"] for s in raw["shards"]))),
            counts=dict(raw.get("counts", {})),
            preprocessing=dict(raw.get("preprocessing", {})),
            shards=tuple(
                ShardInfo(s["file"], int(s["actor"]), int(s["num_examples"]), s.get("sha256", ""),
                          int(s.get("size", -1)))
                for s in raw["shards"]
            ),
            summary=dict(raw.get("summary", {})),
            failures=tuple(raw.get("failures", ())),
            modality=modality,
            file_format=file_format,
        )
        info._check(path, hint)
        return info

    def _check(self, path: str, hint: str) -> None:
        video_shape = schema.VIDEO_SHAPE if self.has_video else None
        if self.audio_shape != schema.audio_shape(self.audio_frames) or self.video_shape != video_shape:
            raise UserError(
                f"{path}: audio_shape {self.audio_shape} / video_shape {self.video_shape} differ from the "
                f"{self.modality} schema's {schema.audio_shape(self.audio_frames)} / {video_shape}: {hint}"
            )
        if tuple(self.class_names) != labels.CLASS_NAMES or self.num_classes != labels.NUM_CLASSES:
            raise UserError(f"{path}: class names {self.class_names} differ from {labels.CLASS_NAMES}: {hint}")
        if not self.shards or not sum(s.num_examples for s in self.shards):
            raise FileNotFoundError(f"{self.data_dir!r} has no shards with examples ({path} lists none): {hint}")
        # A missing or resized shard (deleted, truncated, or a conversion publishing right now)
        # is an error here, not a parse error mid-epoch.
        absent, resized = [], []
        for s in self.shards:
            try:
                size, _ = storage.size_and_mtime(_join(self.data_dir, s.file))
            except FileNotFoundError:
                absent.append(s.file)
                continue
            if s.size >= 0 and size != s.size:
                resized.append(f"{s.file} ({size} bytes, listed with {s.size})")
        if absent:
            raise FileNotFoundError(f"{self.data_dir!r} lacks shards listed in {path}: {_some(absent)}: {hint}")
        if resized:
            raise UserError(
                f"{self.data_dir!r} has shards whose size differs from {path}: {_some(resized)}; the directory "
                f"is damaged or a conversion is writing it right now (then retry when it is done): {hint}")


def _old_info_message(data_dir: str) -> str | None:
    """``schema.old_info_message`` for ``data_dir``'s ``dataset_info.json``, if it is ours."""
    try:
        text = storage.read_text(_join(data_dir, schema.OLD_INFO_FILENAME))
        return schema.old_info_message(data_dir, json.loads(text))
    except (OSError, ValueError):  # absent, unreadable, not JSON: not an old directory
        return None


def _ranges(numbers: Iterable[int]) -> str:
    """``1-17, 20, 23-24``."""
    out: list[list[int]] = []
    for n in sorted(numbers):
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in out)


def _some(items: list[str], shown: int = 5) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")
