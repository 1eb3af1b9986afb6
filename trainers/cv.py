"""Cross-validation: every fold of a fold scheme trained in ``model_dir/fold_<n>``, then a results table.

Folds are numbered 1..K wherever a person reads them: the ``=== fold n/K ===`` header, the folder
``fold_<n>`` and the table's row. ``--fold`` (``TrainConfig.fold``) stays the 0-based index of the
library (``ravdess_tfrecords.load(fold=...)``): fold ``n`` is ``--fold=n-1``. A model directory of an
older run, whose folders are 0-based (``fold_0``..), keeps its folders: its finished folds are reported,
not trained again.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from tensorflow import keras

import ravdess_tfrecords
from ravdess_tfrecords import storage
from ravdess_tfrecords.reading import splits
from trainers import metrics as metrics_lib
from trainers.config import TrainConfig
from trainers.loop import _log, train
from trainers.model_dir import CV_JSON, CV_TABLE, _write_json
from trainers.strategy import distribution_strategy, is_chief


def fold_dirs(model_dir: str, count: int) -> tuple[list[str], str | None]:
    """The folders of folds 1..``count``: ``fold_1``..``fold_<count>``, or an older run's ``fold_0``.. kept.

    Returns:
      The folders in fold order, and the line that says an older run's 0-based folders are kept (else None).
    """
    if not storage.exists(os.path.join(model_dir, "fold_0")):
        return [os.path.join(model_dir, f"fold_{n}") for n in range(1, count + 1)], None
    note = (f"{model_dir} holds an older run's 0-based fold folders: folds 1..{count} stay in "
            f"fold_0..fold_{count - 1} (a new model directory numbers them fold_1..fold_{count})")
    return [os.path.join(model_dir, f"fold_{i}") for i in range(count)], note


def run(config: TrainConfig) -> dict[str, Any]:
    """``train`` one split, or every fold of a fold scheme when ``config.fold`` is None.

    Every fold trains in ``model_dir/fold_<n>`` (n = 1..K, ``fold_dirs``); the table of per-fold and mean
    +/- std test metrics goes to ``model_dir/cv_results.md`` and ``.json``.

    Returns:
      ``metrics.json`` of the run, or the cross-validation summary.
    """
    strategy = distribution_strategy(config.strategy, worker_timeout=config.worker_timeout)  # once, for every fold
    if not is_chief(strategy):
        config = dataclasses.replace(config, verbose=0)  # only the chief reports (its fold headers too)
    builder = ravdess_tfrecords.Builder(config.data_dir)  # the data's info read once, for every fold
    if not config.is_cross_validation:
        return train(config, strategy, builder)
    count = splits.num_folds(config.split, config.folds)
    dirs, note = fold_dirs(config.model_dir, count)
    if note:
        _log(config, note)
    results = []
    for fold, fold_dir in enumerate(dirs):
        _log(config, f"=== fold {fold + 1}/{count} ({config.split}, --fold={fold}) in {fold_dir} ===")
        keras.backend.clear_session()  # free the previous fold's graphs and layer names
        results.append(train(dataclasses.replace(config, fold=fold, model_dir=fold_dir), strategy, builder))
    summary = metrics_lib.cross_validation_summary(results)
    summary["split"] = config.split
    if not is_chief(strategy):  # every worker trained every fold; only the chief writes the table
        return summary
    _write_json(os.path.join(config.model_dir, CV_JSON), summary)
    table = metrics_lib.format_cv_table(summary)
    storage.write_text(os.path.join(config.model_dir, CV_TABLE), table + "\n")
    _log(config, f"{config.split} cross-validation, test metrics per fold:\n{table}\n"
                 f"  written to {os.path.join(config.model_dir, CV_TABLE)} and {CV_JSON}")
    return summary
