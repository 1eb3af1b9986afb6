"""The run's input: train (shuffled, augmented), validation and test datasets from ``ravdess_tfrecords.load``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import tensorflow as tf

import ravdess_tfrecords
from ravdess_tfrecords import models
from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.reading import augment as augment_lib
from ravdess_tfrecords.reading import pipeline
from trainers import cluster
from trainers.config import TrainConfig, check_inputs

AutoShardPolicy = tf.data.experimental.AutoShardPolicy


def augment_config(names: Sequence[str]) -> augment_lib.AugmentConfig | bool:
    """The pipeline's ``AugmentConfig`` with only ``names`` on (False when none)."""
    return augment_lib.AugmentConfig.only(*names) if names else False


def adapt_inputs(ds: tf.data.Dataset, input_names: Sequence[str],
                 dataset_inputs: Sequence[str] = models.MODEL_INPUTS["fusion"]) -> tf.data.Dataset:
    """Map batches of ``(inputs, label)`` to what a model with ``input_names`` takes.

    ``dataset_inputs``: what the dataset yields (``DatasetInfo.input_names``): ``((audio, video), label)``
    for an audio-video dataset, ``(audio, label)`` for an audio-only one (``check_inputs`` first).
    """
    if tuple(input_names) == tuple(dataset_inputs):
        return ds
    return ds.map(lambda x, y: (models.select_inputs(input_names, x[0], x[1]), y))


def steps_per_epoch(config: TrainConfig, builder: ravdess_tfrecords.Builder) -> int:
    """Training steps of one epoch: ``examples // batch_size``, the examples counted after the
    vocal-channel filter (``Builder.num_examples``); an epoch is one pass in whole batches."""
    examples = builder.num_examples("train", vocal_channels=config.vocal_channels, **config.split_kwargs())
    if examples < config.batch_size:
        raise UserError(f"the training split has {examples} examples, fewer than one global batch "
                        f"({config.batch_size})")
    return examples // config.batch_size


def make_datasets(
    config: TrainConfig, input_names: Sequence[str], builder: ravdess_tfrecords.Builder | None = None,
    initial_epoch: int = 0, steps: int | None = None,
) -> tuple[tf.data.Dataset, tf.data.Dataset, tf.data.Dataset]:
    """Train (shuffled, augmented), validation and test datasets for a model's inputs.

    ``builder``: the run's ``Builder`` of ``config.data_dir`` (read once per run and passed
    down: on an object store every read of the info file and every shard stat is a round trip).
    Training is the endless stream of epochs ``initial_epoch``, ``initial_epoch + 1``, ... of
    ``steps`` batches each (``steps_per_epoch``; None: counted here), every random draw in it
    (shuffle, augmentation, mixup, ``--shuffle_labels``) keyed on ``(--seed, epoch)``
    (``pipeline.epoch_key``): a run resumed after epoch k reads what an unbroken run reads from k on.
    """
    builder = builder or ravdess_tfrecords.Builder(config.data_dir)
    check_inputs(input_names, builder.info, f"--model={config.model}")
    common = dict(
        config.split_kwargs(),
        batch_size=config.batch_size,
        num_classes=config.num_classes,
        one_hot=config.one_hot_labels,
        vocal_channels=config.vocal_channels,
        cache=config.pipeline_cache,
        augment_on=config.augment_on,
    )
    # On the device the model's AugmentLayer augments (trainers.model); the pipeline only ships uint8.
    augment = augment_config(config.augment) if config.augment_on == "host" else False
    seed = pipeline.resolve_seed(config.seed)  # one for every stream: a run without --seed is still keyed
    steps = steps or steps_per_epoch(config, builder)
    train = builder.as_dataset("train", training=True, seed=seed, augment=augment, initial_epoch=initial_epoch,
                               **common)

    def batch_seeds(stream: int) -> tf.data.Dataset:
        return pipeline.epoch_batch_seeds(seed, stream, initial_epoch, steps)

    if config.shuffle_labels:
        # Within-batch label shuffle, drawn anew every batch and epoch: features and labels lose their link.
        train = tf.data.Dataset.zip((train, batch_seeds(pipeline.LABEL_STREAM))).map(
            lambda batch, s: (batch[0], tf.gather(batch[1], tf.argsort(
                tf.random.stateless_uniform(tf.shape(batch[1])[:1], s)))))
    if config.mixup > 0:
        # One stateless seed per batch, keyed on (--seed, epoch, batch) as the augmentation's.
        train = tf.data.Dataset.zip((train, batch_seeds(pipeline.MIXUP_STREAM))).map(
            lambda batch, s: augment_lib.mixup(*batch, s, config.mixup), num_parallel_calls=tf.data.AUTOTUNE)
    validation = builder.as_dataset("validation", training=False, **common)
    test = builder.as_dataset("test", training=False, **common)
    return tuple(adapt_inputs(ds, input_names, builder.info.input_names) for ds in (train, validation, test))


def balanced_class_weights(counts: dict[int, int]) -> dict[int, float]:
    """sklearn's "balanced" weights ``n / (k * count_c)`` of ``{label: count}``, for ``model.fit(class_weight=)``.

    ``n`` is the examples, ``k`` the classes present; a class absent from training gets 1.0 (it never
    weighs a training example; Keras wants a weight for every label 0..C-1). A class rarer than
    average gets a weight above 1, so the loss sums to the same ``n`` as unweighted.
    """
    n = sum(counts.values())
    present = [c for c, count in counts.items() if count > 0]
    return {c: (n / (len(present) * counts[c]) if counts[c] > 0 else 1.0) for c in sorted(counts)}


def class_weights(config: TrainConfig, builder: ravdess_tfrecords.Builder) -> dict[int, float] | None:
    """``--class_weight``: None, or ``balanced_class_weights`` of the training split's label counts
    (after the vocal-channel filter, one pass over its shards: ``Builder.label_counts``)."""
    if config.class_weight == "none":
        return None
    counts = builder.label_counts("train", num_classes=config.num_classes, vocal_channels=config.vocal_channels,
                                  **config.split_kwargs())
    return balanced_class_weights(counts)


def service_job_name(config: TrainConfig) -> str:
    """The tf.data service job of a run: the same for every trainer of one (multi-worker) run and fold.

    Derived from the settings that define the run (not the runtime ones), so the
    workers of a cluster, started with the same flags, share one job and split its
    data between them; another run or fold gets another job.
    """
    runtime = ("verbose", "data_service", "strategy", "worker_timeout", "data_service_timeout")
    settings = {k: v for k, v in config.to_json().items() if k not in runtime}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return f"ravdess-{digest}"


def _auto_shard(ds: tf.data.Dataset, policy: tf.data.experimental.AutoShardPolicy) -> tf.data.Dataset:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    return ds.with_options(options)


def scale_out(
    train: tf.data.Dataset,
    validation: tf.data.Dataset,
    config: TrainConfig,
    *,
    num_examples: int,
    num_workers: int,
) -> tuple[tf.data.Dataset, tf.data.Dataset, int | None]:
    """Make the datasets fit for several workers and/or the tf.data service.

    As in tensorflow/models ``official/core/input_reader.py``: with several
    workers or the service, training repeats (``make_datasets``' stream already does) and an epoch is
    ``num_examples // batch_size`` steps (``steps_per_epoch``), so every
    worker runs the same number of steps whatever its shard holds. On the
    service (``config.data_service``) the whole training pipeline (read, parse,
    augment, batch) runs on the service's workers in a ``distributed_epoch``
    job shared by the run's trainers (``service_job_name``); the service shards
    it, so ``tf.distribute`` must not shard it again. Otherwise, with several
    workers, ``tf.distribute`` shards training by batch (``AutoShardPolicy.DATA``): every
    worker runs the whole pipeline, with the same seed, and keeps its share of each global
    batch. Not by file, in either augmentation mode: the training input is a stream of epochs,
    each read in its own file order (``make_datasets``), which ``tf.data``'s auto-shard rewrite
    cannot split by file (it would split the epochs between the workers).

    ``num_examples`` must count the training examples after the vocal-channel
    filter (``Builder.num_examples(..., vocal_channels=...)``), or an "epoch" would
    be more than one pass. Validation stays local and whole on every worker (not
    sharded); ``trainers.callbacks.ExactValidation`` computes its metrics.

    Returns:
      ``(train, validation, steps_per_epoch)``; ``steps_per_epoch`` None: one pass is an epoch.
    """
    multi_worker = num_workers > 1
    if not (multi_worker or config.data_service):
        return train, validation, None
    steps = num_examples // config.batch_size
    if steps < 1:
        raise UserError(f"the training split has {num_examples} examples, fewer than one global batch "
                         f"({config.batch_size})")
    train = train.repeat()
    if config.data_service:
        job = service_job_name(config)
        # Else a missing dispatcher, or one without a worker, hangs the first epoch inside TensorFlow, silently.
        cluster.wait_for_service_workers(config.data_service, config.data_service_timeout)
        if config.verbose:
            print(f"training input: tf.data service at {config.data_service}, job {job}", flush=True)
        train = train.apply(tf.data.experimental.service.distribute(
            processing_mode="distributed_epoch", service=config.data_service, job_name=job))
        train = _auto_shard(train, AutoShardPolicy.OFF)
    elif multi_worker:
        train = _auto_shard(train, AutoShardPolicy.DATA)
    if multi_worker:
        validation = _auto_shard(validation, AutoShardPolicy.OFF)
    return train, validation, steps
