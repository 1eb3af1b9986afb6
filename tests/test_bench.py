"""The benchmarks' default paths (what ``make bench`` runs), briefly: they run to the end, on small sizes."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_pipeline_without_data_dir_writes_random_shards_and_measures():
    # No --data_dir: make bench's command (it crashed on expanduser(None)), on 24 actors x 1 clip, one round,
    # a small VGG (the default one's training steps were 18 of the run's 34 CPU-s).
    small = ["--clips_per_actor=1", "--rounds=1", "--generator_examples=8", "--train_steps=1", "--batch_size=8",
             "--audio_frames=20", "--filters=8,16"]
    proc = subprocess.run([sys.executable, "-m", "tools.bench_pipeline", *small], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "writing 24 x 1 random-content examples to " in proc.stdout
    assert "(a)  bare TFRecordDataset iteration" in proc.stdout and "training step on this CPU" in proc.stdout
    assert "fusion model (vgg, filters 8,16) training step" in proc.stdout, proc.stdout


def test_bench_train_interleaves_its_repeats_and_reports_median_and_spread():
    """The ratio comes from repeats interleaved in time (each repeat starts one variant later), as the
    median and the min-max of the per-repeat ratios: 2 steps once gave bfloat16 0.16x and 1.24x float32.
    (``tools.bench_repeats``: ``tools.bench_train`` defines flags, which another entry point imported in this
    process may own too.)"""
    from tools import bench_repeats

    assert bench_repeats.schedule(["a", "b", "c"], 2) == ["a", "b", "c", "b", "c", "a"]
    rates = {"float32": [100.0, 50.0, 100.0], "bfloat16": [150.0, 75.0, 90.0]}  # repeat 2: the machine was busy
    rows = {row[0]: row[1:] for row in bench_repeats.table_rows(rates)}
    assert rows["float32"] == (100.0, 50.0, 100.0, 1.0, 1.0, 1.0)
    assert rows["bfloat16"] == (90.0, 75.0, 150.0, 1.5, 0.9, 1.5)  # ratios 1.5, 1.5, 0.9: median 1.5
    assert bench_repeats.table_rows({"xla": [1.0]})[0][4:] == (None, None, None)  # no float32 to compare with
