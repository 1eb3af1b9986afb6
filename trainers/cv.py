"""Cross-validation: every fold of a fold scheme trained in ``model_dir/fold_<i>``, then a results table."""

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


def run(config: TrainConfig) -> dict[str, Any]:
    """``train`` one split, or every fold of a fold scheme when ``config.fold`` is None.

    Every fold trains in ``model_dir/fold_<i>``; the table of per-fold and mean
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
    results = []
    for fold in range(count):
        _log(config, f"=== fold {fold + 1}/{count} ({config.split}) ===")
        fold_dir = os.path.join(config.model_dir, f"fold_{fold}")
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
