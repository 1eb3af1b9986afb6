"""The benchmarks' default paths (what ``make bench`` runs), briefly: they run to the end, on small sizes."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_pipeline_without_data_dir_writes_random_shards_and_measures():
    # No --data_dir: make bench's command (it crashed on expanduser(None)), on 24 actors x 1 clip, one round.
    small = ["--clips_per_actor=1", "--rounds=1", "--generator_examples=8", "--train_steps=1", "--batch_size=8",
             "--audio_frames=20"]
    proc = subprocess.run([sys.executable, "-m", "tools.bench_pipeline", *small], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "writing 24 x 1 random-content examples to " in proc.stdout
    assert "(a)  bare TFRecordDataset iteration" in proc.stdout and "training step on this CPU" in proc.stdout
