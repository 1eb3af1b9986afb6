"""The run's input: train (shuffled, augmented), validation and test datasets from ``ravdess_tfrecords.load``."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

import ravdess_tfrecords
from ravdess_tfrecords import augment as augment_lib
from ravdess_tfrecords import models
from trainers.config import TrainConfig


def augment_config(names: Sequence[str]) -> augment_lib.AugmentConfig | bool:
    """The pipeline's ``AugmentConfig`` with only ``names`` on (False when none)."""
    return augment_lib.AugmentConfig.only(*names) if names else False


def adapt_inputs(ds: tf.data.Dataset, input_names: Sequence[str]) -> tf.data.Dataset:
    """Map ``((audio, video), label)`` batches to what a model with ``input_names`` takes."""
    if tuple(input_names) == (models.AUDIO_INPUT, models.VIDEO_INPUT):
        return ds
    return ds.map(lambda x, y: (models.select_inputs(input_names, x[0], x[1]), y))


def make_datasets(
    config: TrainConfig, input_names: Sequence[str]
) -> tuple[tf.data.Dataset, tf.data.Dataset, tf.data.Dataset]:
    """Train (shuffled, augmented), validation and test datasets for a model's inputs."""
    common = dict(
        config.split_kwargs(),
        batch_size=config.batch_size,
        num_classes=config.num_classes,
        one_hot=config.one_hot,
        vocal_channels=config.vocal_channels,
        cache=config.cache,
        augment_on=config.augment_on,
    )
    # On the device the model's AugmentLayer augments (trainers.model); the pipeline only ships uint8.
    augment = augment_config(config.augment) if config.augment_on == "host" else False
    train = ravdess_tfrecords.load(config.data_dir, "train", training=True, seed=config.seed, augment=augment, **common)
    if config.shuffle_labels:
        label_seed = 0 if config.seed is None else config.seed
        # Within-batch label shuffle, re-drawn every batch and epoch: features and labels lose their link.
        train = train.map(lambda x, y: (x, tf.random.shuffle(y, seed=label_seed)))
    validation = ravdess_tfrecords.load(config.data_dir, "validation", training=False, **common)
    test = ravdess_tfrecords.load(config.data_dir, "test", training=False, **common)
    return tuple(adapt_inputs(ds, input_names) for ds in (train, validation, test))
