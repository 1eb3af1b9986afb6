"""The serving exports: ONNX (the [onnx] extra) and the SavedModel signature, both checked against Keras.

The model is an untrained fusion model (BLSTM audio branch included) made
input-sensitive as in tests/test_predict.py, fed the test split of small fake
shards (tests/fake_shards.py): fast, and every export is compared on real batches.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
from fake_shards import write_shards
from tensorflow import keras

import ravdess_tfrecords
from ravdess_tfrecords import labels, models
from trainers import export, train_lib

# Not installed: the ONNX test says why and skips; CI installs the extra (make test: .[test,...,onnx]).
NO_ONNX = export.onnx_missing_message() or (
    None if importlib.util.find_spec("onnxruntime") else 'pip install "ravdess-tfrecords[onnx]" (missing: onnxruntime)')


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("shards"))
    write_shards(out, actors=range(1, 25), audio_frames=20)  # test split: actors 23, 24, 16 clips
    return out


def _save(data_dir: str, model_dir: str, model_name: str = "fusion") -> tuple[keras.Model, dict[str, str]]:
    """Build, make input-sensitive and save a model the way trainers.fit does (``export=True``).

    Returns:
      ``(model, save_model's {what: path})``.
    """
    config = train_lib.TrainConfig(data_dir, model_dir, model=model_name, filters=(8, 16), export=True, seed=3)
    info = ravdess_tfrecords.Builder(data_dir).info
    keras.utils.set_random_seed(config.seed)
    model = models.build_model(config.model, audio_frames=info.audio_frames, filters=config.filters)
    head = model.get_layer("emotion")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 40.0, bias])  # near-uniform outputs would make a 1e-4 parity check prove little
    return model, train_lib.save_model(model, model_dir, config, info)


@pytest.fixture(scope="module")
def fusion(data_dir, tmp_path_factory) -> tuple[keras.Model, dict[str, str]]:
    return _save(data_dir, str(tmp_path_factory.mktemp("fusion")))


def _test_batch(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """The whole test split as one batch: ``(audio, video)`` float32, video in [0, 1]."""
    ds = ravdess_tfrecords.load(data_dir, "test", training=False, batch_size=64)
    (audio, video), _ = next(iter(ds))
    return audio.numpy(), video.numpy()


@pytest.mark.skipif(NO_ONNX is not None, reason=f"ONNX export test needs the [onnx] extra: {NO_ONNX}")
def test_onnx_export_matches_keras_with_named_output_and_class_names(fusion, data_dir):
    import onnxruntime

    model, saved = fusion
    path = saved["onnx"]
    assert os.path.basename(path) == "model.onnx" and os.path.isfile(path)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["audio", "video"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    assert session.get_inputs()[0].shape == ["batch", 24, 20, 1]
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == list(labels.CLASS_NAMES)

    audio, video = _test_batch(data_dir)
    assert len(audio) == 16 and 0.0 <= video.min() and video.max() <= 1.0
    want = model.predict([audio, video], verbose=0)
    got, = session.run(["probabilities"], {"audio": audio, "video": video})
    assert got.shape == want.shape == (16, labels.NUM_CLASSES)
    assert np.abs(got - want).max() <= 1e-4
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    # The check has teeth: examples get clearly different outputs, and more than one class wins.
    assert np.abs(want - want[0]).max() > 1e-2 and len(set(want.argmax(1))) > 1


@pytest.mark.skipif(NO_ONNX is not None, reason=f"ONNX export test needs the [onnx] extra: {NO_ONNX}")
def test_onnx_export_of_a_unimodal_model_never_called(data_dir, tmp_path):
    import onnxruntime

    keras.utils.set_random_seed(5)
    model = models.build_model("audio", audio_frames=20)  # the BLSTM branch alone, one input
    path = str(tmp_path / "audio.onnx")
    assert export.export_onnx(model, path, labels.CLASS_NAMES) is True
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["audio"]
    assert json.loads(session.get_modelmeta().custom_metadata_map["class_names"]) == list(labels.CLASS_NAMES)
    with pytest.raises(ValueError, match="8 class names for a model of 7 outputs"):
        export.export_onnx(model, str(tmp_path / "wrong.onnx"), labels.class_names(8))
    audio, _ = _test_batch(data_dir)
    got, = session.run(["probabilities"], {"audio": audio})
    want = model.predict(audio, verbose=0)
    assert np.abs(got - want).max() <= 1e-4 and np.abs(want - want[0]).max() > 0


def test_saved_model_signature_outputs_probabilities(fusion, data_dir):
    model, saved = fusion
    served = tf.saved_model.load(saved["saved_model"])
    signature = served.signatures["serving_default"]
    assert list(signature.structured_outputs) == ["probabilities"]
    assert sorted(signature.structured_input_signature[1]) == ["audio", "video"]
    audio, video = _test_batch(data_dir)
    want = model.predict([audio, video], verbose=0)
    got = signature(audio=tf.constant(audio), video=tf.constant(video))["probabilities"].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(served.serve(audio, video)["probabilities"].numpy(), want, atol=1e-5)


def test_without_the_extra_the_export_says_so_once_and_the_run_goes_on(data_dir, tmp_path, capsys, monkeypatch):
    # None in sys.modules is Python's own "not installed" (find_spec returns None, import fails).
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    monkeypatch.setattr(export, "_warned", set())
    model_dir = str(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"an older run's export")
    model, saved = _save(data_dir, model_dir, model_name="video")
    assert "onnx" not in saved and not (tmp_path / "model.onnx").exists()  # no stale ONNX beside new weights
    assert os.path.isfile(os.path.join(saved["saved_model"], "saved_model.pb"))
    assert export.export_onnx(model, str(tmp_path / "again.onnx"), labels.CLASS_NAMES) is False
    err = [line for line in capsys.readouterr().err.splitlines() if "ONNX" in line]
    assert err == ['warning: ONNX export skipped: pip install "ravdess-tfrecords[onnx]" (missing: tf2onnx)']


@pytest.mark.skipif(NO_ONNX is not None, reason=f"ONNX export test needs the [onnx] extra: {NO_ONNX}")
def test_a_bfloat16_model_exports_from_its_float32_clone_and_a_bad_export_is_not_left(data_dir, tmp_path, capfd):
    """--mixed_precision=bfloat16: the BLSTM's bfloat16 Loop input is invalid ONNX (onnxruntime refuses it).
    The export runs from a float32 clone with the same weights, checked in onnxruntime against Keras; the
    16-bit graph itself fails that check: one warning line, and no file left as if good."""
    import onnxruntime

    from trainers.model import precision_policy

    keras.utils.set_random_seed(7)
    with precision_policy("bfloat16"):
        model = models.build_model("audio", audio_frames=20)
    serving = export.float32_clone(model)
    assert serving is not model and {layer.dtype_policy.name for layer in serving._flatten_layers()} == {"float32"}
    for ours, theirs in zip(serving.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert export.float32_clone(serving) is serving  # float32 already: itself

    probe = export.probe_inputs(serving)
    want = serving.predict(probe[0], verbose=0)
    path = str(tmp_path / "model.onnx")
    assert export.export_onnx(serving, path, labels.CLASS_NAMES, check=(probe, want)) is True
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    audio, _ = _test_batch(data_dir)
    got, = session.run(["probabilities"], {"audio": audio})
    assert np.abs(got - serving.predict(audio, verbose=0)).max() <= 1e-4

    capfd.readouterr()
    bad = str(tmp_path / "bad.onnx")
    assert export.export_onnx(model, bad, labels.CLASS_NAMES, check=(probe, want)) is False
    err = capfd.readouterr().err
    assert not os.path.exists(bad)
    assert err.count("warning: ONNX export failed its check, not written") == 1, err
