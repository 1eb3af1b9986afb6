"""The trainer on real (tiny) data: absl runs in a subprocess, resume, learning vs shuffled labels, metrics.

Uses the session's synthetic shards (``tfrecords_dir``: 24 actors x 3 clips).
The subprocess runs train the cheap video baseline; the learning test trains
the fusion model in-process.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

import ravdess_tfrecords
from ravdess_tfrecords import labels
from trainers import metrics as metrics_lib
from trainers import train_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small and fast: the video baseline with a 2-block backbone, no augmentation.
FAST = ["--model=video", "--filters=8,16", "--batch_size=8", "--augment=", "--seed=1"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _fit(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "trainers.fit", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _epochs(model_dir: str) -> list[int]:
    with open(os.path.join(model_dir, "history.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _is_png(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC


# ------------------------------------------------------------------------------------------ metrics


def test_classification_metrics_by_hand():
    names = ("a", "b", "c")
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 1, 2, 1, 0, 2, 2])
    m = metrics_lib.classification_metrics(y_true, y_pred, names)
    assert m["confusion_matrix"] == [[2, 1, 1], [1, 1, 0], [0, 0, 2]]
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["per_class_recall"] == pytest.approx({"a": 0.5, "b": 0.5, "c": 1.0})
    assert m["uar"] == pytest.approx(2 / 3)  # unweighted: (0.5 + 0.5 + 1) / 3, not accuracy
    precision = {"a": 2 / 3, "b": 1 / 2, "c": 2 / 3}
    assert m["per_class_precision"] == pytest.approx(precision)
    f1 = {k: 2 * precision[k] * r / (precision[k] + r) for k, r in m["per_class_recall"].items()}
    assert m["macro_f1"] == pytest.approx(np.mean(list(f1.values())))
    assert m["support"] == {"a": 4, "b": 2, "c": 2}


def test_metrics_with_an_absent_class():
    m = metrics_lib.classification_metrics(np.array([0, 0, 1]), np.array([0, 2, 1]), ("a", "b", "c"))
    assert m["per_class_recall"]["c"] is None  # no true example of c: recall undefined
    assert m["uar"] == pytest.approx((0.5 + 1.0) / 2)  # averaged over classes present
    # c was predicted once (wrongly), so its F1 of 0 counts in the macro average, as in sklearn.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    with pytest.raises(ValueError):
        metrics_lib.classification_metrics(np.array([0, 3]), np.array([0, 1]), ("a", "b", "c"))


def test_cross_validation_table():
    results = [
        {"actors": {"test": [1, 2]}, "test": {"accuracy": 0.5, "uar": 0.4, "macro_f1": 0.3}},
        {"actors": {"test": [3, 4]}, "test": {"accuracy": 0.7, "uar": 0.6, "macro_f1": 0.5}},
    ]
    summary = metrics_lib.cross_validation_summary(results)
    assert summary["mean"] == pytest.approx({"accuracy": 0.6, "uar": 0.5, "macro_f1": 0.4})
    assert summary["std"] == pytest.approx({"accuracy": 0.1, "uar": 0.1, "macro_f1": 0.1})
    table = metrics_lib.format_cv_table(summary).splitlines()
    assert table[2] == "| 0 | 1,2 | 0.500 | 0.400 | 0.300 |"
    assert table[-1] == "| mean +/- std | | 0.600 +/- 0.100 | 0.500 +/- 0.100 | 0.400 +/- 0.100 |"


# ------------------------------------------------------------------------------------------ fit (subprocess)


def test_fit_one_epoch_writes_checkpoint_metrics_and_export(tfrecords_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    proc = _fit(f"--data_dir={tfrecords_dir}", f"--model_dir={model_dir}", "--epochs=1", *FAST,
                "--distribution_strategy=mirrored")  # one replica here; the tf.distribute code path
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    for name in ("checkpoints/best.weights.h5", "model.keras", "saved_model/saved_model.pb", "config.json"):
        assert os.path.isfile(os.path.join(model_dir, name)), name
    assert _epochs(model_dir) == [0]
    assert not os.path.exists(os.path.join(model_dir, "backup"))  # deleted once training completes
    for png in ("confusion_matrix.png", "training_curves.png"):
        assert _is_png(os.path.join(model_dir, png))
    events = [f for _, _, files in os.walk(os.path.join(model_dir, "logs")) for f in files]
    assert any(f.startswith("events.out.tfevents") for f in events)
    assert os.path.join(model_dir, "metrics.json") in proc.stdout  # it says where outputs went

    builder = ravdess_tfrecords.Builder(tfrecords_dir)
    with open(os.path.join(model_dir, "metrics.json")) as f:
        metrics = json.load(f)
    test = metrics["test"]
    assert metrics["epochs_trained"] == 1 and metrics["actors"]["test"] == [23, 24]
    assert test["num_examples"] == builder.num_examples("test") == np.sum(test["confusion_matrix"])
    assert metrics["validation"]["num_examples"] == builder.num_examples("validation")
    assert 0.0 <= test["accuracy"] <= 1.0 and 0.0 <= test["uar"] <= 1.0
    assert test["class_names"] == list(labels.CLASS_NAMES)

    # What predict needs sits beside the model.
    with open(os.path.join(model_dir, "dataset_info.json")) as f, open(
        os.path.join(tfrecords_dir, "dataset_info.json")
    ) as g:
        assert json.load(f) == json.load(g)
    with open(os.path.join(model_dir, "model_info.json")) as f:
        info = json.load(f)
    assert info["class_names"] == list(labels.CLASS_NAMES)
    assert info["audio_frames"] == builder.info.audio_frames and info["inputs"] == ["video"]

    # The Keras file, the exported SavedModel and the metrics agree on the test set.
    model = keras.models.load_model(os.path.join(model_dir, "model.keras"))
    served = tf.saved_model.load(os.path.join(model_dir, "saved_model"))
    test_ds = train_lib.adapt_inputs(builder.as_dataset("test", batch_size=64), info["inputs"])
    (video, label), = test_ds.take(1)
    probs = model.predict_on_batch(video)
    np.testing.assert_allclose(served.serve(video).numpy(), probs, atol=1e-5)
    assert np.mean(probs.argmax(1) == label.numpy()) == pytest.approx(test["accuracy"])

    # trainers.evaluate's library call re-evaluates the saved model to the same numbers.
    again = train_lib.evaluate_saved(model_dir)
    assert again["confusion_matrix"] == test["confusion_matrix"]
    assert again["actors"] == [23, 24]
    assert _is_png(os.path.join(model_dir, "eval_test", "confusion_matrix.png"))


def test_killed_run_resumes_at_the_next_epoch(tfrecords_dir, tmp_path):
    model_dir = str(tmp_path / "resume")
    args = (f"--data_dir={tfrecords_dir}", f"--model_dir={model_dir}", "--epochs=2", *FAST)
    first = _fit(*args, "--interrupt_after_epoch=1")
    assert first.returncode == 3, first.stdout[-3000:] + first.stderr[-3000:]
    assert _epochs(model_dir) == [0]
    assert os.path.isdir(os.path.join(model_dir, "backup"))
    assert not os.path.exists(os.path.join(model_dir, "metrics.json"))

    second = _fit(*args)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming" in second.stdout
    assert "Epoch 2/2" in second.stdout and "Epoch 1/2" not in second.stdout
    assert _epochs(model_dir) == [0, 1]  # epoch 0 not trained twice
    assert not os.path.exists(os.path.join(model_dir, "backup"))
    with open(os.path.join(model_dir, "metrics.json")) as f:
        assert json.load(f)["epochs_trained"] == 2


def test_model_dir_with_other_settings_is_refused(tfrecords_dir, tmp_path):
    config = train_lib.TrainConfig(tfrecords_dir, str(tmp_path), model="video", filters=(8,), epochs=1)
    os.makedirs(tmp_path, exist_ok=True)
    with open(tmp_path / "config.json", "w") as f:
        json.dump(config.to_json(), f)
    changed = train_lib.TrainConfig(tfrecords_dir, str(tmp_path), model="video", filters=(8,), epochs=1,
                                    learning_rate=0.5)
    with pytest.raises(ValueError, match="learning_rate"):
        train_lib.train(changed)
    assert train_lib.TrainConfig.from_json(config.to_json()) == config


def test_fold_scheme_trains_every_fold_and_writes_a_table(tfrecords_dir, tmp_path):
    config = train_lib.TrainConfig(
        tfrecords_dir, str(tmp_path), split="kfold", folds=3, model="video", filters=(4,), epochs=1,
        batch_size=8, augment=(), export=False, verbose=0,
    )
    summary = train_lib.run(config)
    assert [row["test_actors"] for row in summary["folds"]] == [list(range(1, 9)), list(range(9, 17)),
                                                                list(range(17, 25))]
    for fold in range(3):
        with open(tmp_path / f"fold_{fold}" / "metrics.json") as f:
            assert json.load(f)["test"]["num_examples"] == 24
    table = (tmp_path / "cv_results.md").read_text()
    assert "mean +/- std" in table and table.count("\n| ") == 5  # header rule, 3 folds, mean
    # Started again, completed folds are reported, not retrained.
    assert train_lib.run(config)["folds"] == summary["folds"]


# ------------------------------------------------------------------------------------------ learning


def _learning_config(tfrecords_dir: str, model_dir: str, shuffle_labels: bool) -> train_lib.TrainConfig:
    return train_lib.TrainConfig(
        tfrecords_dir,
        model_dir,
        split="actors",
        actors={"train": tuple(range(1, 17)), "validation": (17, 18), "test": tuple(range(19, 25))},
        model="fusion",
        filters=(8, 16, 32),
        epochs=10,
        early_stopping_patience=4,
        batch_size=8,
        learning_rate=3e-3,
        augment=(),
        seed=0,
        export=False,
        verbose=0,
        shuffle_labels=shuffle_labels,
    )


@pytest.mark.slow
def test_fusion_learns_and_shuffled_labels_stay_at_chance(tfrecords_dir, tmp_path):
    """Labels and features stay aligned through conversion, pipeline and training.

    The synthetic emotion signal (face tint + prosody) is learnable from 48
    training clips of 16 actors; on 18 clips of 6 unseen actors the fusion model
    beats chance (1/7) by a wide margin. The same run with labels shuffled within
    each batch learns nothing that transfers.
    """
    learned = train_lib.train(_learning_config(tfrecords_dir, str(tmp_path / "true"), False))["test"]
    control = train_lib.train(_learning_config(tfrecords_dir, str(tmp_path / "shuffled"), True))["test"]
    assert learned["num_examples"] == control["num_examples"] == 18
    chance = 1 / labels.NUM_CLASSES
    assert learned["accuracy"] >= 3 * chance, learned
    assert learned["uar"] >= 3 * chance, learned
    assert control["accuracy"] <= 0.35, control
    assert learned["accuracy"] - control["accuracy"] >= 0.3
