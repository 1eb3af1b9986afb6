"""``tools/bench_accuracy.py``'s pure parts: variants, the table, the per-class recall.

The benchmark itself trains on real speech and is not part of the suite.
"""

from __future__ import annotations

import pytest
from absl import app

from tools import bench_accuracy as bench


def test_a_variant_splits_its_keys_into_converter_settings_and_fit_flags():
    v = bench.parse_variant("mine:standardize=coefficient,--label_smoothing=0.1,augment=time_mask+freq_mask")
    assert v.name == "mine" and v.convert == {"standardize": "coefficient"}
    assert v.fit == {"label_smoothing": "0.1", "augment": "time_mask+freq_mask"}
    assert v.fit_args() == ["--augment=time_mask,freq_mask", "--label_smoothing=0.1"]
    assert bench.parse_variant("old").convert["standardize"] == "sample"
    assert bench.parse_variant("default").describe() == "the defaults"
    for bad in ("nope", ":a=1", "x:a"):
        with pytest.raises(app.UsageError):
            bench.parse_variant(bad)


def _run(uar: float, recall_sad: float | None) -> dict:
    recall = {name: 0.5 for name in bench.labels.CLASS_NAMES} | {"sad": recall_sad}
    return {"test": {"accuracy": uar + 0.01, "uar": uar, "macro_f1": uar - 0.01, "per_class_recall": recall}}


def test_the_table_gives_mean_and_std_over_the_runs():
    variants = [bench.parse_variant("default"), bench.parse_variant("b:label_smoothing=0.1")]
    table = bench.format_table({"default": [_run(0.4, 0.1), _run(0.6, 0.3)], "b": [_run(0.5, None)]}, variants)
    rows = table.splitlines()
    assert rows[0].startswith("| variant | accuracy | UAR | macro F1 | runs |")
    assert rows[2].startswith("| default | 0.510 +/- 0.141 | 0.500 +/- 0.141 | 0.490 +/- 0.141 | 2 |")
    assert rows[3].startswith("| b | 0.510 +/- 0.000 | 0.500 +/- 0.000 |") and "label_smoothing=0.1" in rows[3]
    recall = bench.format_recall([_run(0.4, 0.1), _run(0.6, 0.3), _run(0.5, None)], "default")
    assert "sad 0.20 +/- 0.14" in recall and "happy 0.50 +/- 0.00" in recall
