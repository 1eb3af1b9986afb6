"""Metrics of a model on a dataset, and re-evaluation of a saved model directory (``trainers.evaluate``)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow import keras

import ravdess_tfrecords
from ravdess_tfrecords import storage
from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.reading import splits
from trainers import metrics as metrics_lib
from trainers.config import TrainConfig, check_inputs
from trainers.data import adapt_inputs
from trainers.export import load_saved
from trainers.model_dir import CONFIG_FILE, CONFUSION_PNG, METRICS_FILE, _read_json, _write_json


def predict_dataset(model: keras.Model, ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` over ``(inputs, label)`` batches.

    Returns:
      ``(y_true int64 (N,), probabilities float32 (N, C))``; one-hot labels are argmax-ed.
    """
    # A direct call, not predict_on_batch: under a distribution strategy predict_on_batch runs the
    # batch on every replica and concatenates the copies (N rows per replica); the call reads the
    # local copy of the (identical) mirrored weights and needs no collective.
    predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    y_true, probs = [], []
    for inputs, label in ds:
        probs.append(np.asarray(predict(inputs)))
        label = label.numpy()
        y_true.append(label.argmax(axis=-1) if label.ndim == 2 else label)
    if not probs:
        raise ValueError("the evaluation dataset is empty")
    return np.concatenate(y_true).astype(np.int64), np.concatenate(probs).astype(np.float32)


def evaluate_model(model: keras.Model, ds: tf.data.Dataset, class_names: Sequence[str]) -> dict[str, Any]:
    """``classification_metrics`` of ``model`` on ``ds`` plus the mean cross-entropy (``loss``)."""
    y_true, probs = predict_dataset(model, ds)
    out = metrics_lib.classification_metrics(y_true, probs.argmax(axis=1), class_names)
    picked = probs[np.arange(len(y_true)), y_true]
    out["loss"] = float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))
    return out


def _split_kwargs(model_dir: str, trained: TrainConfig | None, split: str | None, folds: int | None,
                  fold: int | None) -> dict[str, Any]:
    """The split to evaluate on: ``split``/``folds``/``fold`` over what the model was trained with (``trained``).

    Without ``split``, ``fold`` and ``folds`` go with the scheme the model was trained with.

    Raises:
      UserError: ``fold`` without a fold scheme, ``folds`` without ``kfold`` (they would be ignored).
    """
    if split is None and trained is None and (fold is not None or folds is not None):
        raise UserError(f"--fold and --folds need --split: {model_dir} records no split ({CONFIG_FILE} missing)")
    if split is None and trained is not None:
        if trained.split == "actors" and (fold is not None or folds is not None):
            raise UserError(f"--fold and --folds go with a fold scheme, but {model_dir} was trained on explicit actor "
                            "lists: pass --split too")
        base = trained
    else:
        base = TrainConfig(trained.data_dir if trained else "", model_dir, split=split or "speaker")
    scheme = base.split
    if fold is not None and scheme not in splits.FOLD_SCHEMES:
        raise UserError(f"--fold applies to the fold schemes ({', '.join(splits.FOLD_SCHEMES)}), not to "
                        f"--split={scheme}" + ("" if split else f" (what {model_dir} was trained with)"))
    if folds is not None and scheme != "kfold":
        raise UserError(f"--folds applies to --split=kfold only, not to --split={scheme}"
                        + ("" if split else f" (what {model_dir} was trained with)"))
    if split is None and trained is not None and fold is None and folds is None:
        return trained.split_kwargs()
    return dataclasses.replace(
        base,
        folds=folds if folds is not None else (base.folds if split is None else None),
        fold=fold if fold is not None else (base.fold if split is None else None),
    ).split_kwargs()


def eval_dir_name(kwargs: dict[str, Any], subset: str) -> str:
    """``eval_<split>_<subset>``, e.g. ``eval_speaker_test``, ``eval_kfold3_fold2_test`` (folds from 1, as CV's
    ``fold_<n>``: ``--fold=1`` is fold 2), ``eval_actors_validation_test``."""
    if "actors" in kwargs:
        split = "actors"
    else:
        split = kwargs["scheme"]
        if split == "kfold":
            split += str(splits.num_folds(split, kwargs.get("folds")))
        if "fold" in kwargs:
            split += f"_fold{kwargs['fold'] + 1}"
    return f"eval_{split}_{subset.replace('+', '_')}"


def _trained_actors(model_dir: str, trained: TrainConfig, builder: ravdess_tfrecords.Builder) -> set[int]:
    """The actors ``model_dir``'s model was trained on: its ``metrics.json``'s, else its split's on this data."""
    path = os.path.join(model_dir, METRICS_FILE)
    recorded = _read_json(path).get("actors", {}).get("train") if storage.exists(path) else None
    return set(recorded if recorded is not None else builder.actors_of("train", **trained.split_kwargs()))


def check_train_overlap(model_dir: str, trained: TrainConfig | None, builder: ravdess_tfrecords.Builder,
                        subset: str, kwargs: dict[str, Any]) -> None:
    """Refuse to evaluate on actors the model was trained on (speaker leakage), unless it is the model's own split.

    On its own split the subsets mean what they say (``--subset=train`` asks for the training actors);
    on another split, a test set sharing actors with the training set is not a test. A model directory
    without ``config.json`` cannot be checked.

    Raises:
      UserError: naming the overlapping actors and the flag that allows them.
    """
    if trained is None or kwargs == trained.split_kwargs():
        return
    overlap = sorted(_trained_actors(model_dir, trained, builder) & set(builder.actors_of(subset, **kwargs)))
    if overlap:
        raise UserError(
            f"{subset} actors {overlap} of this split were in the training set of {model_dir} "
            f"(--split={trained.split}): not a test of unseen speakers; pass --allow_train_overlap if it is meant"
        )


def evaluate_saved(
    model_dir: str,
    *,
    data_dir: str | None = None,
    subset: str = "test",
    split: str | None = None,
    folds: int | None = None,
    fold: int | None = None,
    batch_size: int = 32,
    output_dir: str | None = None,
    allow_train_overlap: bool = False,
) -> dict[str, Any]:
    """Re-evaluate a saved model on ``subset`` of a split; defaults come from its ``config.json``.

    Writes ``metrics.json`` and ``confusion_matrix.png`` into ``output_dir``
    (default ``model_dir/eval_<split>_<subset>``, ``eval_dir_name``). ``fold`` and ``folds`` without ``split``
    pick another fold of the scheme the model was trained with. Actors the model was trained on are
    refused (``check_train_overlap``) unless ``allow_train_overlap``.

    Returns:
      The metrics dict (``classification_metrics`` plus ``loss`` and ``actors``).
    """
    model_dir, data_dir, output_dir = (storage.expand(p) if p else p for p in (model_dir, data_dir, output_dir))
    model, minfo = load_saved(model_dir)
    config_path = os.path.join(model_dir, CONFIG_FILE)
    trained = TrainConfig.from_json(_read_json(config_path)) if storage.exists(config_path) else None
    data_dir = data_dir or (trained.data_dir if trained else None)
    if not data_dir:
        raise UserError("pass --data_dir: the model directory does not record one")
    kwargs = _split_kwargs(model_dir, trained, split, folds, fold)
    builder = ravdess_tfrecords.Builder(data_dir)
    if not allow_train_overlap:
        check_train_overlap(model_dir, trained, builder, subset, kwargs)
    check_inputs(minfo["inputs"], builder.info, f"the model in {model_dir}")
    if builder.info.audio_frames != minfo["audio_frames"]:
        raise UserError(
            f"{data_dir} has audio_frames={builder.info.audio_frames} but the model was trained "
            f"with {minfo['audio_frames']}: convert with the model's settings"
        )
    num_classes = int(minfo["num_classes"])
    # The clips the model was trained and tested on: the run's vocal-channel filter too.
    vocal_channels = trained.vocal_channels if trained else None
    ds = builder.as_dataset(subset, training=False, batch_size=batch_size, num_classes=num_classes,
                            vocal_channels=vocal_channels, **kwargs)
    ds = adapt_inputs(ds, minfo["inputs"], builder.info.input_names)
    metrics = evaluate_model(model, ds, minfo["class_names"])
    metrics["actors"] = list(builder.actors_of(subset, **kwargs))
    output_dir = output_dir or os.path.join(model_dir, eval_dir_name(kwargs, subset))
    storage.makedirs(output_dir)
    _write_json(os.path.join(output_dir, METRICS_FILE), metrics)
    title = f"{subset} actors {metrics['actors']}"
    metrics_lib.plot_confusion_matrix(metrics, os.path.join(output_dir, CONFUSION_PNG), title)
    metrics["output_dir"] = output_dir
    return metrics
