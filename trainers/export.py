"""What a trained model leaves for serving and prediction: ``model.keras``, SavedModel, ``model_info.json``."""

from __future__ import annotations

import os
from typing import Any

from tensorflow import keras

import ravdess_tfrecords
from ravdess_tfrecords import labels, models, schema, storage
from trainers.config import TrainConfig
from trainers.model_dir import KERAS_FILE, MODEL_INFO_FILE, SAVED_MODEL_DIR, _read_json, _write_json


def model_info(config: TrainConfig, model: keras.Model, info: ravdess_tfrecords.DatasetInfo) -> dict[str, Any]:
    """What ``predict`` and ``evaluate`` need besides the weights."""
    return {
        "class_names": list(labels.class_names(config.num_classes)),
        "num_classes": config.num_classes,
        "audio_frames": info.audio_frames,
        "audio_shape": list(schema.audio_shape(info.audio_frames)),
        "video_shape": list(schema.VIDEO_SHAPE),
        "video_scale": "uint8 / 255.0",
        "inputs": list(models.input_names(model)),
        "model": config.model,
        "visual_backbone": config.visual_backbone,
        "temporal": config.temporal,
        "ravdess_tfrecords_version": ravdess_tfrecords.__version__,
    }


def save_model(
    model: keras.Model, model_dir: str, config: TrainConfig, info: ravdess_tfrecords.DatasetInfo
) -> dict[str, str]:
    """Write ``model.keras``, ``saved_model/`` (if ``config.export``), ``ravdess_info.json``, ``model_info.json``.

    Returns:
      ``{what: path}`` of everything written.
    """
    out = {"keras": os.path.join(model_dir, KERAS_FILE)}
    model.save(out["keras"])
    if config.export:
        out["saved_model"] = os.path.join(model_dir, SAVED_MODEL_DIR)
        storage.remove_any(out["saved_model"])
        model.export(out["saved_model"], verbose=False)
    out["dataset_info"] = os.path.join(model_dir, schema.INFO_FILENAME)
    storage.copy(os.path.join(info.data_dir, schema.INFO_FILENAME), out["dataset_info"])
    out["model_info"] = os.path.join(model_dir, MODEL_INFO_FILE)
    _write_json(out["model_info"], model_info(config, model, info))
    return out


def load_saved(model_dir: str) -> tuple[keras.Model, dict[str, Any]]:
    """``(model.keras, model_info.json)`` of a trained model directory."""
    keras_path = os.path.join(model_dir, KERAS_FILE)
    info_path = os.path.join(model_dir, MODEL_INFO_FILE)
    for path in (keras_path, info_path):
        if not storage.exists(path):
            raise FileNotFoundError(f"{path} not found: is {model_dir!r} a model_dir written by trainers.fit?")
    return keras.models.load_model(keras_path, compile=False), _read_json(info_path)
