"""The tf.data input pipeline: shard files -> batches of ``((audio, video), label)``
(``(audio, label)`` for an audio-only dataset, ``modality="audio"``).

Order of stages (each with ``tf.data.AUTOTUNE`` parallelism):

1. file-level ``interleave`` of ``TFRecordDataset`` over the chosen shards
   (file order shuffled each epoch in training; ``selection.interleave_order`` computes it);
2. optional filter on vocal channel / intensity (see ``_record_filter``);
3. with a cache (by default when the chosen shards are small,
   ``AUTOCACHE_MAX_BYTES``, as tensorflow_datasets does): ``batch`` + one
   vectorized ``tf.io.parse_example`` + ``schema.decode`` + ``unbatch``, then
   ``cache`` of the *decoded* examples (uint8 video, float32 audio, ~the size
   of the records) in memory, so every epoch after the first reads memory and
   parses nothing;
4. ``shuffle`` of examples (training; seeded when ``seed`` is given);
5. ``batch``;
6. one vectorized ``map``: parsing (when nothing is cached), then with
   ``augment_on="host"`` augmentation (training only, ``augment.augment_batch``)
   and video scaled to float32 [0, 1]; with ``augment_on="device"`` nothing:
   video stays uint8 for the model's ``augment.AugmentLayer``; labels, the
   output structure;
7. ``prefetch``.

Training reads in non-deterministic order (faster) unless a ``seed`` is given;
evaluation is deterministic: two passes yield identical batches.

Epochs: by default every pass over a training dataset is a new epoch (stages 1
and 4 reshuffle, the augmentation seeds are re-drawn), counted from the
dataset's creation, so a new process starts again at epoch 0's order. With
``initial_epoch=k`` the dataset is instead the endless stream of epochs k, k+1,
..., each ``examples // batch_size`` whole batches, and everything random in
epoch e (file order, example order, augmentation seeds) is keyed on
``(seed, e)`` alone (``epoch_key``): epoch e is the same in an unbroken run and
in one resumed at e (``trainers.loop``).
Only TensorFlow ops in the graph: no Python callbacks, no numpy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from ravdess_tfrecords import labels, schema
from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.reading import augment as augment_lib
from ravdess_tfrecords.reading import selection
from ravdess_tfrecords.reading.augment_choices import AUGMENT_ON
from ravdess_tfrecords.reading.selection import normalize_filters as _normalize_filters

AUTOTUNE = tf.data.AUTOTUNE

AUDIO_INPUT, VIDEO_INPUT = schema.INPUT_NAMES

DEFAULT_SHUFFLE_BUFFER = 2048  # ~85 kB per record: at most ~170 MB of serialized examples
# Shards up to this size are cached in memory unless ``cache=False``: the whole
# RAVDESS corpus (speech + song, ~2,450 clips) is ~210 MB. tensorflow_datasets
# auto-caches below 250 MiB for the same reason.
AUTOCACHE_MAX_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything ``make_dataset`` needs besides the file list (see ``make_dataset``)."""

    audio_frames: int
    modality: str = schema.DEFAULT_MODALITY
    batch_size: int = 32
    training: bool = False
    shuffle: bool | None = None
    shuffle_buffer: int | None = None
    seed: int | None = None
    augment: augment_lib.AugmentConfig | bool | None = None
    num_classes: int = labels.NUM_CLASSES
    one_hot: bool = False
    with_metadata: bool = False
    as_dict: bool = False
    vocal_channels: tuple[str, ...] | None = None
    intensities: tuple[int, ...] | None = None
    drop_remainder: bool | None = None
    cache: bool | str | None = None
    deterministic: bool | None = None
    cycle_length: int = selection.CYCLE_LENGTH
    augment_on: str = "host"
    initial_epoch: int | None = None


def _record_filter(vocal_channels: tuple[str, ...] | None, intensities: tuple[int, ...] | None):
    """A predicate on one serialized record that parses only the two scalar fields it needs.

    Why before batching: filtering after parsing would need ``unbatch`` + ``batch``
    again, copying every decoded audio/video tensor twice, and batches would be
    short. Parsing two scalars of a serialized Example is cheap (the parser skips
    the unrequested 80 kB of audio/video bytes without copying them), and the
    default pipeline, with no filter, has no such stage at all.
    """
    spec = {
        "vocal_channel": tf.io.FixedLenFeature([], tf.string),
        "intensity": tf.io.FixedLenFeature([], tf.int64),
    }

    def keep(serialized: tf.Tensor) -> tf.Tensor:
        fields = tf.io.parse_single_example(serialized, spec)
        ok = tf.constant(True)
        if vocal_channels is not None:
            ok = ok & tf.reduce_any(tf.equal(fields["vocal_channel"], tf.constant(vocal_channels)))
        if intensities is not None:
            ok = ok & tf.reduce_any(tf.equal(fields["intensity"], tf.constant(intensities, tf.int64)))
        return ok

    return keep


def parse_batch(serialized: tf.Tensor, audio_frames: int, keys: Iterable[str] | None = None,
                modality: str = schema.DEFAULT_MODALITY) -> dict[str, tf.Tensor]:
    """Parse and decode a batch of serialized examples.

    Args:
      serialized: string ``(B,)``.
      audio_frames: M.
      keys: the features to parse (always including the inputs, ``audio`` and ``video``); None: all.
      modality: the dataset's (``schema.MODALITIES``): ``audio`` has no ``video``.

    Returns:
      ``schema.decode`` output: ``audio`` float32 ``(B, 24, M, 1)``, ``video``
      uint8 ``(B, 6, 64, 64, 3)`` (audio-video only), the other requested features ``(B,)``.
    """
    spec = schema.parse_spec(modality)
    if keys is not None:
        spec = {k: spec[k] for k in {*schema.input_names(modality), *keys}}
    return schema.decode(tf.io.parse_example(serialized, spec), audio_frames)


def labels_of(features: dict[str, tf.Tensor], num_classes: int = labels.NUM_CLASSES) -> tf.Tensor:
    """int64 ``(B,)`` labels: the stored 7-class ``label``, or ``emotion - 1`` for 8 classes."""
    if num_classes == 7:
        return features["label"]
    if num_classes == 8:
        return features["emotion"] - 1  # labels.label_from_emotion(code, 8) == code - 1
    raise ValueError(f"num_classes must be 7 or 8, got {num_classes}")


def _augment_config(opts: Options) -> augment_lib.AugmentConfig | None:
    if opts.augment_on not in AUGMENT_ON:
        raise UserError(f"augment_on must be one of {AUGMENT_ON}, got {opts.augment_on!r}")
    if opts.augment_on == "device":
        if opts.augment is True or (isinstance(opts.augment, augment_lib.AugmentConfig) and opts.augment.enabled):
            raise UserError(
                "augment_on='device': the pipeline does not augment; give the AugmentConfig to the model "
                "(augment.with_augmentation / augment.AugmentLayer) and leave augment unset"
            )
        return None
    config = opts.augment
    if config is None:
        config = opts.training
    if config is True:
        config = augment_lib.AugmentConfig()
    if config is False:
        return None
    if not isinstance(config, augment_lib.AugmentConfig):
        raise TypeError(f"augment must be an AugmentConfig, True, False or None, got {config!r}")
    if not opts.training and config.enabled:
        raise UserError("augmentation runs in training only: pass training=True, or leave augment unset")
    return config if config.enabled else None


def autocache(files: Sequence[str], shuffle_buffer: int | None, num_examples: int | None,
              num_bytes: int | None = None) -> bool:
    """Whether ``cache=None`` caches ``files``' decoded examples in memory.

    Yes when the shards total at most ``AUTOCACHE_MAX_BYTES`` (the decoded
    examples take about as much: uint8 video and float32 audio are stored raw)
    and either nothing is shuffled or the shuffle buffer holds the whole split:
    a cache replays the first epoch's file order, which only a buffer that big
    fully reshuffles. ``num_bytes``: the shards' total size when known (``ravdess_info.json``
    lists it), which saves a stat per shard: a round trip each on an object store.
    """
    if shuffle_buffer is not None and (num_examples is None or shuffle_buffer < num_examples):
        return False
    if num_bytes is None:
        num_bytes = sum(tf.io.gfile.stat(f).length for f in files)
    return num_bytes <= AUTOCACHE_MAX_BYTES


def count_records(
    files: Sequence[str],
    vocal_channels: str | Iterable[str] | None = None,
    intensities: int | str | Iterable[int | str] | None = None,
) -> int:
    """Records in ``files`` that the vocal-channel / intensity filters keep (one pass, two scalars parsed).

    ``ravdess_info.json`` counts records per shard, not per vocal channel, so a
    filtered split's size (an epoch's steps on several workers) is counted here.
    """
    ds = _kept_records(files, vocal_channels, intensities)
    return int(ds.reduce(np.int64(0), lambda n, _: n + 1))


def _kept_records(
    files: Sequence[str],
    vocal_channels: str | Iterable[str] | None = None,
    intensities: int | str | Iterable[int | str] | None = None,
) -> tf.data.Dataset:
    """The serialized records of ``files`` that the filters keep (the counting passes' input)."""
    vocal_channels, intensities = _normalize_filters(vocal_channels, intensities)
    ds = tf.data.TFRecordDataset(list(files), num_parallel_reads=AUTOTUNE)
    if vocal_channels is not None or intensities is not None:
        ds = ds.filter(_record_filter(vocal_channels, intensities))
    return ds


def count_labels(
    files: Sequence[str],
    num_classes: int = labels.NUM_CLASSES,
    vocal_channels: str | Iterable[str] | None = None,
) -> dict[int, int]:
    """``{label: records}`` in ``files`` that the vocal-channel filter keeps, labels 0..num_classes-1.

    ``ravdess_info.json`` counts labels over the whole corpus, not per actor, so a
    split's class counts (``--class_weight=balanced``) come from one pass here that
    parses only the scalars (the label, and the vocal channel when filtered), as ``count_records``.
    Every class is a key (0 when absent).
    """
    key = "label" if num_classes == 7 else "emotion"
    spec = {key: tf.io.FixedLenFeature([], tf.int64)}
    ds = _kept_records(files, vocal_channels).map(
        lambda r: labels_of(tf.io.parse_single_example(r, spec), num_classes), num_parallel_calls=AUTOTUNE)
    counts = ds.reduce(tf.zeros([num_classes], tf.int64),
                       lambda acc, label: acc + tf.one_hot(label, num_classes, dtype=tf.int64))
    return {c: int(n) for c, n in enumerate(counts.numpy())}


# The streams of an epoch's randomness (``epoch_key``): each its own, so that one never repeats another.
FILE_ORDER, EXAMPLE_ORDER, AUGMENT_STREAM, MIXUP_STREAM, LABEL_STREAM = range(5)


def epoch_key(seed: int, epoch: tf.Tensor | int, stream: int) -> tf.Tensor:
    """The stateless seed, int64 ``(2,)``, of ``stream`` (``FILE_ORDER``, ...) in 0-based ``epoch``.

    A pure function of ``(seed, epoch, stream)``: no state of a process or of an iterator.
    """
    base = tf.constant([seed, stream], tf.int64)
    return tf.random.experimental.stateless_fold_in(base, tf.cast(epoch, tf.int64))


def epoch_batch_seeds(seed: int, stream: int, initial_epoch: int, steps_per_epoch: int) -> tf.data.Dataset:
    """One stateless seed, int64 ``(2,)``, per batch of an ``initial_epoch`` stream (see the module docstring).

    Batch ``s`` of epoch ``e`` gets ``fold_in(epoch_key(seed, e, stream), s)``; element ``g`` of this
    endless dataset is batch ``g % steps_per_epoch`` of epoch ``initial_epoch + g // steps_per_epoch``.
    ``stream``: ``AUGMENT_STREAM`` (the pipeline's augmentation), ``MIXUP_STREAM`` or ``LABEL_STREAM``
    (``trainers.data``).
    """
    steps = tf.constant(steps_per_epoch, tf.int64)

    def seed_of(g):
        key = epoch_key(seed, initial_epoch + g // steps, stream)
        return tf.random.experimental.stateless_fold_in(key, g % steps)

    return tf.data.Dataset.counter().map(seed_of)


def _keyed_shuffle(ds: tf.data.Dataset, buffer: int, key: tf.Tensor) -> tf.data.Dataset:
    """``ds.shuffle(buffer)`` in an order that depends on ``key`` (int64 ``(2,)``) alone; call it while
    tracing a dataset function (``flat_map``'s).

    ``Dataset.shuffle`` takes a scalar seed (drawn here from the key: both its halves count) and pairs it
    with the graph's seed, which is the global one (``tf.random.set_seed``) otherwise: fixed here, so the
    global seed changes nothing, and a global seed of 0 does not make TensorFlow test a tensor as a bool.
    """
    graph = tf.compat.v1.get_default_graph()
    saved, graph.seed = graph.seed, 1
    try:
        scalar = tf.random.stateless_uniform([], key, minval=None, maxval=None, dtype=tf.int64)
        return ds.shuffle(buffer, seed=scalar, reshuffle_each_iteration=False)
    finally:
        graph.seed = saved


def resolve_seed(seed: int | None) -> int:
    """``seed``, or a fresh random one (a run without ``--seed`` is not reproducible, but keyed all the same)."""
    return int(np.random.default_rng().integers(2**31)) if seed is None else int(seed)


def augment_seeds(seed: int | None) -> tf.data.Dataset:
    """One stateless seed, int64 ``(2,)``, per batch for ``augment.augment_batch`` (host mode).

    Re-drawn each epoch (a new iterator), reproducible when ``seed`` is given.
    """
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


def make_dataset(files: Sequence[str], opts: Options, num_examples: int | None = None,
                 num_bytes: int | None = None) -> tf.data.Dataset:
    """Build the input pipeline over ``files``.

    Args:
      files: shard paths (their order is the evaluation order).
      opts: see ``Options``; ``None`` fields default from ``opts.training``:
        shuffle, drop_remainder and augmentation on in training, off otherwise;
        ``cache=None`` caches small splits in memory (``autocache``).
      num_examples: records in ``files`` (from ``ravdess_info.json``); lets the
        dataset report its length, and is checked while reading.
      num_bytes: the shards' total size, if known (saves ``autocache`` a stat per shard).
        ``opts.initial_epoch=k``: the endless stream of epochs k, k+1, ... (module docstring), each
        ``examples // batch_size`` batches (the examples the filters keep): give ``model.fit`` that
        ``steps_per_epoch`` and ``initial_epoch=k``; needs ``drop_remainder``.

    Returns:
      A ``tf.data.Dataset`` of ``((audio, video), label)`` (audio-only, ``opts.modality="audio"``:
      ``(audio, label)``); ``audio`` float32
      ``(B, 24, M, 1)``, ``video`` float32 ``(B, 6, 64, 64, 3)`` in [0, 1]
      (``augment_on="device"``: uint8 0..255, never augmented: the model's
      ``augment.AugmentLayer`` augments and scales it),
      ``label`` int64 ``(B,)`` or float32 ``(B, num_classes)`` one-hot.
      ``as_dict``: the inputs are ``{"audio": ..., "video": ...}`` (``{"audio": ...}`` audio-only).
      ``with_metadata``: a third element, a dict of ``schema.METADATA_KEYS`` ``(B,)``.
    """
    if not files:
        raise UserError("no shard files to read")
    if opts.batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {opts.batch_size}")
    if opts.num_classes not in (7, 8):
        raise UserError(f"num_classes must be 7 or 8, got {opts.num_classes}")
    if opts.initial_epoch is not None and opts.initial_epoch < 0:
        raise UserError(f"initial_epoch must be >= 0, got {opts.initial_epoch}")
    training = opts.training
    shuffle = training if opts.shuffle is None else opts.shuffle
    drop_remainder = training if opts.drop_remainder is None else opts.drop_remainder
    # A seed asks for reproducibility, which a non-deterministic order would defeat.
    deterministic = opts.deterministic
    if deterministic is None:
        deterministic = (not training) or opts.seed is not None
    config = _augment_config(opts)
    vocal_channels, intensities = _normalize_filters(opts.vocal_channels, opts.intensities)
    filtered = vocal_channels is not None or intensities is not None
    if drop_remainder and num_examples is not None and num_examples < opts.batch_size:
        raise UserError(
            f"the split has {num_examples} examples, fewer than batch_size={opts.batch_size}; "
            "with drop_remainder (the training default) it would yield nothing"
        )

    buffer = opts.shuffle_buffer or min(num_examples or DEFAULT_SHUFFLE_BUFFER, DEFAULT_SHUFFLE_BUFFER)
    cache = opts.cache
    if cache is None:
        cache = autocache(files, buffer if shuffle else None, num_examples, num_bytes)
    audio_frames = opts.audio_frames
    # Parse only what the outputs need: the metadata strings cost time on every batch.
    keys = {"label" if opts.num_classes == 7 else "emotion"}
    if opts.with_metadata:
        keys.update(schema.METADATA_KEYS)
    by_epoch = opts.initial_epoch is not None
    seed = resolve_seed(opts.seed) if by_epoch else opts.seed

    def records(file_order: tf.Tensor | None = None) -> tf.data.Dataset:
        """Stages 1-2 (stage 1's file order: ``file_order``'s stateless permutation, or reshuffled each pass)."""
        ds = tf.data.Dataset.from_tensor_slices(list(files))
        if file_order is not None:
            perm = tf.argsort(tf.random.stateless_uniform([len(files)], file_order))
            ds = tf.data.Dataset.from_tensor_slices(tf.gather(tf.constant(list(files)), perm))
        elif shuffle and not by_epoch:
            ds = ds.shuffle(len(files), seed=opts.seed, reshuffle_each_iteration=True)
        ds = ds.interleave(
            tf.data.TFRecordDataset,
            cycle_length=max(1, min(len(files), opts.cycle_length)),
            block_length=1,
            num_parallel_calls=AUTOTUNE,
            deterministic=deterministic,
        )
        if filtered:
            ds = ds.filter(_record_filter(vocal_channels, intensities))
        elif num_examples is not None:
            ds = ds.apply(tf.data.experimental.assert_cardinality(num_examples))
        return ds

    def decoded(ds: tf.data.Dataset) -> tf.data.Dataset:
        """Stage 3: decoded in batches (one vectorized parse), cached as single examples."""
        ds = ds.batch(opts.batch_size).map(
            lambda serialized: parse_batch(serialized, audio_frames, keys, opts.modality),
            num_parallel_calls=AUTOTUNE, deterministic=deterministic,
        ).unbatch()
        if not filtered and num_examples is not None:
            ds = ds.apply(tf.data.experimental.assert_cardinality(num_examples))
        return ds.cache() if cache is True else ds.cache(str(cache))

    if by_epoch:
        if not drop_remainder:
            raise UserError("initial_epoch: every epoch is whole batches; leave drop_remainder at its training "
                            "default (True)")
        kept = count_records(files, vocal_channels, intensities) if filtered or num_examples is None else num_examples
        steps = kept // opts.batch_size
        if steps < 1:
            raise UserError(f"the split has {kept} examples, fewer than batch_size={opts.batch_size}")
        source = decoded(records()) if cache else None  # read once, in file order: the cache is shared by every epoch

        def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
            if source is not None:
                ds = source
            else:
                ds = records(epoch_key(seed, epoch, FILE_ORDER) if shuffle else None)
            if shuffle:
                ds = _keyed_shuffle(ds, buffer, epoch_key(seed, epoch, EXAMPLE_ORDER))
            return ds.take(steps * opts.batch_size)  # whole batches: the next epoch starts a batch

        ds = tf.data.Dataset.counter(opts.initial_epoch).flat_map(one_epoch)
    else:
        ds = records()
        if cache:
            ds = decoded(ds)
        if shuffle:
            ds = ds.shuffle(buffer, seed=opts.seed, reshuffle_each_iteration=True)
    ds = ds.batch(opts.batch_size, drop_remainder=drop_remainder)

    def to_outputs(batch, seed=None):
        features = batch if cache else parse_batch(batch, audio_frames, keys, opts.modality)
        if config is not None:
            features = augment_lib.augment_batch(features, seed, config)
        elif opts.augment_on == "host" and VIDEO_INPUT in features:
            features["video"] = augment_lib.to_unit(features["video"])
        label = labels_of(features, opts.num_classes)
        if opts.one_hot:
            label = tf.one_hot(label, opts.num_classes, dtype=tf.float32)
        names = schema.input_names(opts.modality)
        if opts.as_dict:
            inputs = {name: features[name] for name in names}
        else:  # (audio, video), or audio alone: what a one-input Keras model takes
            inputs = tuple(features[name] for name in names) if len(names) > 1 else features[names[0]]
        if opts.with_metadata:
            return inputs, label, {k: features[k] for k in schema.METADATA_KEYS}
        return inputs, label

    if config is not None and by_epoch:
        ds = tf.data.Dataset.zip((ds, epoch_batch_seeds(seed, AUGMENT_STREAM, opts.initial_epoch, steps)))
    elif config is not None:
        ds = tf.data.Dataset.zip((ds, augment_seeds(opts.seed)))
    ds = ds.map(to_outputs, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    return ds.prefetch(AUTOTUNE)
