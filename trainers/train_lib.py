"""Training loop, callbacks, evaluation and export behind ``trainers.fit`` and ``trainers.evaluate``.

The model comes from ``ravdess_tfrecords.models``, the input from
``ravdess_tfrecords.load``; this module wires them together:

* ``TrainConfig``: every setting of one run (``fit``'s flags, as a frozen dataclass).
* ``run(config)``: one run, or every fold of a fold scheme plus a results table.
* ``train(config)``: one run: datasets, model, ``model.fit`` with callbacks
  (best-on-validation checkpoint, early stopping, learning-rate reduction,
  TensorBoard, CSV history, ``BackupAndRestore``), then evaluation and export.
* ``evaluate_model``: ``metrics.classification_metrics`` of a model on a dataset
  (accuracy, unweighted average recall, macro F1, per-class recall, confusion matrix).
* ``evaluate_saved``: re-evaluate a saved model directory on any split.

What one run writes into its model directory::

    config.json            the TrainConfig (checked when a run is resumed)
    history.csv            one row per epoch (CSVLogger, appended across resumes)
    logs/                  TensorBoard scalars
    backup/                BackupAndRestore state (deleted when training completes)
    checkpoints/best.weights.h5   weights of the best epoch on validation
    model.keras            the best model, Keras format
    saved_model/           the best model exported for serving (model.export)
    dataset_info.json      copy of the data's dataset_info.json: preprocessing settings, audio_frames
    model_info.json        class names, num_classes, audio_frames, input names: what predict needs
    metrics.json           test (and validation) metrics; marks the run complete
    confusion_matrix.png, training_curves.png
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import math
import os
import shutil
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow import keras

import ravdess_tfrecords
from ravdess_tfrecords import augment as augment_lib
from ravdess_tfrecords import labels, models, schema, splits
from trainers import metrics as metrics_lib

AUGMENTATIONS = ("flip", "crop", "color", "time_mask", "freq_mask")
DEFAULT_FILTERS = (32, 64, 128, 256)

STRATEGIES = ("default", "mirrored")

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
MODEL_INFO_FILE = "model_info.json"
KERAS_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
BACKUP_DIR = "backup"
LOG_DIR = "logs"
BEST_WEIGHTS = os.path.join("checkpoints", "best.weights.h5")
CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "training_curves.png"
CV_JSON = "cv_results.json"
CV_TABLE = "cv_results.md"

# Settings that may differ when a run is started again on the same model_dir.
_RESTART_FREE = ("data_dir", "model_dir", "verbose", "interrupt_after_epoch", "export")


class TrainingInterrupted(RuntimeError):
    """Raised by ``--interrupt_after_epoch``: the run stops as if killed, its backup kept."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs (``trainers.fit`` builds it from its flags).

    Attributes:
      data_dir: converted shards (``dataset_info.json``).
      model_dir: where the run writes (see the module docstring).
      split: scheme: ``speaker``, ``kfold``, ``luna5``, ``sixfold`` or ``actors``.
      folds, fold: K for ``kfold``; the test fold (None: every fold, in ``run``).
      actors: explicit ``{"train": (...), "validation": (...), "test": (...)}`` (scheme ``actors``).
      num_classes: 7 (neutral and calm merged) or 8.
      model, visual_backbone, temporal, filters: see ``ravdess_tfrecords.models``.
      augment: the training augmentations switched on (subset of ``AUGMENTATIONS``).
      one_hot: categorical instead of sparse categorical cross-entropy.
      monitor: the validation quantity for the checkpoint and early stopping.
      shuffle_labels: sanity control: training labels are shuffled within each batch,
        so a model can only reach chance level on test. Validation and test keep true labels.
      distribution_strategy: ``default`` (one device) or ``mirrored`` (``tf.distribute.MirroredStrategy``:
        every local GPU, ``batch_size`` is the global batch).
      interrupt_after_epoch: testing: raise ``TrainingInterrupted`` after this epoch (1-based).
    """

    data_dir: str
    model_dir: str
    split: str = "speaker"
    folds: int | None = None
    fold: int | None = None
    actors: dict[str, tuple[int, ...]] | None = None
    num_classes: int = labels.NUM_CLASSES
    model: str = "fusion"
    visual_backbone: str = "vgg"
    temporal: str = "max"
    filters: tuple[int, ...] = DEFAULT_FILTERS
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int | None = 0
    augment: tuple[str, ...] = AUGMENTATIONS
    one_hot: bool = False
    monitor: str = "val_accuracy"
    early_stopping_patience: int = 15
    lr_patience: int = 5
    lr_factor: float = 0.5
    min_learning_rate: float = 1e-5
    vocal_channels: tuple[str, ...] | None = None
    cache: bool = True
    shuffle_labels: bool = False
    export: bool = True
    distribution_strategy: str = "default"
    interrupt_after_epoch: int = 0
    verbose: int = 2

    def __post_init__(self):
        if self.model not in models.MODELS:
            raise ValueError(f"model must be one of {models.MODELS}, got {self.model!r}")
        if self.visual_backbone not in models.BACKBONES:
            raise ValueError(f"visual_backbone must be one of {models.BACKBONES}, got {self.visual_backbone!r}")
        if self.temporal not in models.TEMPORALS:
            raise ValueError(f"temporal must be one of {models.TEMPORALS}, got {self.temporal!r}")
        if self.split not in splits.SCHEMES:
            raise ValueError(f"split must be one of {splits.SCHEMES}, got {self.split!r}")
        if (self.split == "actors") != (self.actors is not None):
            raise ValueError("explicit actor lists go with split='actors' (and only with it)")
        bad = set(self.augment) - set(AUGMENTATIONS)
        if bad:
            raise ValueError(f"unknown augmentations {sorted(bad)}; choose from {', '.join(AUGMENTATIONS)}")
        if self.num_classes not in (7, 8):
            raise ValueError(f"num_classes must be 7 or 8, got {self.num_classes}")
        if self.distribution_strategy not in STRATEGIES:
            raise ValueError(f"distribution_strategy must be one of {STRATEGIES}, got {self.distribution_strategy!r}")
        if not self.monitor.startswith("val_"):
            raise ValueError(f"monitor must be a validation quantity (val_loss, val_accuracy), got {self.monitor!r}")

    @property
    def is_cross_validation(self) -> bool:
        return self.split in splits.FOLD_SCHEMES and self.fold is None

    def split_kwargs(self) -> dict[str, Any]:
        """``scheme``/``folds``/``fold``/``actors`` keyword arguments for ``ravdess_tfrecords.load``."""
        if self.split == "actors":
            return {"actors": {k: list(v) for k, v in self.actors.items()}}
        out: dict[str, Any] = {"scheme": self.split}
        if self.split == "kfold" and self.folds is not None:
            out["folds"] = self.folds
        if self.split in splits.FOLD_SCHEMES:
            out["fold"] = self.fold or 0
        return out

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.actors is not None:
            out["actors"] = {k: list(v) for k, v in self.actors.items()}
        for key in ("filters", "augment", "vocal_channels"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in names}
        if values.get("actors") is not None:
            values["actors"] = {k: tuple(v) for k, v in values["actors"].items()}
        for key in ("filters", "augment", "vocal_channels"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def _write_json(path: str, value: Any) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")


def _read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------- input


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
    )
    train = ravdess_tfrecords.load(
        config.data_dir, "train", training=True, seed=config.seed, augment=augment_config(config.augment), **common
    )
    if config.shuffle_labels:
        label_seed = 0 if config.seed is None else config.seed
        # Within-batch label shuffle, re-drawn every batch and epoch: features and labels lose their link.
        train = train.map(lambda x, y: (x, tf.random.shuffle(y, seed=label_seed)))
    validation = ravdess_tfrecords.load(config.data_dir, "validation", training=False, **common)
    test = ravdess_tfrecords.load(config.data_dir, "test", training=False, **common)
    return tuple(adapt_inputs(ds, input_names) for ds in (train, validation, test))


# ---------------------------------------------------------------------------------------------- model


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """``default``: the default strategy (one device); ``mirrored``: ``MirroredStrategy`` over local devices."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"distribution_strategy must be one of {STRATEGIES}, got {name!r}")


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


class _InterruptAfter(keras.callbacks.Callback):
    """Stops training the way a killed process would (no ``on_train_end``), after ``epochs`` epochs."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            raise TrainingInterrupted(f"interrupted after epoch {epoch + 1} (--interrupt_after_epoch)")


def read_history(path: str) -> list[dict[str, float]]:
    """Rows of a CSVLogger file as dicts of floats (``epoch`` is 0-based); [] if absent."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def _best(history: list[dict[str, float]], monitor: str) -> tuple[int, float] | None:
    """(0-based epoch, value) of the best ``monitor`` row, or None."""
    rows = [(int(r["epoch"]), r[monitor]) for r in history if monitor in r and math.isfinite(r[monitor])]
    if not rows:
        return None
    pick = min if "loss" in monitor else max
    return pick(rows, key=lambda item: item[1])


def make_callbacks(config: TrainConfig, model_dir: str) -> list[keras.callbacks.Callback]:
    """Backup/restore, best checkpoint, early stopping, LR on plateau, TensorBoard, CSV history.

    When a backup exists (an interrupted run), the checkpoint only saves epochs
    better than the best one already in ``history.csv``.
    """
    history = read_history(os.path.join(model_dir, HISTORY_FILE))
    best = _best(history, config.monitor)
    mode = "min" if "loss" in config.monitor else "max"
    os.makedirs(os.path.dirname(os.path.join(model_dir, BEST_WEIGHTS)), exist_ok=True)
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(model_dir, BACKUP_DIR)),
        keras.callbacks.ModelCheckpoint(
            os.path.join(model_dir, BEST_WEIGHTS),
            monitor=config.monitor,
            mode=mode,
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=None if best is None else best[1],
        ),
        keras.callbacks.EarlyStopping(
            monitor=config.monitor, mode=mode, patience=config.early_stopping_patience, verbose=1
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss",
            factor=config.lr_factor,
            patience=config.lr_patience,
            min_lr=config.min_learning_rate,
            verbose=1,
        ),
        keras.callbacks.CSVLogger(os.path.join(model_dir, HISTORY_FILE), append=True),
    ]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(model_dir, LOG_DIR), write_graph=False))
    else:
        warnings.warn("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)", stacklevel=2)
    if config.interrupt_after_epoch:
        callbacks.append(_InterruptAfter(config.interrupt_after_epoch))  # last: after backup and CSV
    return callbacks


# ---------------------------------------------------------------------------------------------- metrics


def predict_dataset(model: keras.Model, ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` over ``(inputs, label)`` batches.

    Returns:
      ``(y_true int64 (N,), probabilities float32 (N, C))``; one-hot labels are argmax-ed.
    """
    y_true, probs = [], []
    for inputs, label in ds:
        probs.append(np.asarray(model.predict_on_batch(inputs)))
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


# ---------------------------------------------------------------------------------------------- saving


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
    """Write ``model.keras``, ``saved_model/`` (if ``config.export``), ``dataset_info.json``, ``model_info.json``.

    Returns:
      ``{what: path}`` of everything written.
    """
    out = {"keras": os.path.join(model_dir, KERAS_FILE)}
    model.save(out["keras"])
    if config.export:
        out["saved_model"] = os.path.join(model_dir, SAVED_MODEL_DIR)
        if os.path.exists(out["saved_model"]):
            shutil.rmtree(out["saved_model"])
        model.export(out["saved_model"], verbose=False)
    out["dataset_info"] = os.path.join(model_dir, schema.INFO_FILENAME)
    tf.io.gfile.copy(os.path.join(info.data_dir, schema.INFO_FILENAME), out["dataset_info"], overwrite=True)
    out["model_info"] = os.path.join(model_dir, MODEL_INFO_FILE)
    _write_json(out["model_info"], model_info(config, model, info))
    return out


# ---------------------------------------------------------------------------------------------- training


def _check_restart(config: TrainConfig, model_dir: str) -> None:
    """A model_dir already used must have been used with the same settings."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    old, new = _read_json(path), config.to_json()
    differ = sorted(k for k in new if k not in _RESTART_FREE and old.get(k) != new[k])
    if differ:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in differ)
        raise ValueError(
            f"{model_dir} holds a run with other settings ({shown}); "
            "use a new --model_dir, or delete this one to start over"
        )


def _log(config: TrainConfig, message: str) -> None:
    if config.verbose:
        print(message, flush=True)


def train(config: TrainConfig) -> dict[str, Any]:
    """Train one model (one split or one fold), evaluate it on test, save and export it.

    Started again with the same settings, it resumes an interrupted run from its
    last completed epoch; a completed run (``metrics.json`` present) is not
    retrained, its metrics are returned.

    Returns:
      The contents of ``metrics.json``.

    Raises:
      TrainingInterrupted: ``config.interrupt_after_epoch`` was reached.
      ValueError: a model_dir used with other settings; bad splits (from ``load``).
    """
    model_dir = config.model_dir
    os.makedirs(model_dir, exist_ok=True)
    _check_restart(config, model_dir)
    metrics_path = os.path.join(model_dir, METRICS_FILE)
    backup = os.path.join(model_dir, BACKUP_DIR)
    if os.path.exists(metrics_path) and not os.path.exists(backup):
        _log(config, f"{model_dir} already holds a completed run; reporting its metrics (delete it to retrain)")
        return _read_json(metrics_path)
    if os.path.exists(backup):
        _log(config, f"resuming the interrupted run in {model_dir} from {backup}")
    else:
        for stale in (HISTORY_FILE, BEST_WEIGHTS, LOG_DIR):  # a run that died before its first backup
            path = os.path.join(model_dir, stale)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    _write_json(os.path.join(model_dir, CONFIG_FILE), config.to_json())

    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    builder = ravdess_tfrecords.Builder(config.data_dir)
    info = builder.info
    split_map = builder.split_actors(**config.split_kwargs())
    missing = [name for name in ("train", "validation", "test") if not split_map.get(name)]
    if missing:
        raise ValueError(f"split {config.split!r} has no actors for {missing}: train, validation and test are needed")
    class_names = labels.class_names(config.num_classes)

    with distribution_strategy(config.distribution_strategy).scope():
        model = build_and_compile(config, info.audio_frames)
    train_ds, val_ds, test_ds = make_datasets(config, models.input_names(model))
    _log(
        config,
        f"model {model.name}: {model.count_params():,} parameters; actors "
        + "; ".join(f"{k} {list(v)}" for k, v in split_map.items()),
    )
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        callbacks=make_callbacks(config, model_dir),
        shuffle=False,  # the dataset shuffles itself
        verbose=config.verbose,
    )

    history = read_history(os.path.join(model_dir, HISTORY_FILE))
    best_weights = os.path.join(model_dir, BEST_WEIGHTS)
    if os.path.exists(best_weights):
        model.load_weights(best_weights)
    best = _best(history, config.monitor)
    test_metrics = evaluate_model(model, test_ds, class_names)
    val_metrics = evaluate_model(model, val_ds, class_names)
    saved = save_model(model, model_dir, config, info)
    result = {
        "test": test_metrics,
        "validation": val_metrics,
        "actors": {k: list(v) for k, v in split_map.items()},
        "epochs_trained": len(history),
        "best_epoch": None if best is None else best[0] + 1,
        "monitor": config.monitor,
        "model": config.model,
        "visual_backbone": config.visual_backbone,
        "temporal": config.temporal,
        "num_classes": config.num_classes,
        "seed": config.seed,
        "shuffle_labels": config.shuffle_labels,
    }
    metrics_lib.plot_confusion_matrix(
        test_metrics, os.path.join(model_dir, CONFUSION_PNG), f"{config.model} model, test actors {split_map['test']}"
    )
    metrics_lib.plot_history(history, os.path.join(model_dir, CURVES_PNG))
    _write_json(metrics_path, result)  # last: marks the run complete
    _log(config, format_outputs(model_dir, saved, test_metrics))
    return result


def format_outputs(model_dir: str, saved: dict[str, str], test_metrics: dict[str, Any]) -> str:
    lines = [
        metrics_lib.format_metrics(test_metrics, "test"),
        f"  metrics:          {os.path.join(model_dir, METRICS_FILE)}",
        f"  confusion matrix: {os.path.join(model_dir, CONFUSION_PNG)}",
        f"  training curves:  {os.path.join(model_dir, CURVES_PNG)}",
        f"  history:          {os.path.join(model_dir, HISTORY_FILE)}",
        f"  TensorBoard logs: {os.path.join(model_dir, LOG_DIR)}",
        f"  best checkpoint:  {os.path.join(model_dir, BEST_WEIGHTS)}",
        f"  Keras model:      {saved['keras']}",
    ]
    if "saved_model" in saved:
        lines.append(f"  SavedModel:       {saved['saved_model']}")
    lines.append(f"  preprocessing:    {saved['dataset_info']}, {saved['model_info']}")
    return "\n".join(lines)


def run(config: TrainConfig) -> dict[str, Any]:
    """``train`` one split, or every fold of a fold scheme when ``config.fold`` is None.

    Every fold trains in ``model_dir/fold_<i>``; the table of per-fold and mean
    +/- std test metrics goes to ``model_dir/cv_results.md`` and ``.json``.

    Returns:
      ``metrics.json`` of the run, or the cross-validation summary.
    """
    if not config.is_cross_validation:
        return train(config)
    count = splits.num_folds(config.split, config.folds)
    results = []
    for fold in range(count):
        _log(config, f"=== fold {fold + 1}/{count} ({config.split}) ===")
        fold_dir = os.path.join(config.model_dir, f"fold_{fold}")
        keras.backend.clear_session()  # free the previous fold's graphs and layer names
        results.append(train(dataclasses.replace(config, fold=fold, model_dir=fold_dir)))
    summary = metrics_lib.cross_validation_summary(results)
    summary["split"] = config.split
    _write_json(os.path.join(config.model_dir, CV_JSON), summary)
    table = metrics_lib.format_cv_table(summary)
    with open(os.path.join(config.model_dir, CV_TABLE), "w") as f:
        f.write(table + "\n")
    _log(config, f"{config.split} cross-validation, test metrics per fold:\n{table}\n"
                 f"  written to {os.path.join(config.model_dir, CV_TABLE)} and {CV_JSON}")
    return summary


# ---------------------------------------------------------------------------------------------- evaluation


def load_saved(model_dir: str) -> tuple[keras.Model, dict[str, Any]]:
    """``(model.keras, model_info.json)`` of a trained model directory."""
    keras_path = os.path.join(model_dir, KERAS_FILE)
    info_path = os.path.join(model_dir, MODEL_INFO_FILE)
    for path in (keras_path, info_path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: is {model_dir!r} a model_dir written by trainers.fit?")
    return keras.models.load_model(keras_path, compile=False), _read_json(info_path)


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
) -> dict[str, Any]:
    """Re-evaluate a saved model on ``subset`` of a split; defaults come from its ``config.json``.

    Writes ``metrics.json`` and ``confusion_matrix.png`` into ``output_dir``
    (default ``model_dir/eval_<subset>``).

    Returns:
      The metrics dict (``classification_metrics`` plus ``loss`` and ``actors``).
    """
    model, minfo = load_saved(model_dir)
    config_path = os.path.join(model_dir, CONFIG_FILE)
    trained = TrainConfig.from_json(_read_json(config_path)) if os.path.exists(config_path) else None
    data_dir = data_dir or (trained.data_dir if trained else None)
    if not data_dir:
        raise ValueError("pass --data_dir: the model directory does not record one")
    if split is None and trained is not None:
        kwargs = trained.split_kwargs()
    else:
        kwargs = dataclasses.replace(
            TrainConfig(data_dir, model_dir), split=split or "speaker", folds=folds, fold=fold
        ).split_kwargs()
    builder = ravdess_tfrecords.Builder(data_dir)
    if builder.info.audio_frames != minfo["audio_frames"]:
        raise ValueError(
            f"{data_dir} has audio_frames={builder.info.audio_frames} but the model was trained "
            f"with {minfo['audio_frames']}: convert with the model's settings"
        )
    num_classes = int(minfo["num_classes"])
    ds = builder.as_dataset(subset, training=False, batch_size=batch_size, num_classes=num_classes, **kwargs)
    ds = adapt_inputs(ds, minfo["inputs"])
    metrics = evaluate_model(model, ds, minfo["class_names"])
    metrics["actors"] = list(builder.actors_of(subset, **kwargs))
    output_dir = output_dir or os.path.join(model_dir, f"eval_{subset.replace('+', '_')}")
    os.makedirs(output_dir, exist_ok=True)
    _write_json(os.path.join(output_dir, METRICS_FILE), metrics)
    title = f"{subset} actors {metrics['actors']}"
    metrics_lib.plot_confusion_matrix(metrics, os.path.join(output_dir, CONFUSION_PNG), title)
    metrics["output_dir"] = output_dir
    return metrics
