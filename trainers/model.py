"""The run's model: ``ravdess_tfrecords.models.build_model`` from a ``TrainConfig``, compiled."""

from __future__ import annotations

from tensorflow import keras

from ravdess_tfrecords import models
from ravdess_tfrecords.reading import augment
from trainers.config import TrainConfig
from trainers.data import augment_config


def build_and_compile(config: TrainConfig, audio_frames: int) -> keras.Model:
    """``models.build_model`` from the config, compiled with Adam and (sparse) categorical cross-entropy.

    With ``augment_on="device"`` the model is ``augment.with_augmentation(...)`` of it: an
    ``AugmentLayer`` in front takes uint8 video and augments in training steps only.
    """
    model = models.build_model(
        config.model,
        audio_frames=audio_frames,
        num_classes=config.num_classes,
        visual_backbone=config.visual_backbone,
        temporal=config.temporal,
        filters=config.filters,
    )
    if config.augment_on == "device":
        model = augment.with_augmentation(
            model, augment_config(config.augment) or augment.AugmentConfig.none(), seed=config.seed
        )
    loss = "categorical_crossentropy" if config.one_hot else "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=loss, metrics=["accuracy"])
    return model
