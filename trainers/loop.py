"""One training run: datasets, model, ``model.fit`` with callbacks, then evaluation and export."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

import tensorflow as tf
from tensorflow import keras

import ravdess_tfrecords
from ravdess_tfrecords import labels, models, schema, storage
from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.reading import augment
from trainers import metrics as metrics_lib
from trainers.callbacks import LAST_WEIGHTS, ExactValidation, backup_epochs, make_callbacks, repair_backup
from trainers.cluster import remove_on_stop, stop_for_test
from trainers.config import TrainConfig, check_inputs, check_restart, data_fingerprint, run_record
from trainers.data import class_weights, make_datasets, scale_out
from trainers.data import steps_per_epoch as epoch_steps
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
    KERAS_FILE,
    LAST_STATE_DIR,
    LOG_DIR,
    METRICS_FILE,
    MODEL_INFO_FILE,
    ONNX_FILE,
    SAVED_MODEL_DIR,
    _best,
    _read_json,
    _write_json,
    read_history,
    trim_history,
)
from trainers.strategy import (
    average_unsynced_variables,
    barrier,
    distribution_strategy,
    is_chief,
    is_multi_worker,
    num_workers,
    task_name,
)


def _log(config: TrainConfig, message: str) -> None:
    if config.verbose:
        print(message, flush=True)


def _prepare_model_dir(config: TrainConfig, model_dir: str, extend: bool = False, finished: bool = False) -> None:
    """Resume from a backup (history trimmed to its epochs), or clear what a run killed before one left.

    ``extend``: a completed run goes on to more epochs: its last epoch's state (``LAST_STATE_DIR``)
    becomes the backup to resume from, and ``metrics.json`` goes (the run is not complete until it ends).
    ``finished``: training finished but the run was stopped before ``metrics.json`` (``_training_finished``):
    everything stays but what is left of the backup; nothing trains.
    """
    backup = os.path.join(model_dir, BACKUP_DIR)
    last = os.path.join(model_dir, LAST_STATE_DIR)
    if finished:
        storage.remove_any(backup)  # what a kill left of Keras' deletion: no epoch after the kept state
        epochs = backup_epochs(last)
        trim_history(os.path.join(model_dir, HISTORY_FILE), epochs)
        _log(config, f"the run in {model_dir} finished training ({epochs} epochs) but was stopped before its "
                     "metrics: evaluating and exporting it, without training again")
        return
    if extend and not backup_epochs(backup):
        storage.copytree_whole(last, backup)  # a kill mid-copy must not leave a record without its weights
    if extend:
        storage.remove_any(os.path.join(model_dir, METRICS_FILE))
    repair_backup(backup)  # a record a kill cut short
    epochs = backup_epochs(backup)
    if epochs:
        trim_history(os.path.join(model_dir, HISTORY_FILE), epochs)
        what = "completed" if extend else "interrupted"
        _log(config, f"resuming the {what} run in {model_dir} from {backup} after epoch {epochs}")
        return
    for stale in (BACKUP_DIR, HISTORY_FILE, BEST_WEIGHTS, LAST_STATE_DIR, LOG_DIR):
        storage.remove_any(os.path.join(model_dir, stale))


def _extension(config: TrainConfig, model_dir: str, done: dict[str, Any]) -> tuple[bool, str]:
    """Whether the completed run in ``model_dir`` (its ``metrics.json``: ``done``) goes on to ``config.epochs``.

    It does when ``config.epochs`` is more than it trained, it did not stop early (it trained every
    epoch it was started with), and it kept its last epoch's state. Returns ``(extend, why not)``.
    """
    trained = int(done.get("epochs_trained", 0))
    if config.epochs <= trained:
        return False, ""
    planned = _read_json(os.path.join(model_dir, CONFIG_FILE)).get("epochs", trained)
    if trained < planned:
        return False, (f" (it stopped early after {trained} of {planned} epochs: more --epochs do not extend "
                       "it; delete it to retrain)")
    if not backup_epochs(os.path.join(model_dir, LAST_STATE_DIR)):
        raise UserError(f"{model_dir} holds a completed run of {trained} epochs without its last epoch's state "
                        f"({LAST_STATE_DIR}: written by an older version), so --epochs={config.epochs} cannot "
                        f"extend it; use a new --model_dir, or --epochs={trained} to report its metrics")
    return True, ""


def _training_finished(model_dir: str) -> bool:
    """Whether the run in ``model_dir`` finished training but was stopped before ``metrics.json``.

    Its last epoch's state (``LAST_STATE_DIR``) is kept, whole, as training ends, before Keras deletes the
    backup; a backup still there (a deletion a kill cut short) holds no later epoch. A backup with a later
    epoch is an extension of a completed run, interrupted: it resumes as any other.
    """
    if storage.exists(os.path.join(model_dir, METRICS_FILE)):
        return False
    last = backup_epochs(os.path.join(model_dir, LAST_STATE_DIR))
    return last > 0 and last >= backup_epochs(os.path.join(model_dir, BACKUP_DIR))


def _resume_epoch(model_dir: str, extend: bool) -> int:
    """The 0-based epoch that training starts at: the one after the backup's (``_prepare_model_dir`` keeps
    or repairs it to ``backup_epochs``; an extension's backup is its last state), 0 for a fresh run."""
    epochs = backup_epochs(os.path.join(model_dir, BACKUP_DIR))
    if not epochs and extend:
        epochs = backup_epochs(os.path.join(model_dir, LAST_STATE_DIR))
    return epochs


def _check_precision(config: TrainConfig, model_dir: str) -> None:
    """A run resumed (from its backup or its last epoch's state) keeps its ``--mixed_precision``.

    Another policy cannot take the optimizer state over (float16 wraps the optimizer in a
    ``LossScaleOptimizer`` with variables of its own): Keras would skip it with a warning and the
    run would go on without Adam's moments, its step and a lowered learning rate.
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    if not storage.exists(path):
        return
    old = _read_json(path).get("mixed_precision", "none")
    resumes = backup_epochs(os.path.join(model_dir, BACKUP_DIR)) or backup_epochs(
        os.path.join(model_dir, LAST_STATE_DIR))
    if old != config.mixed_precision and resumes:
        raise UserError(f"{model_dir} holds a run to resume that trained with --mixed_precision={old}, not "
                        f"--mixed_precision={config.mixed_precision}: its optimizer state cannot be carried over; "
                        f"pass --mixed_precision={old}, or use a new --model_dir")


def _saved_paths(model_dir: str) -> dict[str, str]:
    """``export.save_model``'s ``{what: path}`` of a completed run in ``model_dir``."""
    saved = {"keras": os.path.join(model_dir, KERAS_FILE),
             "dataset_info": os.path.join(model_dir, schema.INFO_FILENAME),
             "model_info": os.path.join(model_dir, MODEL_INFO_FILE)}
    if storage.exists(os.path.join(model_dir, SAVED_MODEL_DIR)):
        saved["saved_model"] = os.path.join(model_dir, SAVED_MODEL_DIR)
    if storage.exists(os.path.join(model_dir, ONNX_FILE)):
        saved["onnx"] = os.path.join(model_dir, ONNX_FILE)
    return saved


@contextlib.contextmanager
def _write_dir(config: TrainConfig, strategy: tf.distribute.Strategy, extend: bool = False,
               finished: bool = False) -> Iterator[TrainConfig]:
    """``config`` with the ``model_dir`` this process writes, prepared (``_prepare_model_dir``): ``model_dir``
    on the chief; a temporary directory, deleted after, elsewhere.

    Every worker of a multi-worker run runs the same code (fit, evaluation,
    saving: they all take part in the collectives), but Keras' callbacks and
    savers know nothing of chief and workers, so the other workers write their
    copies where nobody reads them. A non-chief worker starts from a copy of what
    the chief resumes from (its backup, or the last state of a completed run
    being extended, history and best checkpoint), when there is one, so a
    restarted cluster resumes as a whole and ends on the same weights (the best
    checkpoint's threshold comes from the history). A run whose training finished
    (``finished``) copies the last state as it is, for the evaluation.

    The order is explicit: the chief prepares ``model_dir`` first (repairs a backup a kill cut short,
    builds an extension's backup from the last state, clears a stale one), then every worker passes a
    barrier (``strategy.barrier``), and only then do the other workers copy: never a backup half repaired
    or half built. Only the chief reports; the other workers' copies of the logs would repeat it.
    """
    model_dir = config.model_dir
    if is_chief(strategy):
        storage.makedirs(model_dir)  # the run starts: from here on model_dir is written
        _prepare_model_dir(config, model_dir, extend, finished)
        barrier(strategy)
        yield config
        return
    barrier(strategy)  # the chief has prepared model_dir
    scratch = tempfile.mkdtemp(prefix=f"ravdess-{task_name(strategy)}-")
    stop_cleanup = remove_on_stop(scratch)  # a signal ends the process through os._exit: no finally runs
    try:
        source = BACKUP_DIR if backup_epochs(os.path.join(model_dir, BACKUP_DIR)) else None
        target = BACKUP_DIR
        if finished:
            source = target = LAST_STATE_DIR
        if source:
            storage.copytree(os.path.join(model_dir, source), os.path.join(scratch, target))
            for name in (HISTORY_FILE, BEST_WEIGHTS):
                if storage.exists(os.path.join(model_dir, name)):
                    storage.makedirs(os.path.dirname(os.path.join(scratch, name)))
                    storage.copy(os.path.join(model_dir, name), os.path.join(scratch, name))
        local = dataclasses.replace(config, model_dir=scratch, verbose=0)
        _prepare_model_dir(local, scratch, extend, finished)
        yield local
    finally:
        stop_cleanup()
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
    metrics are printed and returned, unless ``config.epochs`` is more than it
    trained and it did not stop early: then it continues from its last epoch
    (``_extension``; ``epochs``, the patiences and the verbosity may change
    between starts, ``config._RESTART_FREE``; ``mixed_precision`` not on a resume,
    ``_check_precision``). A run stopped after training but before
    ``metrics.json`` is evaluated and exported from its kept state, not trained
    again (``_training_finished``). Nothing is written into ``model_dir``
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
    check_inputs(models.MODEL_INPUTS[config.model], info, f"--model={config.model}")  # before anything is written
    fingerprint = data_fingerprint(info)
    check_restart(config, model_dir, fingerprint)
    metrics_path = os.path.join(model_dir, METRICS_FILE)
    backup = os.path.join(model_dir, BACKUP_DIR)
    extend = finished = False
    if storage.exists(metrics_path) and not backup_epochs(backup):  # a backup without its pair holds nothing
        done = _read_json(metrics_path)
        extend, why_not = _extension(config, model_dir, done)
        if not extend:
            _log(config, f"{model_dir} already holds a completed run{why_not}; reporting its metrics "
                         "(delete it to retrain)")
            if config.verbose:  # what a fresh run prints at its end
                _log(config, format_outputs(model_dir, _saved_paths(model_dir), done["test"]))
            return done
    elif _training_finished(model_dir):  # more --epochs extend it as they would a completed run
        trained = backup_epochs(os.path.join(model_dir, LAST_STATE_DIR))
        extend, _ = _extension(config, model_dir, {"epochs_trained": trained})
        finished = not extend
    _check_precision(config, model_dir)
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
    # Training reads from the epoch it resumes at: epochs are keyed on (--seed, epoch), not on the process.
    steps_per_epoch = epoch_steps(config, builder)
    train_ds, val_ds, test_ds = make_datasets(config, models.input_names(model), builder,
                                              _resume_epoch(model_dir, extend), steps_per_epoch)
    workers = num_workers(strategy)
    if workers > 1 or config.data_service:
        train_ds, val_ds, _ = scale_out(train_ds, val_ds, config, num_examples=steps_per_epoch * config.batch_size,
                                        num_workers=workers)
    weights = class_weights(config, builder)
    if weights is not None and is_chief(strategy):  # only the chief reports
        _log(config, "class weights (balanced): " + ", ".join(f"{class_names[c]} {w:.2f}" for c, w in weights.items()))
    with _write_dir(config, strategy, extend, finished) as local:
        return _fit_evaluate_save(
            local, model, fingerprint, split_map, class_names, info,
            (train_ds, val_ds, test_ds), steps_per_epoch, strategy, extend, weights, finished,
        )


def _fit_evaluate_save(config, model, fingerprint, split_map, class_names, info, datasets, steps_per_epoch, strategy,
                       extend=False, class_weight=None, finished=False):
    """``train`` from the moment the run writes ``config.model_dir`` (this process's write directory, prepared:
    ``_write_dir``)."""
    model_dir = config.model_dir
    train_ds, val_ds, test_ds = datasets
    metrics_path = os.path.join(model_dir, METRICS_FILE)
    if not finished:  # a finished run keeps the record of the run that trained it
        _write_json(os.path.join(model_dir, CONFIG_FILE), run_record(config, fingerprint))
    _log(
        config,
        f"model {model.name}: {model.count_params():,} parameters; actors "
        + "; ".join(f"{k} {list(v)}" for k, v in split_map.items()),
    )
    if not finished:
        _fit(config, model, (train_ds, val_ds), steps_per_epoch, strategy, class_weight, class_names)

    history = read_history(os.path.join(model_dir, HISTORY_FILE))
    best_weights = os.path.join(model_dir, BEST_WEIGHTS)
    if storage.exists(best_weights):
        model.load_weights(best_weights)
    elif finished:  # no epoch was best (a NaN monitor): the last epoch's weights, where fit left them
        _load_last_state(model, model_dir, strategy)
    if is_multi_worker(strategy):
        average_unsynced_variables(model, strategy)  # batch-norm statistics differ per worker
    best = _best(history, config.monitor)
    stop_for_test("evaluate")
    _log(config, f"evaluating on test (actors {list(split_map['test'])}) and validation...")
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
        "visual_weights": config.visual_weights,
        "temporal": config.temporal,
        "num_classes": config.num_classes,
        "seed": config.seed,
        "shuffle_labels": config.shuffle_labels,
    }
    metrics_lib.plot_confusion_matrix(
        test_metrics, os.path.join(model_dir, CONFUSION_PNG), f"{config.model} model, test actors {split_map['test']}"
    )
    metrics_lib.plot_history(history, os.path.join(model_dir, CURVES_PNG), result["best_epoch"], config.monitor)
    _write_json(metrics_path, result)  # last: marks the run complete
    _log(config, format_outputs(model_dir, saved, test_metrics))
    return result


def _fit(config, model, datasets, steps_per_epoch, strategy, class_weight, class_names):
    """``model.fit`` with the run's callbacks (``make_callbacks``), writing into ``config.model_dir``."""
    train_ds, val_ds = datasets
    callbacks = make_callbacks(config, config.model_dir)
    if is_multi_worker(strategy):
        # Keras' multi-worker validation averages per-worker metrics: computed here, every clip once.
        callbacks.insert(0, ExactValidation(val_ds, class_names, strategy))
    with warnings.catch_warnings():
        # With a vocal-channel filter the validation set's length is unknown to Keras, which then warns at the
        # end of the first epoch's validation that the input "ran out of data": one pass is what it evaluates.
        warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
        model.fit(
            train_ds,
            validation_data=None if is_multi_worker(strategy) else val_ds,
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch,  # the training input is an endless stream of epochs
            callbacks=callbacks,
            class_weight=class_weight,  # {label: weight}; Keras scales each example's loss by its label's
            shuffle=False,  # the dataset shuffles itself
            verbose=config.verbose,
        )


def _load_last_state(model: keras.Model, model_dir: str, strategy: tf.distribute.Strategy) -> None:
    """The weights of the last epoch's state (``LAST_STATE_DIR``), as ``BackupAndRestore`` loads them."""
    if model.optimizer is not None and not model.optimizer.built:
        with strategy.scope():  # the file holds the optimizer's variables too
            model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(model_dir, LAST_STATE_DIR, LAST_WEIGHTS))


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
    if "onnx" in saved:
        lines.append(f"  ONNX:             {saved['onnx']}")
    lines.append(f"  preprocessing:    {saved['dataset_info']}, {saved['model_info']}")
    return "\n".join(lines)
