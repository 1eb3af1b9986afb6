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

import os
from collections.abc import Iterable, Mapping

import tensorflow as tf

from ravdess_tfrecords import labels, schema
from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.reading import augment as augment_lib
from ravdess_tfrecords.reading import pipeline, selection
from ravdess_tfrecords.reading.info import DatasetInfo, ShardInfo

__all__ = ["Builder", "DatasetInfo", "ShardInfo", "load"]


def _training_default(split: str) -> bool:
    return "train" in split.split("+")


def require_tfrecord(info: DatasetInfo) -> None:
    """tf.data reads TFRecord shards only: for an ArrayRecord directory (``info.file_format``), a ``UserError``
    naming what reads it. tensorflow_datasets' ``as_dataset`` refuses ArrayRecord too; reading it through a
    Python generator would put a Python callback in the graph, which this pipeline never has."""
    if info.file_format != "tfrecord":
        raise UserError(
            f"{info.data_dir!r} holds {info.file_format} shards ({schema.INFO_FILENAME}), which tf.data does not "
            f"read: use ravdess_tfrecords.data_source({info.data_dir!r}, ...) (or tfds.data_source), or rewrite them "
            f"as TFRecord: python -m ravdess_tfrecords.reformat --data_dir={info.data_dir} --output=DIR "
            "--file_format=tfrecord")


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
        return selection.split_actors(self.info, scheme, folds=folds, fold=fold, actors=actors)

    def actors_of(self, split: str = "train", **scheme_kwargs) -> tuple[int, ...]:
        """Actors of ``split``: ``"train"``, ``"validation"``, ``"test"``, a union ``"a+b"``,
        or ``"all"`` (every actor with shards here, whatever the scheme)."""
        return selection.actors_of(self.info, split, **scheme_kwargs)

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
        require_tfrecord(self.info)
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
        require_tfrecord(self.info)
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
        require_tfrecord(self.info)
        return pipeline.make_dataset(self.info.files(chosen), opts, self.info.num_examples_of(chosen),
                                     self.info.num_bytes_of(chosen))

    def _channel_filter(self, wanted: str | Iterable[str] | None) -> str | Iterable[str] | None:
        """The vocal-channel filter to apply: ``wanted``, or None when it keeps everything stored (nothing
        to filter); an error if it keeps nothing stored (``selection.channel_filter``)."""
        return selection.channel_filter(self.info, wanted)


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
