"""``--strategy``: names, the old ``--distribution_strategy`` values, what each builds on this machine, and the
batch-norm statistics pooled over replicas."""

from __future__ import annotations

import subprocess
import sys

import helpers
import numpy as np
import pytest
import tensorflow as tf

from trainers import strategy as strategy_lib
from trainers import train_lib


def test_names_and_aliases():
    assert [strategy_lib.canonical(n) for n in ("auto", "one_device", "mirrored", "multi_worker", "default")] == [
        "auto", "one_device", "mirrored", "multi_worker", "one_device"]
    with pytest.raises(ValueError, match="multi_gpu"):
        strategy_lib.canonical("multi_gpu")


def test_config_keeps_the_canonical_name_and_restarts_with_another():
    config = train_lib.TrainConfig("data", "run", strategy="default")
    assert config.strategy == "one_device"
    assert train_lib.TrainConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="strategy"):
        train_lib.TrainConfig("data", "run", strategy="bogus")
    # How many devices a run uses is not part of the experiment: a resume may use others.
    from trainers.config import _RESTART_FREE

    assert "strategy" in _RESTART_FREE


def test_what_each_name_builds():
    gpus = len(tf.config.list_logical_devices("GPU"))
    one = strategy_lib.distribution_strategy("one_device")
    assert one is tf.distribute.get_strategy() and one.num_replicas_in_sync == 1
    mirrored = strategy_lib.distribution_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync == max(gpus, 1)
    auto = strategy_lib.distribution_strategy("auto")
    assert isinstance(auto, tf.distribute.MirroredStrategy) == (gpus > 1)
    # Off a cluster every process is the chief and the only worker.
    for strategy in (one, mirrored):
        assert strategy_lib.is_chief(strategy) and strategy_lib.num_workers(strategy) == 1
        assert not strategy_lib.is_multi_worker(strategy)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{cluster", "TF_CONFIG is not valid JSON"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}}', 'needs "cluster" and "task"'),
    ],
)
def test_multi_worker_needs_a_tf_config(monkeypatch, value, message):
    # Checked before the strategy is built (two-worker runs: tests/test_multi_worker.py).
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(ValueError, match=message):
        strategy_lib.distribution_strategy("multi_worker")


POOLED = """
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from ravdess_tfrecords import models
from trainers import strategy as strategy_lib
strategy = strategy_lib.distribution_strategy("mirrored")
with strategy.scope():
    model = models.build_model("video", audio_frames=20, filters=(8, 16))
rng = np.random.default_rng(0)
stats = [v for v in model.non_trainable_variables if v.path.endswith(("moving_mean", "moving_variance"))]
assert len(stats) == 4, [v.path for v in stats]  # two batch norms
before = {}
for v in stats:  # each replica's own statistics, as each replica's batches left them
    before[v.path] = np.stack([rng.uniform(0.5, 2.0, v.shape).astype("float32") for _ in v.value.values])
    for copy, value in zip(v.value.values, before[v.path]):
        copy.assign(value)
assert strategy_lib.average_unsynced_variables(model, strategy) == 4
for v in stats:
    first, second = (copy.numpy() for copy in v.value.values)
    np.testing.assert_array_equal(first, second)
    if v.path.endswith("moving_variance"):  # the two replicas' clips together: mean variance + variance of means
        means = before[v.path.replace("moving_variance", "moving_mean")]
        np.testing.assert_allclose(first, before[v.path].mean(0) + means.var(0), rtol=1e-6)
    else:
        np.testing.assert_allclose(first, before[v.path].mean(0), rtol=1e-6)
print("pooled", len(stats))
"""


def test_batch_norm_statistics_pool_over_replicas_with_the_pooled_variance():
    # Two replicas need two logical CPU devices, set before TensorFlow starts: a process of its own.
    env = helpers.repo_env(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", POOLED], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "pooled 4" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The same formula, on its own: groups with means 0 and 2, variance 1 each -> together variance 2.
    pooled = strategy_lib.pooled_variance(tf.constant([[0.0], [2.0]]), tf.constant([[1.0], [1.0]]))
    np.testing.assert_allclose(pooled.numpy(), [2.0])
