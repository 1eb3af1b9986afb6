"""The training recipe (issue 17, items 1-2): class weights, AdamW, the cosine schedule, label smoothing,
mixed precision and XLA settings, and a resume in the middle of the schedule.

In-process, on tiny models and ``fake_shards`` directories; nothing is timed.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os

import helpers
import numpy as np
import pytest
import tensorflow as tf
from fake_shards import write_shards
from tensorflow import keras

import ravdess_tfrecords
from ravdess_tfrecords import labels
from trainers import callbacks as callbacks_lib
from trainers import config as config_lib
from trainers import data as data_lib
from trainers import loop, train_lib
from trainers import model as model_lib

# ------------------------------------------------------------------------------------------ class weights


def test_balanced_weights_follow_sklearns_formula():
    counts = {0: 60, 1: 30, 2: 10, 3: 0}
    weights = data_lib.balanced_class_weights(counts)
    n, k = 100, 3  # class 3 is absent: not one of the k classes
    assert weights == pytest.approx({0: n / (k * 60), 1: n / (k * 30), 2: n / (k * 10), 3: 1.0})
    assert weights[2] > 1 > weights[0]  # the rare class weighs more than the common one
    # Weighted, the training examples still sum to n: the loss keeps its scale.
    assert sum(weights[c] * counts[c] for c in counts) == pytest.approx(n)


def test_balanced_weights_move_an_uninformed_model_toward_the_rare_class():
    """Features carry no signal, labels are 90/10: unweighted, the model learns the prior (rare class ~0.1);
    with balanced weights the two classes weigh alike, so it predicts ~0.5 for each."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype("float32")
    y = np.array([0] * 180 + [1] * 20)
    weights = data_lib.balanced_class_weights({0: 180, 1: 20})

    def rare_probability(class_weight):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=30, batch_size=50, verbose=0, class_weight=class_weight)
        return float(model.predict_on_batch(x)[:, 1].mean())

    unweighted, balanced = rare_probability(None), rare_probability(weights)
    assert unweighted < 0.2, unweighted
    assert 0.35 < balanced < 0.65, balanced


def test_label_counts_of_a_split_after_the_vocal_channel_filter(tmp_path):
    _, truth = write_shards(str(tmp_path), actors=range(1, 7), song=True)
    builder = ravdess_tfrecords.Builder(str(tmp_path))
    scheme = {"actors": {"train": [1, 2, 3, 4], "validation": [5], "test": [6]}}
    for num_classes in (7, 8):
        for channels in (None, ("song",)):
            expected = dict.fromkeys(range(num_classes), 0)
            for ex in truth.values():
                if ex["actor"] <= 4 and (channels is None or ex["vocal_channel"] in channels):
                    expected[labels.label_from_emotion(ex["emotion"], num_classes)] += 1
            got = builder.label_counts("train", num_classes=num_classes, vocal_channels=channels, **scheme)
            assert got == expected, (num_classes, channels)
    assert sum(builder.label_counts("train", vocal_channels=("song",), **scheme).values()) == 4 * 2  # 2 songs each


# ------------------------------------------------------------------------------------------ optimizer, loss


def _tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, bias_initializer="ones"),
                             keras.layers.BatchNormalization(gamma_initializer=keras.initializers.Constant(2.0))])


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adamw_decays_kernels_only_and_adam_does_not_decay(name):
    lr, wd = 0.1, 0.5
    config = train_lib.TrainConfig("d", "m", optimizer=name, learning_rate=lr, weight_decay=wd)
    model = _tiny_model()
    optimizer = model_lib.make_optimizer(config)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    # Zero gradients: Adam's own step is 0 (m = v = 0), so only the decoupled decay can move a weight.
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
    for v in model.trainable_variables:
        old = before[v.path]
        if name == "adamw" and v.name == "kernel":
            np.testing.assert_allclose(v.numpy(), old * (1 - lr * wd), rtol=1e-6)  # w -= lr * wd * w
        else:  # Adam; AdamW's bias, BN gamma and beta (model.NO_DECAY)
            np.testing.assert_array_equal(v.numpy(), old, err_msg=v.path)
    assert {v.name for v in model.trainable_variables} == {"kernel", "bias", "gamma", "beta"}


def test_label_smoothing_implies_one_hot_labels_and_a_smoothed_loss():
    plain = train_lib.TrainConfig("d", "m")
    smooth = train_lib.TrainConfig("d", "m", label_smoothing=0.1)
    assert not plain.one_hot_labels and smooth.one_hot_labels
    assert isinstance(model_lib.make_loss(plain), keras.losses.SparseCategoricalCrossentropy)
    loss = model_lib.make_loss(smooth)
    y = keras.utils.to_categorical([0, 1], 3)
    confident = np.array([[0.98, 0.01, 0.01], [0.01, 0.98, 0.01]], "float32")
    # Smoothed targets (0.933, 0.033, 0.033) penalize a near-certain right answer more than hard targets do.
    assert float(loss(y, confident)) > float(keras.losses.CategoricalCrossentropy()(y, confident)) + 0.05
    with pytest.raises(ValueError, match="label_smoothing"):
        train_lib.TrainConfig("d", "m", label_smoothing=1.0)


# ------------------------------------------------------------------------------------------ runtime settings


def test_mixed_precision_builds_under_the_policy_and_restores_it():
    before = keras.mixed_precision.global_policy().name
    config = train_lib.TrainConfig("d", "m", model="video", filters=(4,), mixed_precision="float16",
                                   jit_compile="false")
    model = model_lib.build_and_compile(config, audio_frames=10)
    assert keras.mixed_precision.global_policy().name == before  # nothing leaks to later models
    conv = next(layer for layer in model.get_layer("visual_branch").get_layer("framewise").layer.layers
                if isinstance(layer, keras.layers.Conv2D))
    assert conv.compute_dtype == "float16"
    assert model.get_layer("emotion").compute_dtype == "float32"  # softmax and loss stay float32
    assert model.output.dtype == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model_lib.use_jit("true") and not model_lib.use_jit("false")
    assert model_lib.use_jit("auto") == bool(tf.config.list_physical_devices("GPU"))
    assert train_lib.TrainConfig("d", "m", jit_compile=True).jit_compile == "true"
    with pytest.raises(ValueError, match="mixed_precision"):
        train_lib.TrainConfig("d", "m", mixed_precision="fp8")


@pytest.mark.parametrize("one_hot", [False, True])
def test_a_fit_traces_its_train_step_once(one_hot):
    """The compiled ``accuracy`` exists before the first step (``make_metrics``): Keras builds a metric named by a
    string inside that step, and ``tf.function`` traces a step that made variables a second time."""
    config = train_lib.TrainConfig("d", "m", model="audio", filters=(4,), label_smoothing=0.1 if one_hot else 0.0,
                                   jit_compile="false")
    model = model_lib.build_and_compile(config, audio_frames=6)
    x = np.random.default_rng(0).standard_normal((8, 24, 6, 1)).astype("float32")
    y = np.arange(8) % 7
    traces, step = [], model.train_step
    model.train_step = lambda data: traces.append(1) or step(data)  # Python runs it only while tracing
    history = model.fit(x, keras.utils.to_categorical(y, 7) if one_hot else y, batch_size=4, epochs=2, verbose=0)
    assert len(traces) == 1
    assert set(history.history) == {"loss", "accuracy"}


def test_blstm_and_device_augmentation_compile_under_xla():
    """--jit_compile=true with --augment_on=device: the AugmentLayer (uint8 video in) and the BLSTMs of the
    fusion model train one XLA-compiled step on CPU, in bfloat16."""
    config = train_lib.TrainConfig("d", "m", filters=(4,), augment_on="device", jit_compile="true",
                                   mixed_precision="bfloat16")
    model = model_lib.build_and_compile(config, audio_frames=6)
    rng = np.random.default_rng(0)
    x = [rng.standard_normal((2, 24, 6, 1)).astype("float32"), rng.integers(0, 256, (2, 6, 64, 64, 3), np.uint8)]
    logs = model.train_on_batch(x, np.array([0, 3]), return_dict=True)
    assert model.jit_compile and math.isfinite(logs["loss"]) and logs["loss"] > 0


def test_runtime_settings_may_change_on_resume_and_recipe_settings_may_not(tmp_path):
    config = train_lib.TrainConfig("d", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(config.to_json()))
    runtime = train_lib.TrainConfig("d", str(tmp_path), mixed_precision="bfloat16", jit_compile="true",
                                    steps_per_execution=4)
    config_lib.check_restart(runtime, str(tmp_path))  # the settings check lets how fast the steps run change...
    loop._check_precision(runtime, str(tmp_path))  # ...and with nothing to resume, the precision too
    # A run to resume (Keras' own backup of a killed fit): its optimizer state is kept only in its own
    # precision (float16 wraps the optimizer in a LossScaleOptimizer), so another one is refused.
    with pytest.raises(helpers.Killed):
        helpers.fit_with_backup(str(tmp_path), 3, helpers.kill_after(1))
    with pytest.raises(ValueError, match=r"trained with --mixed_precision=none, not --mixed_precision=bfloat16"):
        loop._check_precision(runtime, str(tmp_path))
    loop._check_precision(dataclasses.replace(runtime, mixed_precision="none"), str(tmp_path))  # resumes
    config_lib.check_restart(runtime, str(tmp_path))
    for change in ({"optimizer": "adamw"}, {"lr_schedule": "cosine"}, {"class_weight": "balanced"},
                   {"label_smoothing": 0.1}, {"warmup_epochs": 2}, {"weight_decay": 0.01}):
        with pytest.raises(ValueError, match=next(iter(change))):
            config_lib.check_restart(train_lib.TrainConfig("d", str(tmp_path), **change), str(tmp_path))
    # A config.json written before these settings existed: they had their defaults, so the same run resumes.
    old = {k: v for k, v in config.to_json().items() if k not in ("optimizer", "class_weight", "label_smoothing")}
    (tmp_path / "config.json").write_text(json.dumps(old))
    config_lib.check_restart(config, str(tmp_path))
    assert train_lib.TrainConfig.from_json(runtime.to_json()) == runtime


# ------------------------------------------------------------------------------------------ cosine schedule


def test_cosine_schedule_matches_its_formula_and_sets_the_learning_rate():
    lr, low, epochs, warmup = 0.1, 0.001, 8, 2
    schedule = [callbacks_lib.cosine_learning_rate(e, learning_rate=lr, epochs=epochs, warmup_epochs=warmup,
                                                   min_learning_rate=low) for e in range(epochs)]
    expected = [lr * 1 / 3, lr * 2 / 3]  # warm-up: lr * (e + 1) / (warmup + 1)
    expected += [low + (lr - low) * (1 + math.cos(math.pi * (e - 2) / 6)) / 2 for e in range(2, epochs)]
    assert schedule == pytest.approx(expected)
    assert schedule[warmup] == pytest.approx(lr)  # the peak right after the warm-up
    assert all(a > b for a, b in zip(schedule[warmup:], schedule[warmup + 1:], strict=False))  # then decays
    assert callbacks_lib.cosine_learning_rate(epochs, learning_rate=lr, epochs=epochs, warmup_epochs=warmup,
                                              min_learning_rate=low) == pytest.approx(low)

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.integers(0, 3, 16)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.Adam(123.0), "sparse_categorical_crossentropy")
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: seen.append(float(model.optimizer.learning_rate.numpy())))
    history = model.fit(x, y, epochs=epochs, batch_size=16, verbose=0,
                        callbacks=[callbacks_lib.CosineSchedule(lr, epochs, warmup, low), record])
    assert seen == pytest.approx(expected)  # what the optimizer used in each epoch's step
    assert history.history["learning_rate"] == pytest.approx(expected)  # and what history.csv gets


def test_cosine_replaces_the_plateau_and_its_counters(tmp_path):
    config = train_lib.TrainConfig("d", str(tmp_path), lr_schedule="cosine")
    kinds = [type(cb) for cb in callbacks_lib.make_callbacks(config, str(tmp_path))]
    assert callbacks_lib.CosineSchedule in kinds and keras.callbacks.ReduceLROnPlateau not in kinds


def _history(model_dir: str) -> list[dict[str, str]]:
    with open(os.path.join(model_dir, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_resumed_mid_schedule_ends_where_an_unbroken_one_does(tmp_path, monkeypatch):
    """Killed after epoch 2 of 3 and started again, the recipe run (cosine with warm-up, AdamW, balanced
    weights, label smoothing) ends on the same weights and per-epoch learning rates as a run never stopped.

    One batch per epoch (16 training clips, batch 16): the pipeline's seeded shuffle restarts with a
    new process, so with several batches a resumed epoch would see them in another order; within one
    batch the order does not change the step (up to float rounding).
    """
    data = str(tmp_path / "data")
    write_shards(data, actors=range(1, 5), audio_frames=12)

    def config(name: str) -> train_lib.TrainConfig:
        return train_lib.TrainConfig(
            data, str(tmp_path / name), split="actors", actors={"train": (1, 2), "validation": (3,), "test": (4,)},
            model="video", filters=(8, 16), epochs=3, batch_size=16, augment=(), seed=0, export=False, verbose=0,
            lr_schedule="cosine", warmup_epochs=1, optimizer="adamw", weight_decay=0.01, class_weight="balanced",
            label_smoothing=0.1, early_stopping_patience=10, jit_compile="false",
        )

    unbroken = train_lib.train(config("unbroken"))
    make_callbacks = loop.make_callbacks
    monkeypatch.setattr(loop, "make_callbacks", lambda c, d: [*make_callbacks(c, d), helpers.kill_after(2)])
    with pytest.raises(helpers.Killed):
        train_lib.train(config("resumed"))
    monkeypatch.setattr(loop, "make_callbacks", make_callbacks)
    resumed = train_lib.train(config("resumed"))

    assert [r["epoch"] for r in _history(str(tmp_path / "resumed"))] == ["0", "1", "2"]
    rates = [[float(r["learning_rate"]) for r in _history(str(tmp_path / name))] for name in ("unbroken", "resumed")]
    expected = [callbacks_lib.cosine_learning_rate(e, learning_rate=1e-3, epochs=3, warmup_epochs=1,
                                                   min_learning_rate=1e-5) for e in range(3)]
    assert rates[0] == pytest.approx(expected) and rates[1] == pytest.approx(expected)
    losses = [[float(r["loss"]) for r in _history(str(tmp_path / name))] for name in ("unbroken", "resumed")]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    weights = [keras.models.load_model(str(tmp_path / name / "model.keras")).get_weights()
               for name in ("unbroken", "resumed")]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    assert resumed["test"]["confusion_matrix"] == unbroken["test"]["confusion_matrix"]
    with open(tmp_path / "resumed" / "config.json") as f:
        saved = json.load(f)
    assert {k: saved[k] for k in ("optimizer", "lr_schedule", "class_weight", "label_smoothing")} == {
        "optimizer": "adamw", "lr_schedule": "cosine", "class_weight": "balanced", "label_smoothing": 0.1}


# ------------------------------------------------------------------------------------------ benchmark


def test_bench_train_measures_a_rate():
    """float32 only: bfloat16 and XLA compile in test_blstm_and_device_augmentation_compile_under_xla."""
    from tools import bench_train

    rate = bench_train.examples_per_second(*bench_train.VARIANTS["float32"], batch_size=2, steps=1, audio_frames=8,
                                           filters=(4,))
    assert math.isfinite(rate) and rate > 0
    assert keras.mixed_precision.global_policy().name == "float32"  # the variant's policy did not leak


def test_history_logs_the_learning_rate_the_plateau_left(tmp_path):
    """An epoch that lowered the rate logs the lowered one: the rate in effect at its end (Keras logs the old)."""
    config = train_lib.TrainConfig("d", str(tmp_path), lr_patience=1, lr_factor=0.5, learning_rate=1e-3)
    x, y = np.zeros((8, 4), "float32"), np.arange(8) % 3  # zero inputs, no bias: zero gradients, a flat val_loss
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax", use_bias=False)])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, validation_data=(x, y), epochs=3, batch_size=8, verbose=0,
              callbacks=callbacks_lib.make_callbacks(config, str(tmp_path)))
    # Epoch 1 sets the best val_loss, epochs 2 and 3 do not improve it: each lowers the rate (patience 1).
    assert [float(r["learning_rate"]) for r in _history(str(tmp_path))] == pytest.approx([1e-3, 5e-4, 2.5e-4])
