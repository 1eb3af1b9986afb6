"""``--model_dir`` and ``--data_dir`` as ``tf.io.gfile`` URIs: ``file://`` takes the same code path as ``gs://``.

Every file of a run goes through ``ravdess_tfrecords.storage`` (ours) or Keras'
``file_utils`` (which use ``tf.io.gfile`` for a URI). The runs start in an empty
working directory, which must stay empty: a path handled with ``os``/``open``
instead would show up there as a literal ``file:`` folder.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import helpers
import numpy as np
import pytest

from ravdess_tfrecords import storage
from trainers import cv, export, predict_lib, train_lib
from trainers.callbacks import backup_epochs

FAST = helpers.FAST_FIT
_fit = helpers.fit


def _uri(path) -> str:
    return "file://" + os.path.abspath(str(path))


def _files(root: str) -> set[str]:
    """Relative paths of the files under ``root``, TensorBoard event files by folder only (their names vary)."""
    out = set()
    for folder, _, names in os.walk(root):
        for name in names:
            rel = os.path.relpath(os.path.join(folder, name), root)
            out.add(os.path.dirname(rel) + "/events" if name.startswith("events.out") else rel)
    return out


def _history(model_dir: str) -> list[dict[str, str]]:
    with open(os.path.join(model_dir, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(fit_run, tfrecords_dir, tmp_path_factory):
    """The session's 2-epoch fit with plain paths (``fit_run``) and the same fit with file:// URIs, each
    from an empty directory."""
    root = tmp_path_factory.mktemp("uri")
    cwd = root / "cwd"
    cwd.mkdir()
    remote = str(root / "remote")
    proc = _fit(cwd, f"--data_dir={_uri(tfrecords_dir)}", f"--model_dir={_uri(remote)}", "--epochs=2", *FAST,
                "--distribution_strategy=mirrored")  # as fit_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for run in (proc, fit_run["proc"]):
        assert "Traceback" not in run.stderr
        # Quiet: the SavedModel export's INFO lines (absl "I1130 ..." and "INFO:tensorflow:") are hidden.
        noise = [line for line in run.stderr.splitlines() if re.match(r"I\d{4} |INFO:", line)]
        assert noise == [], noise[:5]
    return {"plain": fit_run["model_dir"], "remote": remote, "cwds": [str(cwd), fit_run["cwd"]]}


def test_fit_under_uris_writes_what_plain_paths_write(runs):
    plain, remote = runs["plain"], runs["remote"]
    for cwd in runs["cwds"]:
        assert os.listdir(cwd) == []  # no literal "file:" folder, nothing else either
    assert _files(remote) == _files(plain)
    assert "metrics.json" in _files(remote) and "saved_model/saved_model.pb" in _files(remote)
    if export.onnx_missing_message() is None:  # the [onnx] extra: model.onnx goes through storage too
        assert "model.onnx" in _files(remote)
    with open(os.path.join(plain, "metrics.json")) as f, open(os.path.join(remote, "metrics.json")) as g:
        assert json.load(g) == json.load(f)  # same seed, same data: the same run
    assert _history(remote) == _history(plain) and len(_history(remote)) == 2
    with open(os.path.join(remote, "config.json")) as f:
        config = json.load(f)
    assert config["model_dir"] == _uri(remote) and config["data_dir"].startswith("file://")


def test_evaluate_predict_and_cv_under_uris(runs, tfrecords_dir, synthetic_corpus, tmp_path, monkeypatch):
    plain, remote = runs["plain"], runs["remote"]
    monkeypatch.chdir(tmp_path)

    again = train_lib.evaluate_saved(_uri(remote))
    assert again["confusion_matrix"] == train_lib.evaluate_saved(plain)["confusion_matrix"]
    assert again["output_dir"] == _uri(remote) + "/eval_speaker_test"
    assert os.path.isfile(os.path.join(remote, "eval_speaker_test", "metrics.json"))

    clip = os.path.join(synthetic_corpus, "Actor_24", sorted(os.listdir(os.path.join(synthetic_corpus, "Actor_24")))[0])
    got = predict_lib.predict_clips(predict_lib.load(_uri(remote)), [clip])[0]
    want = predict_lib.predict_clips(predict_lib.load(plain), [clip])[0]
    assert "error" not in got and got["label"] == want["label"]
    assert got["probability"] == pytest.approx(want["probability"], abs=1e-6)

    cv_dir = tmp_path / "cv"
    config = train_lib.TrainConfig(_uri(tfrecords_dir), _uri(cv_dir), split="kfold", folds=3, model="video",
                                   filters=(8, 16), epochs=1, batch_size=8, augment=(), seed=1, export=False,
                                   verbose=0)
    summary = cv.run(config)
    assert len(summary["folds"]) == 3
    with open(cv_dir / "cv_results.json") as f:
        assert json.load(f)["folds"] == summary["folds"]
    table = (cv_dir / "cv_results.md").read_text()
    assert table.count("\n") >= 5 and "mean" in table  # a row per fold and the mean
    assert all((cv_dir / f"fold_{n}" / "metrics.json").is_file() for n in (1, 2, 3))
    assert sorted(os.listdir(tmp_path)) == ["cv"]  # the working directory holds nothing else


def test_a_sigkilled_run_resumes_with_each_epoch_once_also_under_a_uri(tfrecords_dir, tmp_path):
    """A run SIGKILLed once its first epoch's backup exists (plain paths) resumes after the last backed-up
    epoch when started again, here with the same directories as file:// URIs (the same code path as gs://)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    local = tmp_path / "resume"
    common = ("--epochs=3", "--patience=10", "--noexport", *FAST)  # the resume is checked, not the export
    backup = str(local / "backup")
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "trainers.fit", f"--data_dir={tfrecords_dir}",
                                 f"--model_dir={local}", *common], cwd=cwd, env=helpers.fit_env(), stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            # backup_epochs, not the record's existence: Keras creates it before it writes it.
            while not backup_epochs(backup) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    done = backup_epochs(backup)  # epochs the backup holds (1, or 2 if the kill came late)
    assert 1 <= done < 3
    assert not (local / "metrics.json").exists()

    second = _fit(cwd, f"--data_dir={_uri(tfrecords_dir)}", f"--model_dir={_uri(local)}", *common)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"resuming the interrupted run in {_uri(local)}" in second.stdout
    assert f"Epoch {done + 1}/3" in second.stdout and f"Epoch {done}/3" not in second.stdout
    assert [int(r["epoch"]) for r in _history(str(local))] == [0, 1, 2]  # each epoch once
    assert not (local / "backup").exists()
    assert json.loads((local / "metrics.json").read_text())["epochs_trained"] == 3
    assert os.listdir(cwd) == []


CANARY = """
import numpy as np, sys
from tensorflow import keras
model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
try:
    model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, verbose=0,
              callbacks=[keras.callbacks.CSVLogger(sys.argv[1])])
except AttributeError as e:
    print("AttributeError:", e)
else:
    print("fit ok")
"""


def test_canary_keras_csv_logger_still_needs_the_gfile_patch(tmp_path):
    """Without ``trainers.keras_gfile.patch`` a CSVLogger under a URI fails; when this fails, drop the patch."""
    proc = subprocess.run([sys.executable, "-c", CANARY, _uri(tmp_path / "history.csv")], env=helpers.fit_env(),
                          capture_output=True, text=True, timeout=300)
    assert "AttributeError:" in proc.stdout and "closed" in proc.stdout, proc.stdout + proc.stderr[-2000:]


@pytest.mark.parametrize("as_uri", [False, True])
def test_atomic_writes_leave_nothing_behind_on_failure(tmp_path, as_uri):
    target = tmp_path / "config.json"
    path = _uri(target) if as_uri else str(target)
    storage.write_text(path, "old\n")
    with pytest.raises(RuntimeError), storage.atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert storage.read_text(path) == "old\n"
    assert os.listdir(tmp_path) == ["config.json"]  # no temporary file beside it
    storage.write_bytes(path, np.arange(3, dtype="<u1").tobytes())
    assert target.read_bytes() == b"\x00\x01\x02"


@pytest.mark.parametrize("as_uri", [False, True])
def test_a_folder_copy_replaces_the_folder_whole_or_not_at_all(tmp_path, as_uri, monkeypatch):
    """checkpoints/last/ -> backup/ (storage.copytree_whole): a copy that fails midway leaves the old folder."""
    src, dst = tmp_path / "last", tmp_path / "backup"
    (src / "sub").mkdir(parents=True)
    (src / "training_metadata.json").write_text("record")
    (src / "sub" / "latest.weights.h5").write_text("weights")
    dst.mkdir()
    (dst / "old").write_text("old")
    paths = [_uri(p) if as_uri else str(p) for p in (src, dst)]
    copy = storage.copy

    def killed_at_the_weights(a: str, b: str) -> None:
        if a.endswith(".h5"):
            raise OSError("killed mid-copy")
        copy(a, b)

    monkeypatch.setattr(storage, "copy", killed_at_the_weights)
    with pytest.raises(OSError, match="killed mid-copy"):
        storage.copytree_whole(*paths)
    assert os.listdir(dst) == ["old"]
    monkeypatch.setattr(storage, "copy", copy)
    storage.copytree_whole(*paths)  # the partial copy of the failed one goes first
    assert sorted(os.listdir(tmp_path)) == ["backup", "last"]
    assert (dst / "training_metadata.json").read_text() == "record"
    assert (dst / "sub" / "latest.weights.h5").read_text() == "weights"
    assert not (dst / "old").exists()


def test_plot_samples_reads_and_writes_uris(tfrecords_dir, tmp_path):
    """``tools.plot_samples --data_dir=URI --output=URI`` from an empty directory: the PNG and nothing else."""
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    out.mkdir()
    proc = subprocess.run([sys.executable, "-m", "tools.plot_samples", f"--data_dir={_uri(tfrecords_dir)}",
                           f"--output={_uri(out / 'samples.png')}", "--num_samples=2"],
                          cwd=cwd, env=helpers.repo_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(out) == ["samples.png"] and os.listdir(cwd) == []  # no temporary file left behind
