"""The run's model: ``ravdess_tfrecords.models.build_model`` from a ``TrainConfig``, compiled."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import tensorflow as tf
from tensorflow import keras

from ravdess_tfrecords import models
from ravdess_tfrecords.reading import augment
from trainers.config import PRECISION_POLICIES, TrainConfig
from trainers.data import augment_config

# AdamW decays neither biases nor the scale/offset of normalization layers: decaying them only shrinks
# what batch norm would otherwise learn freely (as in BERT's and timm's recipes). Matched in variable names.
NO_DECAY = ("bias", "gamma", "beta")


@contextlib.contextmanager
def precision_policy(mixed_precision: str) -> Iterator[None]:
    """Within the block, Keras builds layers under ``--mixed_precision``'s dtype policy; then the previous
    policy again (layers keep the policy they were built under; nothing leaks to later models)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[mixed_precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def use_jit(jit_compile: str) -> bool:
    """``--jit_compile`` as a bool: ``auto`` is XLA when TensorFlow sees a GPU (on CPU it seldom pays)."""
    if jit_compile == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return jit_compile == "true"


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam, or AdamW with ``weight_decay`` (not on ``NO_DECAY`` variables); loss-scaled under float16."""
    if config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay)
        optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    else:
        optimizer = keras.optimizers.Adam(config.learning_rate)
    if config.mixed_precision == "float16":  # float16's 5-bit exponent underflows small gradients unscaled
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def make_loss(config: TrainConfig) -> keras.losses.Loss:
    """Categorical cross-entropy on one-hot labels (``one_hot`` or label smoothing), else sparse."""
    if config.one_hot_labels:
        return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def make_metrics(config: TrainConfig) -> list[keras.metrics.Metric]:
    """``accuracy`` for the labels ``make_loss`` takes, as an object: Keras resolves the string ``"accuracy"``
    only inside the first train step, and a metric's variables made there make ``tf.function`` trace the
    step twice (~0.6 s of CPU per fit, more for big models)."""
    if config.one_hot_labels:
        return [keras.metrics.CategoricalAccuracy(name="accuracy")]
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def build_and_compile(config: TrainConfig, audio_frames: int) -> keras.Model:
    """``models.build_model`` from the config under its precision policy, compiled with the config's
    optimizer, loss, XLA and steps per execution; metric ``accuracy``.

    With ``augment_on="device"`` the model is ``augment.with_augmentation(...)`` of it: an
    ``AugmentLayer`` in front takes uint8 video and augments in training steps only.
    """
    with precision_policy(config.mixed_precision):
        model = models.build_model(
            config.model,
            audio_frames=audio_frames,
            num_classes=config.num_classes,
            visual_backbone=config.visual_backbone,
            temporal=config.temporal,
            filters=config.filters,
            visual_weights=config.visual_weights,
            audio_pooling=config.audio_pooling,
            mask_padding=config.mask_padding,
            audio_input_norm=config.audio_input_norm,
        )
        if config.augment_on == "device":
            model = augment.with_augmentation(
                model, augment_config(config.augment) or augment.AugmentConfig.none(), seed=config.seed
            )
    model.compile(
        optimizer=make_optimizer(config),
        loss=make_loss(config),
        metrics=make_metrics(config),
        jit_compile=use_jit(config.jit_compile),
        steps_per_execution=config.steps_per_execution,
    )
    # Built now, while every layer is trainable: the optimizer then holds a slot for every weight, so a backbone
    # frozen for the first epochs (--freeze_epochs) joins later with the same optimizer and the same checkpoint.
    model.optimizer.build(model.trainable_variables)
    return model
