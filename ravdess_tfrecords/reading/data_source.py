"""``data_source``: a split of ArrayRecord shards as a random-access source of numpy examples, no TensorFlow.

Named after ``tfds.data_source``. ``len(src)`` and ``src[i]`` (a dict of numpy values), so
``torch.utils.data.DataLoader(src)`` takes it as a map-style dataset and ``grain.MapDataset.source(src)``
as a Grain source (JAX; Keras 3's ``fit`` takes Grain datasets)::

    src = rt.data_source("/data/ravdess-array_record", split="train", scheme="kfold", fold=2)
    example = src[0]   # {"audio": (24, M, 1) float32, "video": (6, 64, 64, 3) uint8, "label": int64, ...}

The same actors, filters and example order as ``rt.load(data_dir, split, training=False)``
(``selection``: the split's shards in ``ravdess_info.json`` order, interleaved one record at a time
as tf.data interleaves them, ``selection.interleave_order``). Examples are never augmented: augmentation
runs in the model (``augment.with_augmentation(model)`` / ``augment.AugmentLayer``, which takes uint8
video). For video as float32 in [0, 1], as ``rt.load`` yields it, apply ``to_unit``.

Examples are parsed with the protobuf runtime (``example_proto``) and decoded with numpy; shards are
read with ``array_record``'s ``ArrayRecordDataSource``, the reader tensorflow_datasets uses.
"""

from __future__ import annotations

import dataclasses
import operator
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from array_record.python import array_record_data_source

from ravdess_tfrecords import labels, schema, storage
from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.reading import selection
from ravdess_tfrecords.reading.example_proto import Example
from ravdess_tfrecords.reading.info import DatasetInfo

__all__ = ["DataSource", "data_source", "parse", "to_unit"]

ARRAY_RECORD = "array_record"  # the schema.FILE_FORMATS entry this reads
# How a TFRecord directory gets ArrayRecord shards ({path}: that directory).
TO_ARRAY_RECORD_HINT = "python -m ravdess_tfrecords.reformat --data_dir={path} --output=OUT"


def parse(serialized: bytes, audio_frames: int, modality: str = schema.DEFAULT_MODALITY) -> dict[str, Any]:
    """Decode one serialized ``tf.train.Example`` of the schema (``schema.serialize``'s output).

    Returns:
      ``audio`` float32 ``(24, M, 1)``, ``video`` uint8 ``(6, 64, 64, 3)`` (audio-video datasets),
      ``label`` and the other int features as ``np.int64``, the string features as ``str``
      (``schema.METADATA_KEYS``). Arrays are writable copies.

    Raises:
      ValueError: a feature missing or of the wrong kind or size.
    """
    stored = Example.FromString(serialized).features.feature
    out: dict[str, Any] = {}
    for name, spec in schema.features(modality).items():
        if name not in stored:
            raise ValueError(f"the example lacks feature {name!r}")
        values = stored[name].int64_list.value if spec.kind == "int" else stored[name].bytes_list.value
        if len(values) != 1:
            raise ValueError(f"feature {name!r} holds {len(values)} values of its kind, the schema one")
        if spec.kind == "tensor":
            shape = schema.audio_shape(audio_frames) if name == "audio" else schema.VIDEO_SHAPE
            array = np.frombuffer(values[0], spec.dtype)
            if array.size != int(np.prod(shape)):
                raise ValueError(f"feature {name!r} holds {array.size} values, the schema {shape}")
            out[name] = array.reshape(shape).astype(spec.dtype.newbyteorder("="))  # a native, writable copy
        elif spec.kind == "int":
            out[name] = np.int64(values[0])
        else:
            out[name] = values[0].decode()
    return out


def to_unit(video: np.ndarray) -> np.ndarray:
    """uint8 ``(..., 3)`` -> float32 ``x / 255`` in [0, 1]: ``rt.load``'s video (``augment.to_unit``), bit-exact."""
    return np.asarray(video, np.uint8).astype(np.float32) / np.float32(255)


@dataclasses.dataclass(frozen=True)
class _WholeShard:
    """array_record's ``FileInstruction`` (tensorflow_datasets' shape) for a whole shard of known length.

    Given the lengths (``ravdess_info.json``'s, whose shard sizes ``DatasetInfo.read`` checks),
    ``ArrayRecordDataSource`` opens no reader until the first read: once a process has opened one, a
    process forked from it crashes opening its own (a DataLoader worker; see docs/reading.md).
    """

    filename: str
    skip: int
    take: int
    examples_in_shard: int


def _kept(example: Mapping[str, Any], vocal_channels: tuple[str, ...] | None,
          intensities: tuple[int, ...] | None) -> bool:
    return ((vocal_channels is None or example["vocal_channel"] in vocal_channels)
            and (intensities is None or int(example["intensity"]) in intensities))


class DataSource(Sequence):
    """Random access to one split: ``len(src)``, ``src[i]`` (``parse``'s dict), ``src.info``.

    Picklable (``ArrayRecordDataSource`` reopens its files), so worker processes take it: spawned or
    forkserver ones always; forked ones only while this process has read nothing (array_record's reader
    crashes in a process forked after its parent opened one).
    """

    def __init__(self, info: DatasetInfo, files: Sequence[str], lengths: Sequence[int], order: np.ndarray,
                 num_classes: int = labels.NUM_CLASSES):
        self.info = info
        self.files = tuple(files)
        self._order = order  # int64 (N,): positions in the concatenated shards, in reading order
        self._num_classes = num_classes
        self._records = array_record_data_source.ArrayRecordDataSource(
            [_WholeShard(f, 0, n, n) for f, n in zip(files, lengths, strict=True)])

    def __len__(self) -> int:
        return len(self._order)

    def _example(self, serialized: bytes) -> dict[str, Any]:
        example = parse(serialized, self.info.audio_frames, self.info.modality)
        if self._num_classes == 8:
            example["label"] = np.int64(labels.label_from_emotion(int(example["emotion"]), 8))
        return example

    def _position(self, index) -> int:
        i = operator.index(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a data source of {len(self)} examples")
        return int(self._order[i])

    def __getitem__(self, index) -> dict[str, Any]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        return self._example(self._records[self._position(index)])

    # No __getitems__: ArrayRecordDataSource's batched read runs on a thread pool, which crashed in a
    # forked DataLoader worker (torch 2.13, array-record 0.8.6); DataLoader and Grain read index by index.

    def __repr__(self) -> str:
        return f"DataSource({self.info.data_dir!r}: {len(self)} examples from {len(self.files)} shards)"


def data_source(
    data_dir: str | os.PathLike,
    split: str = "train",
    *,
    scheme: str = "speaker",
    folds: int | None = None,
    fold: int = 0,
    actors: Mapping[str, Iterable[int]] | None = None,
    vocal_channels: str | Iterable[str] | None = None,
    intensities: int | str | Iterable[int | str] | None = None,
    num_classes: int = labels.NUM_CLASSES,
) -> DataSource:
    """One split of a local ArrayRecord directory as a ``DataSource``; no TensorFlow.

    Args:
      data_dir: a directory the converter wrote with ``--file_format=array_record``.
      split, scheme, folds, fold, actors, vocal_channels, intensities, num_classes: as in
        ``Builder.as_dataset`` (one set of rules: ``selection``, ``splits``).

    Returns:
      ``len()`` examples; ``src[i]``: ``audio`` float32 ``(24, M, 1)``, ``video`` uint8 ``(6, 64, 64, 3)``
      (audio-video datasets), ``label`` int64 (0..6, or 0..7 with ``num_classes=8``), and
      ``schema.METADATA_KEYS``. Unaugmented; in ``rt.load(..., training=False)``'s order.

    Raises:
      UserError: a URI or a TFRecord directory (with how to get ArrayRecord shards), an unknown split,
        a filter that keeps nothing stored; those of ``DatasetInfo.read``.
    """
    data_dir = storage.expand(os.fspath(data_dir))
    if not storage.is_local(data_dir):
        raise UserError(f"data_source reads local directories (ArrayRecord's reader opens local files): copy "
                        f"{data_dir} to a local disk first")
    info = DatasetInfo.read(data_dir)
    if info.file_format != ARRAY_RECORD:
        hint = TO_ARRAY_RECORD_HINT.format(path=data_dir)
        raise UserError(f"{data_dir!r} holds {info.file_format} shards, read in sequence by rt.load; data_source "
                        f"reads ArrayRecord shards by index: write them with `{hint}` and pass OUT")
    if num_classes not in (7, 8):
        raise UserError(f"num_classes must be 7 or 8, got {num_classes}")
    chosen = selection.actors_of(info, split, scheme=scheme, folds=folds, fold=fold, actors=actors)
    if not chosen:
        raise UserError(f"split {split!r} of scheme {scheme!r} has no actors")
    channels, codes = selection.normalize_filters(selection.channel_filter(info, vocal_channels), intensities)
    files = info.files(chosen)
    listed = {os.path.join(info.data_dir, s.file): s.num_examples for s in info.shards}
    lengths = [listed[f] for f in files]
    starts = np.cumsum([0, *lengths])
    order = np.array([starts[f] + r for f, r in selection.interleave_order(lengths)], np.int64)
    source = DataSource(info, files, lengths, order, num_classes)
    if channels is not None or codes is not None:  # one pass over the split (as Builder.num_examples counts)
        kept = [i for i, example in enumerate(source[:]) if _kept(example, channels, codes)]
        source._order = order[kept]
    return source
