"""One training run: datasets, model, ``model.fit`` with callbacks, then evaluation and export."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import tensorflow as tf
from tensorflow import keras

import ravdess_tfrecords
from ravdess_tfrecords import labels, models, storage
from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.reading import augment
from trainers import metrics as metrics_lib
from trainers.callbacks import ExactValidation, backup_epochs, make_callbacks
from trainers.config import TrainConfig, check_restart, data_fingerprint, run_record
from trainers.data import make_datasets, scale_out
from trainers.evaluation import evaluate_model
from trainers.export import save_model
from trainers.model import build_and_compile
from trainers.model_dir import (
    BACKUP_DIR,
    BEST_WEIGHTS,
    CONFIG_FILE,
    CONFUSION_PNG,
    CURVES_PNG,
    HISTORY_FILE,
    LOG_DIR,
    METRICS_FILE,
    _best,
    _read_json,
    _write_json,
    read_history,
    trim_history,
)
from trainers.strategy import (
    average_unsynced_variables,
    distribution_strategy,
    is_chief,
    is_multi_worker,
    num_workers,
    task_name,
)


def _log(config: TrainConfig, message: str) -> None:
    if config.verbose:
        print(message, flush=True)


def _prepare_model_dir(config: TrainConfig, model_dir: str) -> None:
    """Resume from a backup (history trimmed to its epochs), or clear what a run killed before one left."""
    backup = os.path.join(model_dir, BACKUP_DIR)
    epochs = backup_epochs(backup)
    if epochs:
        trim_history(os.path.join(model_dir, HISTORY_FILE), epochs)
        _log(config, f"resuming the interrupted run in {model_dir} from {backup} after epoch {epochs}")
        return
    for stale in (BACKUP_DIR, HISTORY_FILE, BEST_WEIGHTS, LOG_DIR):
        storage.remove_any(os.path.join(model_dir, stale))


@contextlib.contextmanager
def _write_dir(model_dir: str, strategy: tf.distribute.Strategy) -> Iterator[str]:
    """Where this process writes: ``model_dir`` on the chief; a temporary directory, deleted after, elsewhere.

    Every worker of a multi-worker run runs the same code (fit, evaluation,
    saving: they all take part in the collectives), but Keras' callbacks and
    savers know nothing of chief and workers, so the other workers write their
    copies where nobody reads them. A non-chief worker starts from a copy of what
    the chief resumes from (its backup, history and best checkpoint), when there
    is a backup, so a restarted cluster resumes as a whole and ends on the same
    weights (the best checkpoint's threshold comes from the history).
    """
    if is_chief(strategy):
        yield model_dir
        return
    scratch = tempfile.mkdtemp(prefix=f"ravdess-{task_name(strategy)}-")
    try:
        if backup_epochs(os.path.join(model_dir, BACKUP_DIR)):
            storage.copytree(os.path.join(model_dir, BACKUP_DIR), os.path.join(scratch, BACKUP_DIR))
            for name in (HISTORY_FILE, BEST_WEIGHTS):
                if storage.exists(os.path.join(model_dir, name)):
                    storage.makedirs(os.path.dirname(os.path.join(scratch, name)))
                    storage.copy(os.path.join(model_dir, name), os.path.join(scratch, name))
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def train(
    config: TrainConfig,
    strategy: tf.distribute.Strategy | None = None,
    builder: ravdess_tfrecords.Builder | None = None,
) -> dict[str, Any]:
    """Train one model (one split or one fold), evaluate it on test, save and export it.

    Started again with the same settings, it resumes an interrupted run from its
    last completed epoch (a multi-worker run: from the chief's backup, on every
    worker); a completed run (``metrics.json`` present) is not retrained, its
    metrics are returned. Nothing is written into ``model_dir``
    before the data, the split, the model and the datasets are built: a bad
    ``data_dir`` or split leaves no trace.

    Args:
      config: the run's settings.
      strategy: the model is built under its scope; None: ``config.strategy``'s. Under a
        multi-worker strategy only the chief writes ``model_dir`` (``_write_dir``).
      builder: the ``Builder`` of ``config.data_dir``, if the caller has one (``cv.run``
        reads the data's info once for every fold); everything below uses it.

    Returns:
      The contents of ``metrics.json``.

    Raises:
      FileNotFoundError, ValueError: no converted data in ``data_dir``; bad splits;
        a model_dir used with other settings or trained on other data.
    """
    model_dir = config.model_dir
    builder = builder or ravdess_tfrecords.Builder(config.data_dir)
    info = builder.info
    fingerprint = data_fingerprint(info)
    check_restart(config, model_dir, fingerprint)
    metrics_path = os.path.join(model_dir, METRICS_FILE)
    backup = os.path.join(model_dir, BACKUP_DIR)
    if storage.exists(metrics_path) and not storage.exists(backup):
        _log(config, f"{model_dir} already holds a completed run; reporting its metrics (delete it to retrain)")
        return _read_json(metrics_path)
    split_map = builder.split_actors(**config.split_kwargs())
    missing = [name for name in ("train", "validation", "test") if not split_map.get(name)]
    if missing:
        raise UserError(f"split {config.split!r} has no actors for {missing}: train, validation and test are needed")
    class_names = labels.class_names(config.num_classes)

    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    if strategy is None:
        strategy = distribution_strategy(config.strategy, worker_timeout=config.worker_timeout)
    with strategy.scope():
        model = build_and_compile(config, info.audio_frames)
    train_ds, val_ds, test_ds = make_datasets(config, models.input_names(model), builder)
    workers = num_workers(strategy)
    if workers > 1 or config.data_service:  # an epoch is then a number of steps: count the kept clips
        train_ds, val_ds, steps_per_epoch = scale_out(
            train_ds, val_ds, config,
            num_examples=builder.num_examples("train", vocal_channels=config.vocal_channels,
                                              **config.split_kwargs()),
            num_workers=workers,
            num_files=len(builder.files("train", **config.split_kwargs())),
        )
    else:
        steps_per_epoch = None
    with _write_dir(model_dir, strategy) as write_dir:
        # Only the chief reports; the other workers' copies of the logs would repeat it.
        local = dataclasses.replace(config, model_dir=write_dir, verbose=config.verbose if is_chief(strategy) else 0)
        return _fit_evaluate_save(
            local, model, fingerprint, split_map, class_names, info,
            (train_ds, val_ds, test_ds), steps_per_epoch, strategy,
        )


def _fit_evaluate_save(config, model, fingerprint, split_map, class_names, info, datasets, steps_per_epoch, strategy):
    """``train`` from the moment the run writes ``config.model_dir`` (this process's write directory)."""
    model_dir = config.model_dir
    train_ds, val_ds, test_ds = datasets
    metrics_path = os.path.join(model_dir, METRICS_FILE)
    # The run starts: from here on model_dir is written.
    storage.makedirs(model_dir)
    _prepare_model_dir(config, model_dir)
    _write_json(os.path.join(model_dir, CONFIG_FILE), run_record(config, fingerprint))
    _log(
        config,
        f"model {model.name}: {model.count_params():,} parameters; actors "
        + "; ".join(f"{k} {list(v)}" for k, v in split_map.items()),
    )
    callbacks = make_callbacks(config, model_dir)
    if is_multi_worker(strategy):
        # Keras' multi-worker validation averages per-worker metrics: computed here, every clip once.
        callbacks.insert(0, ExactValidation(val_ds, class_names, strategy))
    model.fit(
        train_ds,
        validation_data=None if is_multi_worker(strategy) else val_ds,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself
        verbose=config.verbose,
    )

    history = read_history(os.path.join(model_dir, HISTORY_FILE))
    best_weights = os.path.join(model_dir, BEST_WEIGHTS)
    if storage.exists(best_weights):
        model.load_weights(best_weights)
    if is_multi_worker(strategy):
        average_unsynced_variables(model, strategy)  # batch-norm statistics differ per worker
    best = _best(history, config.monitor)
    test_metrics = evaluate_model(model, test_ds, class_names)
    val_metrics = evaluate_model(model, val_ds, class_names)
    # Saved models take video in [0, 1] and hold no training-time augmentation, however they were trained.
    saved = save_model(augment.without_augmentation(model), model_dir, config, info)
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
