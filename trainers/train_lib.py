"""The trainer's names that tests/ and tools/ use, re-exported from the modules that hold them.

The trainer is split as tensorflow/models official/ splits its own:

* ``model_dir``: what a run writes (file names), and the JSON/CSV readers and writers.
* ``config``: ``TrainConfig`` (``fit``'s flags as a frozen dataclass) and the restart check.
* ``strategy``: the ``tf.distribute`` strategy, built by the caller and passed down.
* ``data``: train/validation/test datasets from ``ravdess_tfrecords.load``.
* ``model``: the compiled model.
* ``callbacks``: backup/restore, best checkpoint, early stopping, LR on plateau, TensorBoard, CSV.
* ``evaluation``: metrics of a model on a dataset; re-evaluation of a saved model directory.
* ``export``: ``model.keras``, SavedModel, ``model_info.json``; loading them back.
* ``loop``: ``train(config)``: one run.
* ``cv``: ``run(config)``: one run, or every fold of a fold scheme plus a results table.
"""

from __future__ import annotations

from trainers.config import TrainConfig
from trainers.cv import run
from trainers.data import adapt_inputs
from trainers.evaluation import evaluate_saved
from trainers.export import load_saved, save_model
from trainers.loop import train

__all__ = [
    "TrainConfig",
    "adapt_inputs",
    "evaluate_saved",
    "load_saved",
    "run",
    "save_model",
    "train",
]
