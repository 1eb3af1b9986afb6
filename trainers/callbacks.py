"""The callbacks of ``model.fit``: backup/restore, best checkpoint, early stopping, LR on plateau, logs."""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

from tensorflow import keras

from ravdess_tfrecords import models, storage
from trainers import keras_gfile
from trainers.config import TrainConfig
from trainers.evaluation import evaluate_model
from trainers.model_dir import (
    BACKUP_DIR,
    BEST_WEIGHTS,
    COUNTERS_FILE,
    HISTORY_FILE,
    LAST_STATE_DIR,
    LOG_DIR,
    _best,
    _read_json,
    _write_json,
    read_history,
)
from trainers.strategy import average_unsynced_variables

# What of each callback's state must outlive a killed process (Keras resets it in on_train_begin).
_COUNTERS = {
    keras.callbacks.EarlyStopping: ("wait", "best", "best_epoch"),
    keras.callbacks.ReduceLROnPlateau: ("wait", "best", "cooldown_counter"),
}


_METADATA = "training_metadata.json"  # BackupAndRestore's own record of the finished epochs
_WEIGHTS = "latest.weights.h5"  # BackupAndRestore's weights and optimizer state
LAST_WEIGHTS = _WEIGHTS  # the same in LAST_STATE_DIR
_PREVIOUS = ".bkp"  # double_checkpoint: the pair before the last, copied aside before each save


def _recorded_epoch(path: str) -> int | None:
    """The epoch in a ``BackupAndRestore`` record, None if the file is not a whole record."""
    try:
        return int(_read_json(path)["epoch"])
    except (ValueError, KeyError, TypeError):  # empty or cut short (JSONDecodeError is a ValueError)
        return None


def _whole_pair(backup_dir: str, suffix: str = "") -> int | None:
    """The epoch of a ``BackupAndRestore`` pair (record and weights, ``suffix`` ``.bkp``: the pair before),
    None unless both files are there and the record is whole."""
    if not storage.exists(os.path.join(backup_dir, _WEIGHTS + suffix)):
        return None
    return _recorded_epoch(os.path.join(backup_dir, _METADATA + suffix))


def backup_epochs(backup_dir: str) -> int:
    """Epochs finished according to a ``BackupAndRestore`` directory (0 when there is none).

    Keras writes its record in place, after the weights: a process killed while it writes leaves it
    empty or cut short. A record without its weights (a copy or a deletion a kill cut short) holds
    nothing either: Keras would resume from fresh weights. Such a backup holds for sure only the
    previous pair (``.bkp``), which ``repair_backup`` puts back: its epoch counts, or 0 without one.
    """
    if not storage.exists(os.path.join(backup_dir, _METADATA)):
        return 0
    epoch = _whole_pair(backup_dir)
    if epoch is None:
        epoch = _whole_pair(backup_dir, _PREVIOUS)
    return epoch or 0


def repair_backup(backup_dir: str) -> None:
    """Make a backup whose pair a kill cut short consistent again, before anything resumes from it.

    Keras would fail on a cut-short record (a ``JSONDecodeError``, not the ``OSError`` its own fallback
    catches), and would resume a record without weights from fresh weights, silently. The previous
    weights and record (``.bkp``) go back in place: the run resumes one epoch earlier. Without them
    nothing finished for sure, and the backup goes (the run starts over).
    """
    path = os.path.join(backup_dir, _METADATA)
    if not storage.exists(path) or _whole_pair(backup_dir) is not None:
        return
    weights = os.path.join(backup_dir, _WEIGHTS)
    if _whole_pair(backup_dir, _PREVIOUS) is not None:
        storage.copy(weights + _PREVIOUS, weights)
        storage.copy(path + _PREVIOUS, path)
    else:
        storage.remove_any(backup_dir)


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that also carries early stopping's and LR plateau's counters across a restart.

    Keras restores weights, optimizer and epoch, but ``EarlyStopping`` and
    ``ReduceLROnPlateau`` start again from ``wait = 0`` and ``best = None``, so a
    run killed every few epochs would never stop early. At each epoch end this
    writes their counters (``_COUNTERS``) to ``backup/counters.json``, keyed by
    the epoch, atomically and *before* the weights, then saves the backup; on
    restart it restores the counters of the epoch the backup holds. Put it last
    in the callback list: at epoch end everything else has recorded the epoch
    before the backup marks it done, and at train begin the counters are set
    after the other callbacks have reset themselves.

    When training completes, the backup (weights, optimizer, epoch, counters of
    the last epoch) is copied to ``last_dir`` before Keras deletes it: a later
    run with more epochs continues from there (``trainers.loop.train``).

    Args:
      backup_dir: the backup directory (deleted when training completes).
      counters: the callbacks whose counters to keep (instances of ``_COUNTERS``' types).
      last_dir: where the final backup is kept; None: nowhere.
    """

    def __init__(self, backup_dir: str, counters: Sequence[keras.callbacks.Callback], last_dir: str | None = None):
        super().__init__(backup_dir, double_checkpoint=True)
        self._counters = list(counters)
        self._counters_path = os.path.join(backup_dir, COUNTERS_FILE)
        self._last_dir = last_dir

    def _state(self) -> list[dict[str, Any]]:
        return [{name: _plain(getattr(cb, name)) for name in _COUNTERS[type(cb)]} for cb in self._counters]

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        epochs = backup_epochs(self.backup_dir)
        if not epochs or not storage.exists(self._counters_path):
            return
        saved = _read_json(self._counters_path).get(str(epochs))
        if saved is None:
            return
        for cb, values in zip(self._counters, saved, strict=True):
            for name, value in values.items():
                setattr(cb, name, value)

    def on_epoch_end(self, epoch, logs=None):
        storage.makedirs(self.backup_dir)
        previous = _read_json(self._counters_path) if storage.exists(self._counters_path) else {}
        # The last two epochs: a kill between this file and the weights leaves the backup one epoch behind.
        kept = {k: v for k, v in previous.items() if int(k) == epoch}
        kept[str(epoch + 1)] = self._state()
        _write_json(self._counters_path, kept)
        super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        if self._last_dir and backup_epochs(self.backup_dir):
            # Whole or not at all: a finished run's evaluation and export start from it (trainers.loop).
            storage.copytree_whole(self.backup_dir, self._last_dir)
        super().on_train_end(logs)


def _plain(value: Any) -> Any:
    """A callback attribute as JSON: numpy scalars to Python numbers."""
    return value.item() if hasattr(value, "item") else value


class ExactValidation(keras.callbacks.Callback):
    """Validation metrics over every validation clip exactly once, for a multi-worker run.

    Under ``MultiWorkerMirroredStrategy`` Keras' own validation reduces each
    worker's metric *values* with a mean, which is not the metric over the set
    when workers see different clips or counts (2 workers, 60 clips: 11/64
    logged, 16/60 true). Here, at each epoch end, every worker first averages
    the batch-norm moving statistics over the replicas (a collective: then all
    workers hold the same model), then runs the whole, unsharded validation
    set through it locally (``evaluation.evaluate_model``, no collective), and
    writes ``val_loss`` and ``val_accuracy`` into the epoch's logs. Every worker
    gets the same numbers, so checkpoint, early stopping and the LR plateau
    decide alike everywhere, and they equal what ``trainers.evaluate`` reports
    for the same weights. Put it first in the callback list.

    Args:
      dataset: the validation batches ``(inputs, label)``, not distributed.
      class_names: the model's classes.
      strategy: the run's (multi-worker) strategy.
    """

    def __init__(self, dataset, class_names: Sequence[str], strategy):
        super().__init__()
        self._dataset = dataset
        self._class_names = tuple(class_names)
        self._strategy = strategy

    def on_epoch_end(self, epoch, logs=None):
        average_unsynced_variables(self.model, self._strategy)
        metrics = evaluate_model(self.model, self._dataset, self._class_names)
        if logs is not None:
            logs["val_loss"] = metrics["loss"]
            logs["val_accuracy"] = metrics["accuracy"]


def cosine_learning_rate(epoch: int, *, learning_rate: float, epochs: int, warmup_epochs: int = 0,
                         min_learning_rate: float = 0.0) -> float:
    """The learning rate of 0-based ``epoch`` under ``--lr_schedule=cosine``.

    Warm-up: ``learning_rate * (epoch + 1) / (warmup_epochs + 1)`` for ``epoch < warmup_epochs`` (linear,
    never 0: an epoch at rate 0 would be wasted). Then cosine decay from ``learning_rate`` at epoch
    ``warmup_epochs`` towards ``min_learning_rate`` at epoch ``epochs``:
    ``min + (lr - min) * (1 + cos(pi * t)) / 2`` with ``t = (epoch - warmup_epochs) / (epochs - warmup_epochs)``.
    """
    if epoch < warmup_epochs:
        return learning_rate * (epoch + 1) / (warmup_epochs + 1)
    t = min(1.0, (epoch - warmup_epochs) / max(1, epochs - warmup_epochs))
    return min_learning_rate + (learning_rate - min_learning_rate) * 0.5 * (1.0 + math.cos(math.pi * t))


class CosineSchedule(keras.callbacks.Callback):
    """Sets the optimizer's learning rate at each epoch's start to ``cosine_learning_rate(epoch, ...)``.

    Keyed on the epoch number alone (no state of its own), so a run resumed by
    ``BackupAndRestore`` (which restarts ``fit`` at the backed-up epoch) continues on the schedule.
    """

    def __init__(self, learning_rate: float, epochs: int, warmup_epochs: int = 0, min_learning_rate: float = 0.0):
        super().__init__()
        self._kwargs = dict(learning_rate=learning_rate, epochs=epochs, warmup_epochs=warmup_epochs,
                            min_learning_rate=min_learning_rate)

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate = cosine_learning_rate(epoch, **self._kwargs)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:  # into history.csv, as ReduceLROnPlateau's runs log it
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class LogLearningRate(keras.callbacks.Callback):
    """Logs the learning rate in effect at the end of each epoch (into ``history.csv``).

    ``ReduceLROnPlateau`` logs the rate before it lowers it, so the epoch that lowered it would show the old
    rate; placed after the schedule, this callback logs the one the next epoch starts from.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class StagedFineTuning(keras.callbacks.Callback):
    """The visual backbone frozen for the first ``freeze_epochs`` epochs, then trained with the rest.

    Frozen (``trainable = False``), its weights get no updates and its batch-norm layers run in
    inference mode, so their moving statistics stay too. Keyed on the epoch number alone (as
    ``CosineSchedule``), so a run resumed by ``BackupAndRestore`` freezes or not as the epoch says.
    Changing ``trainable`` needs a new train function (Keras: ``make_train_function(force=True)``);
    the optimizer already holds every weight's slot (``trainers.model.build_and_compile``). At the end
    of training the backbone is trainable again, so the saved model is not frozen for whoever loads it.
    """

    def __init__(self, freeze_epochs: int, verbose: int = 1):
        super().__init__()
        self._freeze_epochs = freeze_epochs
        self._verbose = verbose

    def _set(self, trainable: bool) -> bool:
        backbone = models.visual_backbone(self.model)
        if backbone.trainable == trainable:
            return False
        backbone.trainable = trainable
        return True

    def on_epoch_begin(self, epoch, logs=None):
        frozen = epoch < self._freeze_epochs
        if self._set(not frozen):
            self.model.make_train_function(force=True)
            if self._verbose:
                print(f"the visual backbone is frozen through epoch {self._freeze_epochs}" if frozen
                      else f"epoch {epoch + 1}: the visual backbone trains from now on (all layers)", flush=True)

    def on_train_end(self, logs=None):
        self._set(True)


def make_callbacks(config: TrainConfig, model_dir: str) -> list[keras.callbacks.Callback]:
    """Best checkpoint, early stopping, the LR schedule, CSV history, TensorBoard, then backup/restore.

    The LR schedule: ``ReduceLROnPlateau`` (``lr_schedule="plateau"``) or ``CosineSchedule``.
    When a backup exists (an interrupted run), the checkpoint only saves epochs
    better than the best one already in ``history.csv``, and early stopping and
    the LR plateau go on counting where they were (``ResumableBackup``).
    """
    keras_gfile.patch()  # CSVLogger under a URI model_dir
    history = read_history(os.path.join(model_dir, HISTORY_FILE))
    best = _best(history, config.monitor)
    mode = "min" if "loss" in config.monitor else "max"
    storage.makedirs(os.path.dirname(os.path.join(model_dir, BEST_WEIGHTS)))
    early_stopping = keras.callbacks.EarlyStopping(
        monitor=config.monitor, mode=mode, patience=config.early_stopping_patience,
        verbose=int(bool(config.verbose)),  # a multi-worker run's other workers: 0, only the chief reports
    )
    if config.lr_schedule == "cosine":
        schedule = CosineSchedule(config.learning_rate, config.epochs, config.warmup_epochs,
                                  config.min_learning_rate)
        counted = [early_stopping]
    else:
        schedule = keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss",
            factor=config.lr_factor,
            patience=config.lr_patience,
            min_lr=config.min_learning_rate,
            verbose=int(bool(config.verbose)),
        )
        counted = [early_stopping, schedule]
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            os.path.join(model_dir, BEST_WEIGHTS),
            monitor=config.monitor,
            mode=mode,
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=None if best is None else best[1],
        ),
        early_stopping,
        schedule,
        LogLearningRate(),  # after the schedule, before the CSV: the rate it left for the next epoch
        keras.callbacks.CSVLogger(os.path.join(model_dir, HISTORY_FILE), append=True),
    ]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(model_dir, LOG_DIR), write_graph=False))
    else:
        warnings.warn("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)", stacklevel=2)
    if config.freeze_epochs:
        callbacks.append(StagedFineTuning(config.freeze_epochs, verbose=config.verbose))
    callbacks.append(ResumableBackup(os.path.join(model_dir, BACKUP_DIR), counted,  # last
                                     last_dir=os.path.join(model_dir, LAST_STATE_DIR)))
    return callbacks
