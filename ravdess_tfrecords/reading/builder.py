"""The dataset builder (tensorflow_datasets style) and ``load``: what other TF projects import.

::

    import ravdess_tfrecords as rt
    builder = rt.Builder("/data/ravdess-tfrecords")
    builder.info.class_names, builder.info.audio_frames, builder.info.counts
    builder.split_actors("luna5", fold=2)       # {"train": (...), "validation": (...), "test": (...)}
    train = builder.as_dataset("train", batch_size=32)            # augmented, shuffled
    test = rt.load("/data/ravdess-tfrecords", "test", scheme="kfold", fold=3)

The data directory is what ``python -m ravdess_tfrecords.convert`` writes: one
shard set per actor plus ``ravdess_info.json`` (read here) and the metadata
tensorflow_datasets reads (``dataset_info.json``, ``features.json``,
``label.labels.txt``: ``tfds.builder_from_directory(data_dir)`` works too). Paths
go through ``tf.io.gfile``, so any filesystem TensorFlow reads (local, ``gs://``, ...) works.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

import tensorflow as tf

from ravdess_tfrecords import labels, schema
from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.reading import augment as augment_lib
from ravdess_tfrecords.reading import pipeline, splits

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
        if not tf.io.gfile.isdir(data_dir):
            raise FileNotFoundError(f"RAVDESS TFRecord directory {data_dir!r} does not exist: {hint}")
        path = _join(data_dir, schema.INFO_FILENAME)
        if not tf.io.gfile.exists(path):
            old = _old_info_message(data_dir)
            if old:
                raise UserError(old)
            found = tf.io.gfile.glob(_join(data_dir, schema.shard_glob()))
            what = f"has {len(found)} shard files but no" if found else "has no shards and no"
            raise FileNotFoundError(f"{data_dir!r} {what} {schema.INFO_FILENAME}: {hint}")
        with tf.io.gfile.GFile(path, "r") as f:
            try:
                raw = json.load(f)
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
                size = tf.io.gfile.stat(_join(self.data_dir, s.file)).length
            except tf.errors.NotFoundError:
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
        with tf.io.gfile.GFile(_join(data_dir, schema.OLD_INFO_FILENAME), "r") as f:
            return schema.old_info_message(data_dir, json.load(f))
    except (tf.errors.OpError, ValueError):  # absent, unreadable, not JSON: not an old directory
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


def _training_default(split: str) -> bool:
    return "train" in split.split("+")


class Builder:
    """A converted RAVDESS directory, in the style of ``tfds.core.DatasetBuilder``.

    Args:
      data_dir: the converter's output directory.

    Raises:
      FileNotFoundError / ValueError: see ``DatasetInfo.read``.
    """

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = os.path.expanduser(os.fspath(data_dir))
        self.info = DatasetInfo.read(self.data_dir)

    def __repr__(self) -> str:
        return (
            f"Builder({self.data_dir!r}: {self.info.num_examples} examples, "
            f"actors {list(self.info.actors)}, audio {self.info.audio_shape})"
        )

    def class_names(self, num_classes: int = labels.NUM_CLASSES) -> tuple[str, ...]:
        return labels.class_names(num_classes)

    def split_actors(
        self,
        scheme: str = "speaker",
        *,
        folds: int | None = None,
        fold: int = 0,
        actors: Mapping[str, Iterable[int]] | None = None,
    ) -> dict[str, tuple[int, ...]]:
        """``{"train": actors, "validation": actors, "test": actors}`` for a scheme (see ``splits``).

        Raises:
          ValueError: naming any actor that has no shards here, or that is in two sets.
        """
        return splits.split_actors(scheme, folds=folds, fold=fold, actors=actors, available=self.info.actors)

    def actors_of(self, split: str = "train", **scheme_kwargs) -> tuple[int, ...]:
        """Actors of ``split``: ``"train"``, ``"validation"``, ``"test"``, a union ``"a+b"``,
        or ``"all"`` (every actor with shards here, whatever the scheme)."""
        if split == "all":
            return self.info.actors
        return splits.resolve(split, self.split_actors(**scheme_kwargs))

    def num_examples(
        self,
        split: str = "train",
        *,
        vocal_channels: str | Iterable[str] | None = None,
        intensities: int | str | Iterable[int | str] | None = None,
        **scheme_kwargs,
    ) -> int:
        """Examples in ``split`` that the vocal-channel / intensity filters keep (all by default).

        Unfiltered (or a filter that keeps every stored channel): from ``ravdess_info.json``;
        filtered: counted in one pass over the split's shards (``pipeline.count_records``).
        """
        chosen = self.actors_of(split, **scheme_kwargs)
        vocal_channels = self._channel_filter(vocal_channels)
        if vocal_channels is None and intensities is None:
            return self.info.num_examples_of(chosen)
        return pipeline.count_records(self.info.files(chosen), vocal_channels, intensities)

    def label_counts(
        self,
        split: str = "train",
        *,
        num_classes: int = labels.NUM_CLASSES,
        vocal_channels: str | Iterable[str] | None = None,
        **scheme_kwargs,
    ) -> dict[int, int]:
        """``{label: examples}`` of ``split`` (every label 0..num_classes-1) after the vocal-channel filter.

        One pass over the split's shards that parses only scalars (``pipeline.count_labels``):
        ``ravdess_info.json`` has per-label totals of the whole corpus, not per actor.
        """
        vocal_channels = self._channel_filter(vocal_channels)
        return pipeline.count_labels(self.files(split, **scheme_kwargs), num_classes, vocal_channels)

    def files(self, split: str = "train", **scheme_kwargs) -> list[str]:
        """Shard paths of ``split``."""
        return self.info.files(self.actors_of(split, **scheme_kwargs))

    def as_dataset(
        self,
        split: str = "train",
        *,
        scheme: str = "speaker",
        folds: int | None = None,
        fold: int = 0,
        actors: Mapping[str, Iterable[int]] | None = None,
        batch_size: int = 32,
        training: bool | None = None,
        shuffle: bool | None = None,
        shuffle_buffer: int | None = None,
        seed: int | None = None,
        augment: augment_lib.AugmentConfig | bool | None = None,
        num_classes: int = labels.NUM_CLASSES,
        one_hot: bool = False,
        with_metadata: bool = False,
        as_dict: bool = False,
        vocal_channels: str | Iterable[str] | None = None,
        intensities: int | str | Iterable[int | str] | None = None,
        drop_remainder: bool | None = None,
        cache: bool | str | None = None,
        deterministic: bool | None = None,
        augment_on: str = "host",
        initial_epoch: int | None = None,
    ) -> tf.data.Dataset:
        """A batched ``tf.data.Dataset`` of ``((audio, video), label)`` for one split.

        Args:
          split: ``"train"``, ``"validation"``, ``"test"``, a union ``"train+validation"``, or
            ``"all"`` (every actor here, whatever the scheme).
          scheme, folds, fold, actors: which actors form the split (``splits.split_actors``).
          batch_size: B.
          training: shuffle + augment + drop_remainder + non-deterministic order;
            defaults to True when ``split`` includes ``"train"``.
          shuffle, drop_remainder, deterministic: override the training defaults.
          shuffle_buffer: serialized records in the shuffle buffer (default min(split size, 2048)).
          seed: makes shuffling and augmentation reproducible (and the order deterministic).
          augment: an ``augment.AugmentConfig``, or False to turn it off; default on in training.
          num_classes: 7 (neutral and calm merged, the default) or 8 (from the stored emotion code).
          one_hot: labels float32 ``(B, num_classes)`` instead of int64 ``(B,)``.
          with_metadata: yield ``(inputs, label, metadata)``, metadata a dict of
            ``schema.METADATA_KEYS`` (actor, gender, intensity, statement, repetition,
            vocal_channel, clip_id, source, emotion, audio_frames), each ``(B,)``.
          as_dict: inputs as ``{"audio": ..., "video": ...}`` (Keras input names).
          vocal_channels: keep only ``"speech"`` and/or ``"song"``.
          intensities: keep only 1/``"normal"`` and/or 2/``"strong"``.
          cache: True caches the decoded examples in memory, a path caches them to a
            file, False never; None (default) caches in memory when the split's shards
            are small (``pipeline.autocache``: at most 256 MiB, the whole corpus is ~210 MB).
          augment_on: ``"host"`` (default): augmentation in this pipeline, video float32
            in [0, 1]; ``"device"``: the host only reads, parses and batches, video stays
            uint8 0..255 for a model behind ``augment.AugmentLayer``
            (``augment.with_augmentation``), which augments in training and scales.
          initial_epoch: None (default): each pass over the dataset is a new epoch, counted from its
            creation (a new process starts again at the first epoch's order). ``k``: the endless stream
            of epochs k, k+1, ..., each ``num_examples(...) // batch_size`` batches, with shuffling and
            augmentation keyed on ``(seed, epoch)``: what a resumed run reads
            (``model.fit(ds, steps_per_epoch=..., initial_epoch=k)``); ``ds.take(steps)`` is epoch k alone.

        Returns:
          ``audio`` float32 ``(B, 24, M, 1)``, ``video`` float32 ``(B, 6, 64, 64, 3)``
          in [0, 1] (uint8 with ``augment_on="device"``), ``label`` int64 ``(B,)``;
          static B when ``drop_remainder``.
        """
        chosen = self.actors_of(split, scheme=scheme, folds=folds, fold=fold, actors=actors)
        if not chosen:
            raise UserError(f"split {split!r} of scheme {scheme!r} has no actors")
        vocal_channels = self._channel_filter(vocal_channels)  # None: keep the known length, skip the stage
        training = _training_default(split) if training is None else training
        opts = pipeline.Options(
            audio_frames=self.info.audio_frames,
            modality=self.info.modality,
            batch_size=batch_size,
            training=training,
            shuffle=shuffle,
            shuffle_buffer=shuffle_buffer,
            seed=seed,
            augment=augment,
            num_classes=num_classes,
            one_hot=one_hot,
            with_metadata=with_metadata,
            as_dict=as_dict,
            vocal_channels=vocal_channels,
            intensities=intensities,
            drop_remainder=drop_remainder,
            cache=cache,
            deterministic=deterministic,
            augment_on=augment_on,
            initial_epoch=initial_epoch,
        )
        return pipeline.make_dataset(self.info.files(chosen), opts, self.info.num_examples_of(chosen),
                                     self.info.num_bytes_of(chosen))

    def _channel_filter(self, wanted: str | Iterable[str] | None) -> str | Iterable[str] | None:
        """The vocal-channel filter to apply: ``wanted``, or None when it keeps everything stored (nothing
        to filter); an error if it keeps nothing stored."""
        if wanted is None:
            return None
        stored = self.info.preprocessing.get("vocal_channels")
        channels = (wanted,) if isinstance(wanted, str) else tuple(wanted)
        if stored is None or set(channels) - set(pipeline.VOCAL_CHANNELS):
            return wanted  # unknown here, or invalid: the pipeline filters or reports it
        if not set(channels) & set(stored):
            raise UserError(
                f"vocal_channels={list(channels)} but {self.data_dir!r} was converted with {list(stored)} "
                "only; re-convert with --vocal_channels=speech,song to include song"
            )
        return None if set(stored) <= set(channels) else wanted


def load(
    data_dir: str | os.PathLike,
    split: str = "train",
    *,
    scheme: str = "speaker",
    batch_size: int = 32,
    training: bool | None = None,
    **options,
) -> tf.data.Dataset:
    """``Builder(data_dir).as_dataset(split, ...)``: batches of ``((audio, video), label)``.

    See ``Builder.as_dataset`` for the options (fold, actors, seed, augment,
    num_classes, one_hot, with_metadata, as_dict, vocal_channels, intensities, cache,
    augment_on, initial_epoch).
    """
    return Builder(data_dir).as_dataset(
        split, scheme=scheme, batch_size=batch_size, training=training, **options
    )
