"""Validation metrics count every validation clip exactly once, on one host and across workers.

A validation set with a global batch of 6 (not a divisor of its size): a metric that counts a batch
twice or drops one shows up as a value that is not k/N, or that differs from what
``trainers.evaluate`` reports for the saved model. On two logical CPUs the validation set has 7 clips:
the last batch of 1 goes to one replica, so the replicas see 4 and 3 clips, and a mean of per-replica
values is not the count over 7. The two workers train the video baseline, which has batch norm: its
moving statistics differ per worker until pooled (``strategy.average_unsynced_variables``), so workers
left unpooled end on different weights, and their validation is not the saved model's.
"""

from __future__ import annotations

import json
import subprocess
import sys

import fake_shards
import helpers
import numpy as np
import pytest
from test_multi_worker import REPO, _run_workers

from trainers import train_lib
from trainers.model_dir import _best, read_history

VALIDATION_CLIPS = 8  # one actor of fake_shards (8 speech clips)
ODD_CLIPS = 7  # the mirrored run's actors have 7 clips: the replicas' shares of the validation set differ
FLAGS = ["--train_actors=1,2,3,4", "--validation_actors=5", "--test_actors=6", "--batch_size=6", "--epochs=2",
         "--patience=50", "--noexport", "--seed=3"]

MIRRORED = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from absl import app
from trainers import fit, strategy
print("replicas:", strategy.distribution_strategy("mirrored").num_replicas_in_sync, flush=True)
sys.argv = [fit.__file__, *sys.argv[1:]]
app.run(fit.main)
"""


def _check_exact(model_dir, clips: int = VALIDATION_CLIPS) -> None:
    """Every epoch's val_accuracy is k/clips; the best epoch's equals a re-evaluation of the saved model."""
    history = read_history(str(model_dir / "history.csv"))
    assert len(history) == 2
    for row in history:
        hits = row["val_accuracy"] * clips
        assert hits == pytest.approx(round(hits), abs=1e-4), f"val_accuracy {row['val_accuracy']} is not k/{clips}"
    epoch, best = _best(history, "val_accuracy")
    again = train_lib.evaluate_saved(str(model_dir), subset="validation")
    assert again["num_examples"] == clips
    assert again["accuracy"] == pytest.approx(best, abs=1e-6)
    assert again["loss"] == pytest.approx(history[epoch]["val_loss"], rel=1e-3)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] == pytest.approx(best, abs=1e-6)


def test_multi_worker_validation_counts_each_clip_once(tmp_path):
    data_dir = tmp_path / "data"
    fake_shards.write_shards(str(data_dir), actors=range(1, 7))
    model_dir = tmp_path / "run"
    flags = [f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--strategy=multi_worker",
             "--augment_on=device", "--model=video", "--filters=8,16", *FLAGS]
    results = _run_workers(lambda i: ["fit", str(tmp_path / f"weights_{i}.npy"), "--", *flags], tmp_path)
    for index, (code, log) in enumerate(results):
        assert code == 0, f"worker {index} failed:\n{log[-3000:]}"
    np.testing.assert_array_equal(np.load(tmp_path / "weights_0.npy"), np.load(tmp_path / "weights_1.npy"))
    _check_exact(model_dir)


def test_mirrored_validation_on_two_logical_cpus_counts_each_clip_once(tmp_path):
    data_dir = tmp_path / "data"
    fake_shards.write_shards(str(data_dir), actors=range(1, 7), clips_per_actor=ODD_CLIPS)
    model_dir = tmp_path / "run"
    env = helpers.repo_env(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", MIRRORED, f"--data_dir={data_dir}", f"--model_dir={model_dir}",
                           "--strategy=mirrored", "--model=audio", *FLAGS], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "replicas: 2" in proc.stdout
    config = json.loads((model_dir / "config.json").read_text())
    assert config["strategy"] == "mirrored"
    _check_exact(model_dir, ODD_CLIPS)
