"""The run's model: ``ravdess_tfrecords.models.build_model`` from a ``TrainConfig``, compiled."""

from __future__ import annotations

from tensorflow import keras

from ravdess_tfrecords import models
from trainers.config import TrainConfig


def build_and_compile(config: TrainConfig, audio_frames: int) -> keras.Model:
    """``models.build_model`` from the config, compiled with Adam and (sparse) categorical cross-entropy."""
    model = models.build_model(
        config.model,
        audio_frames=audio_frames,
        num_classes=config.num_classes,
        visual_backbone=config.visual_backbone,
        temporal=config.temporal,
        filters=config.filters,
    )
    loss = "categorical_crossentropy" if config.one_hot else "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=loss, metrics=["accuracy"])
    return model
