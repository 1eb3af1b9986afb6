"""The example schema: declared once, used by the writer and the reader.

This module is where the writing half (``convert``) and the reading half
(``builder``/``load``) meet. It holds the feature declarations, the shard and
metadata file names, and the functions that encode one example, decode a
batch of them and read a shard's records (``read_records``: TFRecord or ArrayRecord).
It needs only TensorFlow and numpy (and array-record for ArrayRecord shards), and
imports them only inside those functions, so the converter's worker processes can
read the constants without loading it.

Stored per example (``tf.train.Example``):

======================  =========  ==================  ====================================
feature                 dtype      shape               meaning
======================  =========  ==================  ====================================
``audio``               float32    (24, M, 1)          standardized MFCCs, pre-padded with 0
``video``               uint8      (6, 64, 64, 3)      face crops, RGB (audio-video datasets only)
``label``               int64      ()                  0..6, neutral and calm merged
``emotion``             int64      ()                  corpus emotion code 1..8
``audio_frames``        int64      ()                  MFCC frames before padding/cutting
``actor``               int64      ()                  1..24
``gender``              string     ()                  ``male`` / ``female``
``intensity``           int64      ()                  1 normal, 2 strong
``statement``           int64      ()                  1 or 2
``repetition``          int64      ()                  1 or 2
``vocal_channel``       string     ()                  ``speech`` / ``song``
``clip_id``             string     ()                  ``MM-VV-EE-II-SS-RR-AA``
``source``              string     ()                  source file name (no directory)
======================  =========  ==================  ====================================

``audio`` and ``video`` are stored as raw little-endian bytes, so a whole batch
decodes with one ``tf.io.decode_raw`` (and tensorflow_datasets reads them as
``Tensor(encoding="bytes")``). ``M`` (``audio_frames`` in ``ravdess_info.json``)
is the corpus' mean MFCC frame count, fixed at conversion.

A dataset holds one modality (``MODALITIES``, recorded as ``modality`` in
``ravdess_info.json``): ``audio_video``, converted from RAVDESS's audio-video
clips (modality 01), stores every feature above; ``audio``, converted from its
audio-only recordings (modality 03, ``Audio_Speech_Actors_01-24.zip``), stores
every feature but ``video`` (``features(modality)``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator, Mapping

import numpy as np

from ravdess_tfrecords.errors import UserError

# Bump when the stored features or the info file change incompatibly; the reader refuses others.
# 2: every shard listed with its size in bytes (readers check it).
# 3: the info file is ravdess_info.json; dataset_info.json is tensorflow_datasets' (TFDS_FILENAMES).
# 4: ``modality`` (audio-only datasets have no ``video``) and the ``standardize`` setting in the info file.
SCHEMA_VERSION = 4
# Versions this reader reads: a version-3 directory is audio-video, standardized over the whole sample.
READABLE_SCHEMA_VERSIONS = (3, 4)

INFO_FILENAME = "ravdess_info.json"
# The metadata tensorflow_datasets reads (``tfds.builder_from_directory``), written beside the shards.
TFDS_INFO_FILENAME = "dataset_info.json"
TFDS_FEATURES_FILENAME = "features.json"
TFDS_LABELS_FILENAME = "label.labels.txt"  # the ClassLabel names of the ``label`` feature
TFDS_FILENAMES = (TFDS_INFO_FILENAME, TFDS_FEATURES_FILENAME, TFDS_LABELS_FILENAME)
# Schema versions 1 and 2 named INFO_FILENAME so; tensorflow_datasets' file of that name replaces it.
OLD_INFO_FILENAME = TFDS_INFO_FILENAME
FAILURES_FILENAME = "failures.jsonl"
SHARD_PREFIX = "ravdess"

# What to tell a reader whose directory lacks shards or holds an old schema ({path}: that directory).
CONVERT_HINT = (
    "run `python -m ravdess_tfrecords.convert --input=RAVDESS_DIR --output={path}` "
    "(or `make tfrecords RAVDESS_DIR=... TFRECORDS_DIR={path}`; no corpus at hand: `make demo`)"
)



def old_info_message(data_dir: str, old_info: object) -> str | None:
    """What to tell a reader of ``data_dir`` that has no ``INFO_FILENAME`` but whose
    ``OLD_INFO_FILENAME`` holds ``old_info`` (parsed JSON): None unless an older converter wrote it."""
    version = old_info.get("schema_version") if isinstance(old_info, dict) else None
    if not isinstance(version, int):
        return None  # tensorflow_datasets' file, or none at all
    return (f"{data_dir!r} was written by an older ravdess_tfrecords converter (schema version {version}, "
            f"its info in {OLD_INFO_FILENAME}); this ravdess_tfrecords reads schema version {SCHEMA_VERSION} "
            f"({INFO_FILENAME}): re-convert, {CONVERT_HINT.format(path=data_dir)}")


NUM_MFCC = 24
NUM_FRAMES = 6
FACE_SIZE = 64
VIDEO_SHAPE = (NUM_FRAMES, FACE_SIZE, FACE_SIZE, 3)

# Keras input names: the models' Input layers and the pipeline's as_dict keys.
INPUT_NAMES = ("audio", "video")

# What one converted dataset holds -> the RAVDESS modality code of the files it is converted from.
MODALITIES = {"audio_video": 1, "audio": 3}
DEFAULT_MODALITY = "audio_video"  # what a directory without a ``modality`` entry (schema 3) holds


def check_modality(modality: str) -> str:
    """``modality`` itself, or a ``UserError`` naming the choices."""
    if modality not in MODALITIES:
        raise UserError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")
    return modality


def input_names(modality: str = DEFAULT_MODALITY) -> tuple[str, ...]:
    """The model inputs a dataset of ``modality`` can feed: ``("audio", "video")`` or ``("audio",)``."""
    return INPUT_NAMES if check_modality(modality) == "audio_video" else INPUT_NAMES[:1]


def audio_shape(audio_frames: int) -> tuple[int, int, int]:
    """``(24, M, 1)``: coefficients x frames x channel."""
    return (NUM_MFCC, audio_frames, 1)


@dataclasses.dataclass(frozen=True)
class Feature:
    """One stored feature: ``kind`` is ``tensor`` (raw bytes), ``int`` or ``str``."""

    kind: str
    dtype: np.dtype | None = None


FEATURES: dict[str, Feature] = {
    "audio": Feature("tensor", np.dtype("<f4")),
    "video": Feature("tensor", np.dtype("u1")),
    "label": Feature("int"),
    "emotion": Feature("int"),
    "audio_frames": Feature("int"),
    "actor": Feature("int"),
    "gender": Feature("str"),
    "intensity": Feature("int"),
    "statement": Feature("int"),
    "repetition": Feature("int"),
    "vocal_channel": Feature("str"),
    "clip_id": Feature("str"),
    "source": Feature("str"),
}



def features(modality: str = DEFAULT_MODALITY) -> dict[str, Feature]:
    """The stored features of a dataset of ``modality``: ``FEATURES``, without ``video`` for ``audio``."""
    kept = input_names(modality)
    return {k: v for k, v in FEATURES.items() if k not in INPUT_NAMES or k in kept}


# The metadata fields a reader may attach to each example for analysis.
METADATA_KEYS = tuple(k for k in FEATURES if k not in ("audio", "video", "label"))


def split_name(actor: int) -> str:
    """``actor01``: an actor's shards' split, as tensorflow_datasets names it."""
    return f"actor{actor:02d}"


# The shard file formats, named as tensorflow_datasets names them (``file_format`` in
# ``ravdess_info.json`` and in the tfds metadata): TFRecord, read sequentially by tf.data,
# and ArrayRecord, read by index (a random-access data source; no TensorFlow needed).
FILE_FORMATS = ("tfrecord", "array_record")
DEFAULT_FILE_FORMAT = "tfrecord"  # what a directory without a ``file_format`` entry holds


def check_file_format(file_format: str) -> str:
    if file_format not in FILE_FORMATS:
        raise UserError(f"unknown file format {file_format!r}: one of {', '.join(FILE_FORMATS)}")
    return file_format


def shard_name(actor: int, index: int, num_shards: int, file_format: str = DEFAULT_FILE_FORMAT) -> str:
    """``ravdess-actor01.tfrecord-00000-of-00002``: tensorflow_datasets' default file template,
    ``{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}`` (``.array_record-`` for ArrayRecord)."""
    return f"{SHARD_PREFIX}-{split_name(actor)}.{check_file_format(file_format)}-{index:05d}-of-{num_shards:05d}"


def shard_glob(actor: int | None = None, file_format: str = DEFAULT_FILE_FORMAT) -> str:
    """A glob matching the shards of one actor, or of all actors, in ``file_format``."""
    who = split_name(actor) if actor is not None else "actor[0-9][0-9]"
    return f"{SHARD_PREFIX}-{who}.{check_file_format(file_format)}-*-of-*"


def read_records(path: str, file_format: str = DEFAULT_FILE_FORMAT) -> Iterator[bytes]:
    """The serialized examples of one shard, in file order (``path``: local or a ``tf.io.gfile`` URI).

    TFRecord is read with TensorFlow; ArrayRecord with ``array_record`` (no TensorFlow for a
    local path; a URI's shard is copied to a local temporary file first: its reader opens local files).

    Raises:
      ValueError: the file is not a readable shard of ``file_format`` (truncated, corrupt, another
        format), with the reader's reason; records before the damage have been yielded.
    """
    if check_file_format(file_format) == "tfrecord":
        import tensorflow as tf

        try:
            yield from tf.data.TFRecordDataset(path).as_numpy_iterator()
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            raise ValueError(e.message.splitlines()[0]) from e
        return
    from ravdess_tfrecords import storage

    if not storage.is_local(path):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, os.path.basename(path))
            storage.copy(path, local)
            yield from read_records(local, file_format)
        return
    from array_record.python import array_record_module

    try:
        reader = array_record_module.ArrayRecordReader(path)
        if not reader.ok():  # an unreadable header: the reader says no more than that
            raise ValueError("not an ArrayRecord file")
        try:
            total = reader.num_records()
            for start in range(0, total, _READ_CHUNK):
                yield from reader.read(start, min(start + _READ_CHUNK, total))
        finally:
            reader.close()
    except RuntimeError as e:  # riegeli's "Corrupted Riegeli/records file: ..."
        raise ValueError(str(e).splitlines()[0]) from e


_READ_CHUNK = 64  # ArrayRecord records read per call: a few MB of examples at a time


def file_sha256(path: str) -> str:
    """Hex sha256 of a file, as listed for each shard in ``ravdess_info.json``."""
    from ravdess_tfrecords import storage

    digest = hashlib.sha256()
    with storage.open_file(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_shape(name: str, value: np.ndarray, shape: tuple[int, ...]) -> None:
    if value.shape != shape:
        raise ValueError(f"feature {name!r} has shape {value.shape}, schema wants {shape}")


def serialize(values: Mapping[str, object], audio_frames: int, modality: str = DEFAULT_MODALITY) -> bytes:
    """Encode one example as a deterministic serialized ``tf.train.Example``.

    Args:
      values: every key of ``features(modality)``; ``audio`` float32 ``(24, M, 1)``,
        ``video`` uint8 ``(6, 64, 64, 3)`` (audio-video only), ints and strs for the rest.
      audio_frames: M, the padded frame count of this dataset.
      modality: ``audio_video`` or ``audio`` (``MODALITIES``).
    """
    import tensorflow as tf

    wanted = features(modality)
    missing = set(wanted) - set(values)
    extra = set(values) - set(wanted)
    if missing or extra:
        raise ValueError(f"example keys differ from the {modality} schema: missing {sorted(missing)}, "
                         f"unknown {sorted(extra)}")
    feature = {}
    for name, spec in wanted.items():
        value = values[name]
        if spec.kind == "tensor":
            array = np.asarray(value)
            if array.dtype != spec.dtype.newbyteorder("="):
                raise ValueError(f"feature {name!r} has dtype {array.dtype}, schema wants {spec.dtype}")
            _check_shape(name, array, audio_shape(audio_frames) if name == "audio" else VIDEO_SHAPE)
            data = array.astype(spec.dtype, copy=False).tobytes()
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))
        elif spec.kind == "int":
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        else:
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(value).encode()]))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    # Map fields serialize in arbitrary order unless asked: byte-identical shards need this.
    return example.SerializeToString(deterministic=True)


def parse_spec(modality: str = DEFAULT_MODALITY) -> dict:
    """The ``tf.io.parse_example`` spec for every stored feature of a ``modality`` dataset."""
    import tensorflow as tf

    spec = {}
    for name, feature in features(modality).items():
        dtype = tf.int64 if feature.kind == "int" else tf.string
        spec[name] = tf.io.FixedLenFeature([], dtype)
    return spec


def decode(parsed: Mapping, audio_frames: int) -> dict:
    """Decode the raw tensors of a parsed batch (or single example).

    Args:
      parsed: the output of ``tf.io.parse_example(serialized, parse_spec())``
        for a batch ``(B,)`` or ``tf.io.parse_single_example`` for one example.
      audio_frames: M from ``ravdess_info.json``.

    Returns:
      The same dict with ``audio`` float32 ``(..., 24, M, 1)`` and, when parsed
      (audio-video datasets), ``video`` uint8 ``(..., 6, 64, 64, 3)``; scalars unchanged.
    """
    import tensorflow as tf

    out = dict(parsed)
    lead = tf.shape(parsed["audio"])
    audio = tf.io.decode_raw(parsed["audio"], tf.float32, little_endian=True)
    out["audio"] = tf.reshape(audio, tf.concat([lead, audio_shape(audio_frames)], 0))
    # Keep whatever static batch size the input had, so Keras sees static shapes.
    out["audio"].set_shape(parsed["audio"].shape.concatenate(audio_shape(audio_frames)))
    if "video" in parsed:
        video = tf.io.decode_raw(parsed["video"], tf.uint8)
        out["video"] = tf.reshape(video, tf.concat([lead, VIDEO_SHAPE], 0))
        out["video"].set_shape(parsed["video"].shape.concatenate(VIDEO_SHAPE))
    return out
