"""The callbacks of ``model.fit``: backup/restore, best checkpoint, early stopping, LR on plateau, logs."""

from __future__ import annotations

import importlib.util
import os
import warnings

from tensorflow import keras

from trainers.config import TrainConfig
from trainers.model_dir import BACKUP_DIR, BEST_WEIGHTS, HISTORY_FILE, LOG_DIR, _best, read_history


class TrainingInterrupted(RuntimeError):
    """Raised by ``--interrupt_after_epoch``: the run stops as if killed, its backup kept."""


class _InterruptAfter(keras.callbacks.Callback):
    """Stops training the way a killed process would (no ``on_train_end``), after ``epochs`` epochs."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            raise TrainingInterrupted(f"interrupted after epoch {epoch + 1} (--interrupt_after_epoch)")


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
