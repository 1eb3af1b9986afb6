"""The trainer on real (tiny) data: what an absl run writes, extending it, learning vs shuffled labels, metrics.

Uses the session's synthetic shards (``tfrecords_dir``: 24 actors x 3 clips).
The subprocess run (conftest's ``fit_run``) trains the cheap video baseline; a
SIGKILLed run's resume is in ``test_model_dir_uri``; the learning test trains
the fusion model in-process.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys

import helpers
import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

import ravdess_tfrecords
from ravdess_tfrecords import labels, schema
from ravdess_tfrecords.conversion import writer
from ravdess_tfrecords.errors import UserError
from trainers import callbacks as callbacks_lib
from trainers import cluster, cv, evaluation, export, train_lib
from trainers import config as config_lib
from trainers import metrics as metrics_lib

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _epochs(model_dir: str) -> list[int]:
    with open(os.path.join(model_dir, "history.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _history_rows(model_dir: str) -> list[dict[str, str]]:
    with open(os.path.join(model_dir, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


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
    assert [r["fold"] for r in summary["folds"]] == [1, 2]  # as the "fold 1/2" header and the fold_1 folder
    assert table[2] == "| 1 | 1,2 | 0.500 | 0.400 | 0.300 |"
    assert table[-1] == "| mean +/- std | | 0.600 +/- 0.100 | 0.500 +/- 0.100 | 0.400 +/- 0.100 |"


def test_training_curves_show_the_learning_rate_and_mark_the_best_epoch(tmp_path):
    import matplotlib.pyplot as plt

    rates = [1e-3, 1e-3, 5e-4]
    history = [{"epoch": e, "loss": 2.0 - e, "val_loss": 2.5 - e / 2, "accuracy": 0.2 * e, "val_accuracy": acc,
                "learning_rate": lr} for e, (acc, lr) in enumerate(zip((0.25, 0.75, 0.5), rates, strict=True))]
    fig = metrics_lib.history_figure(history, best_epoch=2, monitor="val_accuracy")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "learning rate"]
    assert list(fig.axes[2].get_lines()[0].get_ydata()) == rates and fig.axes[2].get_yscale() == "log"
    for ax in fig.axes:  # the best epoch, the one whose weights were kept, on every panel
        (marker,) = [line for line in ax.get_lines() if line.get_label().startswith("best epoch")]
        assert marker.get_label() == "best epoch 2 (val_accuracy 0.750)" and list(marker.get_xdata()) == [2, 2]
    plt.close(fig)
    assert _is_png(metrics_lib.plot_history(history, str(tmp_path / "curves.png"), 2, "val_accuracy"))


# ------------------------------------------------------------------------------------------ fit (subprocess)


def test_fit_writes_checkpoint_metrics_and_export(fit_run, tfrecords_dir, tmp_path, capsys, monkeypatch):
    # conftest's fit_run: 2 epochs, --distribution_strategy=mirrored (one replica here; the tf.distribute path).
    proc = fit_run["proc"]
    assert os.path.join(fit_run["model_dir"], "metrics.json") in proc.stdout  # it says where outputs went
    model_dir = str(tmp_path / "run")  # a copy: other tests read the session's run as it was written
    shutil.copytree(fit_run["model_dir"], model_dir)

    for name in ("checkpoints/best.weights.h5", "model.keras", "saved_model/saved_model.pb", "config.json"):
        assert os.path.isfile(os.path.join(model_dir, name)), name
    with open(os.path.join(model_dir, "config.json")) as f:
        assert json.load(f)["strategy"] == "mirrored"  # the old flag name still works
    assert _epochs(model_dir) == [0, 1]
    assert not os.path.exists(os.path.join(model_dir, "backup"))  # deleted once training completes
    for png in ("confusion_matrix.png", "training_curves.png"):
        assert _is_png(os.path.join(model_dir, png))
    events = [f for _, _, files in os.walk(os.path.join(model_dir, "logs")) for f in files]
    assert any(f.startswith("events.out.tfevents") for f in events)

    builder = ravdess_tfrecords.Builder(tfrecords_dir)
    with open(os.path.join(model_dir, "metrics.json")) as f:
        metrics = json.load(f)
    test = metrics["test"]
    assert metrics["epochs_trained"] == 2 and metrics["actors"]["test"] == [23, 24]
    assert test["num_examples"] == builder.num_examples("test") == np.sum(test["confusion_matrix"])
    assert metrics["validation"]["num_examples"] == builder.num_examples("validation")
    assert 0.0 <= test["accuracy"] <= 1.0 and 0.0 <= test["uar"] <= 1.0
    assert test["class_names"] == list(labels.CLASS_NAMES)

    # What predict needs sits beside the model.
    with open(os.path.join(model_dir, schema.INFO_FILENAME)) as f, open(
        os.path.join(tfrecords_dir, schema.INFO_FILENAME)
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
    np.testing.assert_allclose(served.serve(video)["probabilities"].numpy(), probs, atol=1e-5)
    # With the [onnx] extra (make test installs it), the run exports ONNX too and lists it.
    if export.onnx_missing_message() is None:
        assert os.path.isfile(os.path.join(model_dir, "model.onnx"))
        assert f"ONNX:             {os.path.join(fit_run['model_dir'], 'model.onnx')}" in proc.stdout
    assert np.mean(probs.argmax(1) == label.numpy()) == pytest.approx(test["accuracy"])

    # trainers.evaluate's library call re-evaluates the saved model to the same numbers.
    again = train_lib.evaluate_saved(model_dir)
    assert again["confusion_matrix"] == test["confusion_matrix"]
    assert again["actors"] == [23, 24]
    assert _is_png(os.path.join(model_dir, "eval_speaker_test", "confusion_matrix.png"))
    # trainers.evaluate's paths may start with ~ (a flag's ~ is not the shell's to expand).
    monkeypatch.setenv("HOME", str(tmp_path))
    home = train_lib.evaluate_saved("~/run", data_dir=os.path.join("~", os.path.relpath(tfrecords_dir, tmp_path)),
                                    output_dir="~/eval_home")
    assert home["output_dir"] == str(tmp_path / "eval_home") and (tmp_path / "eval_home" / "metrics.json").is_file()
    assert home["confusion_matrix"] == test["confusion_matrix"]
    assert train_lib.TrainConfig("~/data", "~/run").model_dir == model_dir  # fit's --data_dir / --model_dir
    # --fold without --split goes with the scheme the model was trained with: the speaker split has no folds.
    with pytest.raises(ValueError, match=r"--fold applies to the fold schemes .* not to --split=speaker \(what"):
        train_lib.evaluate_saved(model_dir, fold=1)

    # More epochs on the completed run (fit's flags, --epochs=3) continue it from its last epoch:
    # not refused as other settings, history appended, metrics.json rewritten. With --noexport the exports
    # of the 2-epoch model go: a served model is never older than the run.
    more = train_lib.TrainConfig(tfrecords_dir, model_dir, model="video", filters=(8, 16), batch_size=8, augment=(),
                                 seed=1, epochs=3, strategy="mirrored", export=False)
    capsys.readouterr()
    extended = train_lib.train(more)
    out = capsys.readouterr().out
    assert "resuming the completed run" in out
    assert f"--noexport: removed the earlier model's exports ({os.path.join(model_dir, 'saved_model')}" in out
    assert not os.path.exists(os.path.join(model_dir, "saved_model"))
    assert not os.path.exists(os.path.join(model_dir, "model.onnx"))
    assert _epochs(model_dir) == [0, 1, 2] and extended["epochs_trained"] == 3
    with open(os.path.join(model_dir, "metrics.json")) as f:
        assert json.load(f)["epochs_trained"] == 3
    with open(os.path.join(model_dir, "config.json")) as f:
        assert json.load(f)["epochs"] == 3
    # Started once more: nothing to train; it reports the metrics it says it reports.
    assert train_lib.train(more) == extended
    out = capsys.readouterr().out
    assert "already holds a completed run; reporting its metrics" in out
    assert metrics_lib.format_metrics(extended["test"], "test") in out, out
    assert f"Keras model:      {os.path.join(model_dir, 'model.keras')}" in out

    # An extension killed (by an older version) while it copied checkpoints/last/ into backup/ file by file:
    # a record without its weights. Resuming from it would start from fresh weights; the pair is checked, the
    # last state restored whole, and the run ends as the unbroken extension did.
    torn = str(tmp_path / "torn")
    shutil.copytree(fit_run["model_dir"], torn)
    os.makedirs(os.path.join(torn, "backup"))
    shutil.copy(os.path.join(torn, "checkpoints", "last", "training_metadata.json"), os.path.join(torn, "backup"))
    assert train_lib.train(dataclasses.replace(more, model_dir=torn)) == extended
    assert _history_rows(torn) == _history_rows(model_dir)  # epoch 3 trained from the same weights
    assert "resuming the completed run" in capsys.readouterr().out


def test_evaluate_refuses_actors_the_model_trained_on_and_names_its_folder_after_the_split(fit_run, tmp_path):
    """fit_run's model trained on the speaker split's actors 1..17; chumachenko tests on 5, 10, 16 and 19."""
    model_dir = fit_run["model_dir"]
    proc = subprocess.run([sys.executable, "-m", "trainers.evaluate", f"--model_dir={model_dir}",
                           "--split=chumachenko"], capture_output=True, text=True, timeout=300, env=helpers.repo_env())
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip() == (f"error: test actors [5, 10, 16] of this split were in the training set of "
                                   f"{model_dir} (--split=speaker): not a test of unseen speakers; pass "
                                   "--allow_train_overlap if it is meant")
    assert not [name for name in os.listdir(model_dir) if name.startswith("eval_chumachenko")]  # nothing written
    meant = train_lib.evaluate_saved(model_dir, split="chumachenko", allow_train_overlap=True,
                                     output_dir=str(tmp_path / "eval"))
    assert meant["actors"] == [5, 10, 16, 19] and (tmp_path / "eval" / "metrics.json").is_file()
    # Default folders, one per split and subset: another split never overwrites the model's own eval_speaker_test.
    name = evaluation.eval_dir_name
    assert name({"scheme": "speaker"}, "test") == "eval_speaker_test"
    assert name({"scheme": "chumachenko"}, "validation+test") == "eval_chumachenko_validation_test"
    assert name({"scheme": "kfold", "folds": 3, "fold": 1}, "test") == "eval_kfold3_fold2_test"  # fold_2 of CV
    assert name({"scheme": "luna5", "fold": 0}, "all") == "eval_luna5_fold1_all"
    assert name({"actors": {"train": [1]}}, "test") == "eval_actors_test"


def test_a_run_stopped_after_training_is_evaluated_and_exported_not_trained_again(fit_run, tfrecords_dir, tmp_path):
    """A SIGTERM in the evaluation, then one in the export of the next start (the test hook): neither start
    after training trains again, and the third ends with the metrics.json of the unbroken run (conftest's)."""
    model_dir = str(tmp_path / "run")
    args = (f"--data_dir={tfrecords_dir}", f"--model_dir={model_dir}", "--epochs=2", *helpers.FAST_FIT,
            "--distribution_strategy=mirrored")
    for phase in ("evaluate", "export"):
        proc = helpers.fit(tmp_path, *args, env={cluster.TEST_STOP_ENV: phase})
        assert proc.returncode == 128 + signal.SIGTERM, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "stopped by SIGTERM" in proc.stderr
        assert ("Epoch 1/2" in proc.stdout) == (phase == "evaluate"), proc.stdout  # only the first start trains
        assert not os.path.exists(os.path.join(model_dir, "metrics.json"))
    assert os.path.isfile(os.path.join(model_dir, "model.keras"))  # the export was under way
    proc = helpers.fit(tmp_path, *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Epoch" not in proc.stdout and "finished training (2 epochs)" in proc.stdout, proc.stdout
    with open(os.path.join(model_dir, "metrics.json")) as f, open(os.path.join(fit_run["model_dir"],
                                                                               "metrics.json")) as g:
        assert json.load(f) == json.load(g)
    assert _epochs(model_dir) == [0, 1]
    assert os.path.isfile(os.path.join(model_dir, "saved_model", "saved_model.pb"))


def test_a_resume_keeps_its_mixed_precision(fit_run, tfrecords_dir, tmp_path):
    """float16 would wrap the optimizer in a LossScaleOptimizer: the state of the run could not be carried over.
    Refused, naming both values, before anything is written."""
    model_dir = str(tmp_path / "run")
    shutil.copytree(fit_run["model_dir"], model_dir)
    more = train_lib.TrainConfig(tfrecords_dir, model_dir, model="video", filters=(8, 16), batch_size=8, augment=(),
                                 seed=1, epochs=3, strategy="mirrored", mixed_precision="float16")
    with pytest.raises(ValueError, match=r"trained with --mixed_precision=none, not --mixed_precision=float16"):
        train_lib.train(more)
    assert _epochs(model_dir) == [0, 1] and os.path.isfile(os.path.join(model_dir, "metrics.json"))


def test_a_run_that_stopped_early_or_kept_no_last_state_is_not_extended(tmp_path):
    from trainers import loop

    config = train_lib.TrainConfig("data", str(tmp_path), epochs=20)
    (tmp_path / "config.json").write_text(json.dumps(dict(config.to_json(), epochs=10)))
    assert loop._extension(config, str(tmp_path), {"epochs_trained": 20}) == (False, "")  # nothing more to train
    extend, why = loop._extension(config, str(tmp_path), {"epochs_trained": 4})  # early stopping ended it
    assert not extend and "stopped early after 4 of 10 epochs" in why
    with pytest.raises(ValueError, match="without its last epoch's state"):  # a run of an older version
        loop._extension(config, str(tmp_path), {"epochs_trained": 10})
    last = tmp_path / "checkpoints" / "last"
    last.mkdir(parents=True)
    (last / "training_metadata.json").write_text('{"epoch": 10, "batch": 0}')
    with pytest.raises(ValueError, match="without its last epoch's state"):  # a record without its weights
        loop._extension(config, str(tmp_path), {"epochs_trained": 10})
    (last / "latest.weights.h5").write_bytes(b"weights")
    assert loop._extension(config, str(tmp_path), {"epochs_trained": 10}) == (True, "")


def test_early_stopping_and_lr_plateau_count_on_across_a_resume(tmp_path):
    """Their wait counters continue after a restart instead of starting again from 0.

    The learning rate is 0, so validation accuracy and loss never improve after
    epoch 0: with patience 3, early stopping must end the run at epoch 3 (0-based),
    two epochs into the resumed run, not at epoch 5.
    """
    config = train_lib.TrainConfig(str(tmp_path / "unused"), str(tmp_path), early_stopping_patience=3,
                                   lr_patience=100, min_learning_rate=0.0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 3, size=32)

    def fit(epochs: int, *extra):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=keras.optimizers.Adam(0.0), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        callbacks = callbacks_lib.make_callbacks(config, str(tmp_path))
        history = model.fit(x, y, validation_data=(x, y), epochs=epochs, batch_size=8, verbose=0,
                            callbacks=[*callbacks, *extra])
        return history, {type(cb): cb for cb in callbacks}

    with pytest.raises(helpers.Killed):
        fit(10, helpers.kill_after(2))
    with open(tmp_path / "backup" / "counters.json") as f:
        saved = json.load(f)
    assert saved["2"][0]["wait"] == 1 and saved["2"][1]["wait"] == 1  # epoch 0 set best, epoch 1 did not beat it

    history, callbacks = fit(10)
    assert history.epoch == [2, 3]  # resumed at epoch 2, stopped at 3
    assert callbacks[keras.callbacks.EarlyStopping].stopped_epoch == 3
    assert callbacks[keras.callbacks.ReduceLROnPlateau].wait == 3  # 1 before the restart, 2 after
    assert not os.path.exists(tmp_path / "backup")  # training ended: backup and counters gone
    assert _epochs(str(tmp_path)) == [0, 1, 2, 3]


def test_a_failed_start_writes_nothing(tmp_path):
    model_dir = tmp_path / "run"
    config = train_lib.TrainConfig(str(tmp_path / "no_shards_here"), str(model_dir), model="video", filters=(8,))
    with pytest.raises(FileNotFoundError, match="no_shards_here"):
        train_lib.train(config)
    assert not model_dir.exists()  # so a retry with other settings is not refused


def test_bad_actors_write_nothing(tfrecords_dir, tmp_path):
    model_dir = tmp_path / "run"
    # Actor 99 is no RAVDESS actor: the setting is refused as it is made, before any data is read.
    with pytest.raises(UserError, match="actors with no shards: 99"):
        config = train_lib.TrainConfig(tfrecords_dir, str(model_dir), split="actors", model="video", filters=(8,),
                                       actors={"train": (1, 2), "validation": (3,), "test": (99,)})
        train_lib.train(config)
    assert not model_dir.exists()


def _reconvert_actor(data_dir: str, actor: int) -> None:
    """Rewrite one actor's shards with its records in reverse order, as a re-conversion would change them."""
    info_path = os.path.join(data_dir, schema.INFO_FILENAME)
    with open(info_path) as f:
        info = json.load(f)
    old = [s for s in info["shards"] if s["actor"] == actor]
    records = [r.numpy() for s in old for r in tf.data.TFRecordDataset(os.path.join(data_dir, s["file"]))][::-1]
    for s in old:
        os.remove(os.path.join(data_dir, s["file"]))
    new = writer.write_actor_shards(data_dir, actor, records, len(records), examples_per_shard=len(records))
    info["shards"] = [s for s in info["shards"] if s["actor"] != actor] + new
    with open(info_path, "w") as f:
        json.dump(info, f)


def test_a_finished_run_on_other_data_is_refused(tfrecords_dir, tmp_path):
    """A re-converted corpus in --data_dir does not get the old run's metrics back."""
    data_dir = str(tmp_path / "data")
    shutil.copytree(tfrecords_dir, data_dir)
    model_dir = tmp_path / "run"
    config = train_lib.TrainConfig(data_dir, str(model_dir), model="video", filters=(8,), epochs=1, verbose=0)
    fingerprint = config_lib.data_fingerprint(ravdess_tfrecords.Builder(data_dir).info)
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(config_lib.run_record(config, fingerprint)))
    (model_dir / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.5}}))
    assert train_lib.train(config) == {"test": {"accuracy": 0.5}}  # the same data: reported, not retrained

    # The converter may add fields to ravdess_info.json: they do not change the fingerprint.
    with open(os.path.join(data_dir, schema.INFO_FILENAME)) as f:
        info = json.load(f)
    info["added_by_a_newer_converter"] = {"anything": 1}
    with open(os.path.join(data_dir, schema.INFO_FILENAME), "w") as f:
        json.dump(info, f)
    assert config_lib.data_fingerprint(ravdess_tfrecords.Builder(data_dir).info) == fingerprint

    _reconvert_actor(data_dir, 5)
    assert config_lib.data_fingerprint(ravdess_tfrecords.Builder(data_dir).info) != fingerprint
    with pytest.raises(ValueError, match="trained on other data"):
        train_lib.train(config)


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
    assert sorted(p.name for p in tmp_path.glob("fold_*")) == ["fold_1", "fold_2", "fold_3"]  # as "fold 1/3"
    for n in (1, 2, 3):
        with open(tmp_path / f"fold_{n}" / "metrics.json") as f:
            assert json.load(f)["test"]["num_examples"] == 24
    table = (tmp_path / "cv_results.md").read_text()
    assert "mean +/- std" in table and table.count("\n| ") == 5  # header rule, 3 folds, mean
    assert [line.split(" | ")[0] for line in table.splitlines()[2:5]] == ["| 1", "| 2", "| 3"]
    # Started again, completed folds are reported, not retrained.
    assert train_lib.run(config)["folds"] == summary["folds"]
    # An older run's 0-based folders are kept, not trained again beside new ones.
    for n in (1, 2, 3):
        os.rename(tmp_path / f"fold_{n}", tmp_path / f"fold_{n - 1}")
    written = os.path.getmtime(tmp_path / "fold_0" / "metrics.json")
    assert train_lib.run(config)["folds"] == summary["folds"]
    assert sorted(p.name for p in tmp_path.glob("fold_*")) == ["fold_0", "fold_1", "fold_2"]
    assert os.path.getmtime(tmp_path / "fold_0" / "metrics.json") == written
    dirs, note = cv.fold_dirs(str(tmp_path), 3)
    assert dirs == [str(tmp_path / f"fold_{i}") for i in range(3)] and "older run's 0-based" in note
    # trainers.evaluate --fold=1 on fold 0's model: the scheme (kfold, 3 folds) comes from its config.json.
    other = train_lib.evaluate_saved(str(tmp_path / "fold_0"), fold=1, output_dir=str(tmp_path / "eval"))
    assert other["actors"] == list(range(9, 17)) and other["num_examples"] == 24
    with pytest.raises(ValueError, match="--folds applies to --split=kfold only, not to --split=luna5"):
        train_lib.evaluate_saved(str(tmp_path / "fold_0"), split="luna5", folds=4)


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


def test_augment_on_device_trains_behind_the_layer_and_saves_without_it(tfrecords_dir, tmp_path):
    """--augment_on=device: uint8 video into an AugmentLayer during training; the saved model is the bare one."""
    from ravdess_tfrecords.reading import augment

    model_dir = str(tmp_path / "device")
    config = train_lib.TrainConfig(tfrecords_dir, model_dir, model="video", filters=(8,), epochs=1, batch_size=8,
                                   augment_on="device", verbose=0)
    metrics = train_lib.train(config)
    with open(os.path.join(model_dir, "config.json")) as f:
        assert json.load(f)["augment_on"] == "device"
    saved = keras.models.load_model(os.path.join(model_dir, "model.keras"))
    assert not any(isinstance(layer, augment.AugmentLayer) for layer in saved.layers)
    assert saved.inputs[0].dtype == "float32"  # every saved model takes video in [0, 1]
    # The run's own test evaluation (wrapped model, uint8 batches) equals the saved model's on host batches.
    again = train_lib.evaluate_saved(model_dir)
    assert again["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    with pytest.raises(ValueError, match="augment_on"):
        train_lib.TrainConfig(tfrecords_dir, model_dir, augment_on="gpu")


@pytest.mark.parametrize("as_uri", [False, True])
def test_a_backup_whose_record_a_kill_cut_short_resumes_from_the_pair_before(tmp_path, as_uri):
    """Keras writes training_metadata.json in place after the weights: a SIGKILL in between leaves it empty.
    The previous pair (.bkp) goes back in place and Keras resumes from it; without one, the backup goes
    (nothing finished for sure) and Keras starts over. A real backup: Keras' own files of a killed fit."""
    _, unbroken = helpers.fit_with_backup(str(tmp_path / "unbroken"), 5)
    model_dir = str(tmp_path / "run")
    backup = tmp_path / "run" / "backup"
    path = f"file://{backup}" if as_uri else str(backup)
    with pytest.raises(helpers.Killed):
        helpers.fit_with_backup(model_dir, 5, helpers.kill_after(3))
    assert callbacks_lib.backup_epochs(path) == 3
    epoch_2 = (backup / "latest.weights.h5.bkp").read_bytes()  # the pair before the last: after epoch 2
    assert (backup / "latest.weights.h5").read_bytes() != epoch_2
    (backup / "training_metadata.json").write_text("")  # killed while Keras wrote epoch 3's record
    assert callbacks_lib.backup_epochs(path) == 2
    callbacks_lib.repair_backup(path)
    assert (backup / "latest.weights.h5").read_bytes() == epoch_2
    assert callbacks_lib.backup_epochs(path) == 2
    callbacks_lib.repair_backup(path)  # a whole record: left alone
    assert (backup / "latest.weights.h5").read_bytes() == epoch_2
    # Keras takes the repaired pair: it trains epochs 3-5 from epoch 2's weights and optimizer state and
    # ends where the unbroken run ended.
    history, resumed = helpers.fit_with_backup(model_dir, 5)
    assert history.epoch == [2, 3, 4]
    for a, b in zip(unbroken.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    # Cut short in the first epoch's record: no pair before it. The backup goes; Keras starts over.
    first = str(tmp_path / "first")
    with pytest.raises(helpers.Killed):
        helpers.fit_with_backup(first, 5, helpers.kill_after(1))
    record = tmp_path / "first" / "backup" / "training_metadata.json"
    assert not os.path.exists(str(record) + ".bkp")
    record.write_text('{"epo')
    first_path = f"file://{tmp_path / 'first' / 'backup'}" if as_uri else str(tmp_path / "first" / "backup")
    assert callbacks_lib.backup_epochs(first_path) == 0
    callbacks_lib.repair_backup(first_path)
    assert not os.path.exists(os.path.dirname(record))
    history, _ = helpers.fit_with_backup(first, 2)
    assert history.epoch == [0, 1]


def test_a_resumed_run_sees_the_epochs_an_unbroken_run_sees_and_ends_on_the_same_weights(
        tfrecords_dir, tmp_path, monkeypatch):
    """Shuffle order, host augmentation and mixup are keyed on (--seed, epoch), not on the process or the
    dataset's passes: a run stopped after epoch 1 and resumed (new datasets, as in a new process) trains
    epoch 2 on the batches the unbroken run trained it on. 60 training clips: 7 batches per epoch."""
    from trainers import loop

    def config(name: str):
        return train_lib.TrainConfig(tfrecords_dir, str(tmp_path / name), model="video", filters=(8, 16),
                                     batch_size=8, seed=1, epochs=2, mixup=0.2, export=False, verbose=0)

    unbroken = train_lib.train(config("unbroken"))
    make_callbacks = loop.make_callbacks
    monkeypatch.setattr(loop, "make_callbacks", lambda *a: [*make_callbacks(*a), helpers.kill_after(1)])
    with pytest.raises(helpers.Killed):
        train_lib.train(config("resumed"))
    monkeypatch.setattr(loop, "make_callbacks", make_callbacks)
    assert callbacks_lib.backup_epochs(str(tmp_path / "resumed" / "backup")) == 1
    resumed = train_lib.train(config("resumed"))
    # Every epoch's training loss and validation, to the last digit CSVLogger writes (float32 repr).
    assert _history_rows(str(tmp_path / "resumed")) == _history_rows(str(tmp_path / "unbroken"))
    assert resumed["test"] == unbroken["test"]
    # The same weights at the end: float32 arithmetic in the same order gives the same bits.
    final = [keras.models.load_model(str(tmp_path / name / "model.keras")).get_weights()
             for name in ("unbroken", "resumed")]
    for a, b in zip(*final, strict=True):
        np.testing.assert_array_equal(a, b)
