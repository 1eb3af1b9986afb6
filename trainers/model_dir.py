"""What a run writes into its model directory, and the small readers and writers of those files.

One run (``trainers.loop.train``) writes::

    config.json            the TrainConfig and the data's fingerprint (checked when a run is started again)
    history.csv            one row per epoch (CSVLogger, appended across resumes)
    logs/                  TensorBoard scalars
    backup/                BackupAndRestore state and the early-stopping / LR-plateau counters
                           (deleted when training completes)
    checkpoints/best.weights.h5   weights of the best epoch on validation
    checkpoints/last/      the backup of the last epoch, kept when training completes: a later run with
                           more --epochs continues from it (trainers.loop.train)
    model.keras            the best model, Keras format
    saved_model/           the best model exported for serving (model.export; output ``probabilities``)
    model.onnx             the same as ONNX, when the [onnx] extra is installed (trainers.export.export_onnx)
    ravdess_info.json      copy of the data's ravdess_info.json: preprocessing settings, audio_frames
    model_info.json        class names, num_classes, audio_frames, input names: what predict needs
    metrics.json           test (and validation) metrics; marks the run complete
    confusion_matrix.png, training_curves.png

A cross-validation (``trainers.cv.run``) puts one such directory per fold in
``fold_<i>/`` and the table of test metrics in ``cv_results.md`` and ``.json``.

``model_dir`` may be local or any ``tf.io.gfile`` URI (``gs://``, ``file://``):
every file of ours goes through ``ravdess_tfrecords.storage``, Keras' own files
through its ``file_utils`` (which use ``tf.io.gfile`` for URIs).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Any

from ravdess_tfrecords import storage

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
MODEL_INFO_FILE = "model_info.json"
KERAS_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
ONNX_FILE = "model.onnx"
BACKUP_DIR = "backup"
COUNTERS_FILE = "counters.json"  # inside BACKUP_DIR
LOG_DIR = "logs"
BEST_WEIGHTS = os.path.join("checkpoints", "best.weights.h5")
LAST_STATE_DIR = os.path.join("checkpoints", "last")  # BACKUP_DIR as training completed
CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "training_curves.png"
CV_JSON = "cv_results.json"
CV_TABLE = "cv_results.md"


def require_saved(model_dir: str) -> tuple[str, str]:
    """The paths of ``model_dir``'s ``model.keras`` and ``model_info.json``, both there.

    Raises:
      FileNotFoundError: one is missing (naming it: not a model directory written by ``trainers.fit``).
    """
    paths = (os.path.join(model_dir, KERAS_FILE), os.path.join(model_dir, MODEL_INFO_FILE))
    for path in paths:
        if not storage.exists(path):
            raise FileNotFoundError(f"{path} not found: is {model_dir!r} a model_dir written by trainers.fit?")
    return paths


def require_saved_if_local(model_dir: str) -> None:
    """``require_saved`` for a local ``model_dir`` (``~`` expanded): the check needs no TensorFlow there, so an
    entry point makes it before the import. A URI is checked where the model loads (through ``tf.io.gfile``)."""
    if storage.is_local(model_dir):
        require_saved(storage.expand(model_dir))


def _write_json(path: str, value: Any) -> None:
    """Write ``value`` as indented JSON, whole or not at all (``storage.write_text``)."""
    storage.write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def _read_json(path: str) -> Any:
    return json.loads(storage.read_text(path))


def _read_rows(path: str) -> list[list[str]]:
    """The CSV rows of a file; [] if absent."""
    if not storage.exists(path):
        return []
    return list(csv.reader(io.StringIO(storage.read_text(path))))


def read_history(path: str) -> list[dict[str, float]]:
    """Rows of a CSVLogger file as dicts of floats (``epoch`` is 0-based); [] if absent."""
    rows = _read_rows(path)
    if not rows:
        return []
    header = rows[0]
    return [{k: float(v) for k, v in zip(header, row, strict=False) if v not in ("", None)} for row in rows[1:] if row]


def trim_history(path: str, epochs: int) -> int:
    """Keep the rows of epochs ``0..epochs-1`` in a CSVLogger file (atomically); returns the rows dropped.

    A run killed after its history row but before its backup redoes that epoch
    on resume; dropping the row keeps one row per epoch.
    """
    rows = _read_rows(path)
    if not rows:
        return 0
    column = rows[0].index("epoch")
    kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[column])) < epochs]
    if len(kept) == len(rows):
        return 0
    out = io.StringIO()
    csv.writer(out).writerows(kept)  # the CSVLogger dialect (excel)
    storage.write_text(path, out.getvalue())
    return len(rows) - len(kept)


def _best(history: list[dict[str, float]], monitor: str) -> tuple[int, float] | None:
    """(0-based epoch, value) of the best ``monitor`` row, or None."""
    rows = [(int(r["epoch"]), r[monitor]) for r in history if monitor in r and math.isfinite(r[monitor])]
    if not rows:
        return None
    pick = min if "loss" in monitor else max
    return pick(rows, key=lambda item: item[1])
