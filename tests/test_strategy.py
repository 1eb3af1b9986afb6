"""``--strategy``: names, the old ``--distribution_strategy`` values, and what each builds on this machine."""

from __future__ import annotations

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
