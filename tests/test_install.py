"""``pip install "ravdess-tfrecords[tf]"`` without ``[convert]``: read, build models, train; converting names
the extra. ``pip install "ravdess-tfrecords[grain]"``: no TensorFlow, the data source read and shuffled with Grain.

Real virtual environments (``.venv-reader/`` and ``.venv-grain/`` in the repository, git-ignored) get a
real, non-editable ``pip install`` of the package's sources with that one extra. Each is
built once and reused while ``setup.cfg`` and ``pyproject.toml`` stay the same (the
first build of ``.venv-reader`` downloads TensorFlow unless pip's cache has it: a few minutes);
the package itself is reinstalled (``--no-deps``) whenever its sources change.
Its Python runs from a directory outside the repository, so it imports the
installed package, never the worktree.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from ravdess_tfrecords import conversion, schema

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(REPO, ".venv-reader")
GRAIN_VENV = os.path.join(REPO, ".venv-grain")
DEPS_FILES = ("setup.cfg", "pyproject.toml")
# What a wheel is built from (setup.cfg's packages, long_description).
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "ravdess_tfrecords", "trainers")
KEY_FILE = ".deps-key"
PACKAGE_KEY_FILE = ".package-key"
BUILD_TIMEOUT_S = 1800
CONVERT_STACK = ("librosa", "dlib", "imageio_ffmpeg")  # only the [convert] extra brings these

# Runs in the fresh venv: everything a reader does, with real values checked.
READER = textwrap.dedent(
    """
    import importlib.util, json, sys
    import numpy as np
    import ravdess_tfrecords as rt
    from ravdess_tfrecords import models
    from ravdess_tfrecords.reading import splits
    import trainers.fit, trainers.evaluation, trainers.export  # the trainers import without the converter
    data_dir = sys.argv[1]
    (audio, video), label = next(iter(rt.load(data_dir, "train", batch_size=4, seed=0)))
    split = splits.split_actors("speaker")
    model = models.build_model("fusion", audio_frames=int(audio.shape[2]), filters=(8, 16))
    probs = model.predict([audio.numpy(), video.numpy()], verbose=0)
    print(json.dumps({
        "file": rt.__file__,
        "audio": list(audio.shape), "video": list(video.shape), "labels": label.numpy().tolist(),
        "video_range": [float(video.numpy().min()), float(video.numpy().max())],
        "split": {k: list(v) for k, v in split.items()},
        "probs_sum": probs.sum(axis=1).tolist(),
        "found": {m: importlib.util.find_spec(m) is not None for m in sys.argv[2].split(",")},
        "writing_half": sorted(m for m in sys.modules if m.startswith("ravdess_tfrecords.conversion.")),
    }))
    """
)

# Runs in the [grain] venv: the data source, shuffled and batched by Grain, and rt.load's one line.
GRAIN_READER = textwrap.dedent(
    """
    import hashlib, importlib.util, json, sys
    import grain
    import ravdess_tfrecords as rt
    src = rt.data_source(sys.argv[1], "test")
    batches = list(grain.MapDataset.source(src).shuffle(seed=0).batch(4))
    try:
        rt.load(sys.argv[1], "test")
        load_error = None
    except ImportError as e:
        load_error = f"{type(e).__name__}: {e}"
    from ravdess_tfrecords import storage
    try:
        storage.exists("gs://bucket/ravdess")
        uri_error = None
    except ImportError as e:
        uri_error = str(e)
    print(json.dumps({
        "file": rt.__file__,
        "tensorflow": importlib.util.find_spec("tensorflow") is not None or "tensorflow" in sys.modules,
        "clip_ids": [e["clip_id"] for e in src],
        "audio_sha256": hashlib.sha256(b"".join(e["audio"].tobytes() for e in src)).hexdigest(),
        "shuffled": [c for b in batches for c in b["clip_id"].tolist()],
        "shapes": {k: list(v.shape) for k, v in batches[0].items() if k in ("audio", "video", "label")},
        "video_dtype": str(batches[0]["video"].dtype),
        "load_error": load_error,
        "uri_error": uri_error,
    }))
    """
)


def _digest(paths: tuple[str, ...]) -> str:
    """sha256 over the files under ``paths`` (relative to the repository), names and contents."""
    h = hashlib.sha256()
    for top in paths:
        full = os.path.join(REPO, top)
        files = [full] if os.path.isfile(full) else sorted(
            os.path.join(d, f) for d, dirs, fs in os.walk(full) if "__pycache__" not in d for f in fs
            if not f.endswith(".pyc"))
        for path in files:
            h.update(os.path.relpath(path, REPO).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(f.read() + b"\0")
    return h.hexdigest()


def _read(path: str) -> str | None:
    return open(path).read() if os.path.exists(path) else None


def _pip(python: str, *args: str) -> None:
    # --no-compile: no .pyc for the thousands of modules nothing here imports (a third of pip's CPU for
    # TensorFlow); what the tests import is compiled when first imported.
    proc = subprocess.run([python, "-m", "pip", "install", "-q", "--no-compile", *args], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S, cwd="/")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _venv(venv: str, extra: str, tmp_path_factory) -> str:
    """``venv``'s python, with the package installed from the current sources and the one ``extra``."""
    python = os.path.join(venv, "bin", "python")
    deps_key = _digest(DEPS_FILES) + extra
    if _read(os.path.join(venv, KEY_FILE)) != deps_key:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
    # A copy of what the wheel is built from: no build/ or egg-info left in the repository to leak in.
    package_key = _digest(SOURCES)
    if _read(os.path.join(venv, PACKAGE_KEY_FILE)) != package_key:
        src = tmp_path_factory.mktemp("src")
        for name in SOURCES:
            (shutil.copytree if os.path.isdir(os.path.join(REPO, name)) else shutil.copy)(
                os.path.join(REPO, name), os.path.join(src, name))
        if _read(os.path.join(venv, KEY_FILE)) != deps_key:
            _pip(python, f"{src}[{extra}]")  # dependencies from pip (its cache, after the first time)
            with open(os.path.join(venv, KEY_FILE), "w") as f:
                f.write(deps_key)
        else:
            _pip(python, "--no-deps", "--force-reinstall", str(src))
        with open(os.path.join(venv, PACKAGE_KEY_FILE), "w") as f:
            f.write(package_key)
    return python


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> str:
    """``pip install ".[tf]"``: tf.data reading and the trainers, no converter."""
    return _venv(VENV, "tf", tmp_path_factory)


@pytest.fixture(scope="module")
def grain_venv(tmp_path_factory) -> str:
    """``pip install ".[grain]"``: the data source and Grain, no TensorFlow."""
    return _venv(GRAIN_VENV, "grain", tmp_path_factory)


def _run(python: str, *args: str, cwd: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return subprocess.run([python, *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def _one_error_line(proc: subprocess.CompletedProcess, what: str) -> str:
    """The single stderr line of a command that lacks the [convert] extra."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    line = lines[0]
    assert line.startswith(f"error: {what} needs an extra: "), line
    assert 'pip install "ravdess-tfrecords[convert]"' in line, line
    missing = re.search(r"\(missing: (.*)\)$", line).group(1).split(", ")
    assert set(CONVERT_STACK) <= set(missing) <= set(conversion.NEEDS), line
    return line


def test_convert_extra_lists_what_the_converter_checks():
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    extras = config["options.extras_require"]
    names = lambda text: {re.split(r"[<>=!~\[ ;]", r.strip())[0] for r in text.strip().splitlines()}  # noqa: E731
    assert names(extras["convert"]) - {"ravdess-tfrecords"} == set(conversion.NEEDS.values())
    assert "ravdess-tfrecords[tf]" in extras["convert"].split()  # the converter writes TFRecords with TensorFlow
    assert not names(config["options"]["install_requires"]) & set(conversion.NEEDS.values())
    # No framework forced on the base install or [grain] (as tensorflow_datasets and Keras 3).
    tf_stack = {"tensorflow", "tensorboard", "keras", "tf-keras"}
    assert "tensorflow" in names(extras["tf"])
    assert not (names(config["options"]["install_requires"]) | names(extras["grain"])) & tf_stack
    assert "ravdess-tfrecords" in names(extras["beam"]) and "[convert]" in extras["beam"]
    assert names(extras["synthetic"]) == set(conversion.SYNTHETIC_NEEDS.values())


def test_base_install_reads_trains_and_points_the_converter_to_its_extra(venv, tfrecords_dir, synthetic_corpus,
                                                                        tmp_path):
    data = tfrecords_dir  # the session's real conversion (tests/conftest.py)
    with open(os.path.join(data, schema.INFO_FILENAME)) as f:
        info = json.load(f)
    outside = str(tmp_path)  # not the repository: the installed package, not the worktree

    # Reading, splits, models, trainers: no converter dependency, no writing-half module.
    proc = _run(venv, "-c", READER, data, ",".join(CONVERT_STACK), cwd=outside)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["file"].startswith(VENV), got["file"]
    assert got["found"] == {m: False for m in CONVERT_STACK}
    assert got["writing_half"] == []
    assert got["audio"] == [4, 24, info["audio_frames"], 1] and got["video"] == [4, 6, 64, 64, 3]
    assert 0.0 <= got["video_range"][0] < got["video_range"][1] <= 1.0
    assert all(0 <= y < 7 for y in got["labels"])
    assert got["split"]["test"] == [23, 24] and len(got["split"]["train"]) == 17
    assert got["probs_sum"] == pytest.approx([1.0] * 4, abs=1e-4)
    for module in CONVERT_STACK:
        proc = _run(venv, "-c", f"import {module}", cwd=outside)
        assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr, (module, proc.stderr[-500:])

    proc = _run(venv, "-m", "ravdess_tfrecords.verify", f"--data_dir={data}", cwd=outside)
    assert proc.returncode == 0 and f"OK: {info['num_examples']} records" in proc.stdout, proc.stderr[-3000:]

    # One epoch of trainers.fit, its PNG plots (matplotlib is in the base install) included.
    model_dir = str(tmp_path / "model")
    proc = _run(venv, "-m", "trainers.fit", f"--data_dir={data}", f"--model_dir={model_dir}", "--model=video",
                "--filters=8,16", "--batch_size=8", "--augment=", "--seed=1", "--epochs=1", cwd=outside)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for png in ("confusion_matrix.png", "training_curves.png"):
        with open(os.path.join(model_dir, png), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", png
    with open(os.path.join(model_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["epochs_trained"] == 1 and 0.0 <= metrics["test"]["accuracy"] <= 1.0

    # Converting, by module and by console script, and predicting on an mp4: one line naming [convert], exit 2.
    out = tmp_path / "out"
    _one_error_line(_run(venv, "-m", "ravdess_tfrecords.convert", f"--input={synthetic_corpus}", f"--output={out}",
                         cwd=outside), "the converter")
    _one_error_line(_run(os.path.join(VENV, "bin", "ravdess-convert"), f"--input={synthetic_corpus}",
                         f"--output={out}", cwd=outside), "the converter")
    assert not out.exists()
    actor = os.path.join(synthetic_corpus, "Actor_24")
    clip = os.path.join(actor, sorted(f for f in os.listdir(actor) if f.endswith(".mp4"))[0])
    _one_error_line(_run(venv, "-m", "trainers.predict", f"--model_dir={model_dir}", clip, cwd=outside),
                    "trainers.predict")


def test_grain_install_reads_without_tensorflow(grain_venv, array_record_dir, tmp_path):
    import ravdess_tfrecords as rt

    proc = _run(grain_venv, "-c", "import tensorflow", cwd=str(tmp_path))
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr, proc.stderr[-500:]
    proc = _run(grain_venv, "-c", GRAIN_READER, array_record_dir, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["file"].startswith(GRAIN_VENV) and got["tensorflow"] is False, got
    # The same examples in the same order as here (where tests/test_data_source.py checks them against rt.load).
    want = list(rt.data_source(array_record_dir, "test"))
    assert got["clip_ids"] == [e["clip_id"] for e in want] and len(want) == 6
    assert got["audio_sha256"] == hashlib.sha256(b"".join(e["audio"].tobytes() for e in want)).hexdigest()
    assert sorted(got["shuffled"]) == sorted(got["clip_ids"]) and got["shuffled"] != got["clip_ids"]
    frames = want[0]["audio"].shape[1]
    assert got["shapes"] == {"audio": [4, 24, frames, 1], "video": [4, 6, 64, 64, 3], "label": [4]}
    assert got["video_dtype"] == "uint8"
    assert got["load_error"].startswith("MissingExtraError: ravdess_tfrecords.load (tf.data) needs TensorFlow")
    assert 'pip install "ravdess-tfrecords[tf]"' in got["load_error"]
    assert got["uri_error"].startswith("a URI path (gs://, s3://, ..., read through tf.io.gfile) needs TensorFlow")
    # A TensorFlow command line: one error line naming [tf], exit status 2.
    proc = _run(grain_venv, "-m", "trainers.fit", f"--data_dir={array_record_dir}", f"--model_dir={tmp_path / 'm'}",
                cwd=str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.strip() == (
        'error: this command needs TensorFlow, which this install lacks: pip install "ravdess-tfrecords[tf]" '
        "(ravdess_tfrecords.data_source reads ArrayRecord shards without it)"), proc.stderr[-2000:]
