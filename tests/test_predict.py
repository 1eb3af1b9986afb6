"""Prediction on raw clips: the converter's preprocessing (parity with the shards) and the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import imageio_ffmpeg
import numpy as np
import pytest
from tensorflow import keras

import ravdess_tfrecords
from ravdess_tfrecords import labels, models
from ravdess_tfrecords.conversion import preprocess
from trainers import predict_lib, train_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model_dir(tfrecords_dir, tmp_path_factory) -> str:
    """An (untrained) fusion model saved the way trainers.fit saves it, made input-sensitive.

    Its output layer is scaled up so that different clips get clearly different
    probabilities: a 1e-5 parity check on near-uniform outputs would prove little.
    """
    out = str(tmp_path_factory.mktemp("model"))
    config = train_lib.TrainConfig(tfrecords_dir, out, model="fusion", filters=(8, 16), export=False, seed=3)
    info = ravdess_tfrecords.Builder(tfrecords_dir).info
    keras.utils.set_random_seed(config.seed)  # the same weights every run
    model = models.build_model(config.model, audio_frames=info.audio_frames, filters=config.filters)
    head = model.get_layer("emotion")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 40.0, bias])
    train_lib.save_model(model, out, config, info)
    return out


def _records(tfrecords_dir: str) -> dict[str, tuple]:
    """``{source file name: (audio (24, M, 1), video (6, 64, 64, 3) float32)}`` from the shards."""
    ds = ravdess_tfrecords.load(tfrecords_dir, "all", training=False, batch_size=16, with_metadata=True)
    out = {}
    for (audio, video), _, meta in ds:
        for i, source in enumerate(meta["source"].numpy()):
            out[source.decode()] = (audio[i].numpy(), video[i].numpy())
    return out


def _clips(corpus: str, actors=(1, 12, 24)) -> list[str]:
    paths = []
    for actor in actors:
        folder = os.path.join(corpus, f"Actor_{actor:02d}")
        paths.append(os.path.join(folder, sorted(os.listdir(folder))[0]))
    return paths


def _faceless_clip(path: str) -> str:
    """A real mp4 with a tone but no face: preprocessing must refuse it (no_face).

    The tone starts after 0.5 s of silence: a steady tone alone is noise with no speech in it (``silent``).
    """
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=320x240:d=2:r=25",
         "-f", "lavfi", "-i", "sine=frequency=220:duration=2", "-af", "volume='if(lt(t,0.5),0,1)':eval=frame",
         "-shortest", "-pix_fmt", "yuv420p", path],
        check=True,
    )
    return path


def _nan_audio_clip(path: str) -> str:
    """A real clip (.mov, float PCM audio) with 10 NaN samples in its tone: ``bad_audio``."""
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(32000) / 16000)).astype("<f4")
    tone[1000:1010] = np.nan
    raw = path + ".f32"
    tone.tofile(raw)
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=320x240:d=2:r=25",
         "-f", "f32le", "-ar", "16000", "-ac", "1", "-i", raw, "-shortest", "-pix_fmt", "yuv420p", "-c:a", "pcm_f32le",
         path],
        check=True,
    )
    return path


def test_predict_matches_the_model_on_the_tfrecord_example(model_dir, synthetic_corpus, tfrecords_dir):
    predictor = predict_lib.load(model_dir)
    assert predictor.class_names == labels.CLASS_NAMES
    records = _records(tfrecords_dir)
    paths = _clips(synthetic_corpus)
    results = predict_lib.predict_clips(predictor, paths)

    stored = [records[os.path.basename(p)] for p in paths]
    expected = predictor.model.predict([np.stack([a for a, _ in stored]), np.stack([v for _, v in stored])],
                                       verbose=0)
    for path, result, (audio, video), want in zip(paths, results, stored, expected, strict=True):
        assert "error" not in result, result
        # Same preprocessing: the arrays fed to the model equal the stored example.
        audio_x, video_x = predict_lib.clip_features(path, predictor.settings, predictor.audio_frames)
        np.testing.assert_allclose(audio_x, audio, atol=1e-6)
        np.testing.assert_array_equal(video_x, video)
        got = np.array([result["probabilities"][name] for name in labels.CLASS_NAMES])
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert result["label"] == labels.CLASS_NAMES[int(want.argmax())]
        assert result["probability"] == pytest.approx(float(want.max()), abs=1e-5)
    # The check has teeth: the clips' outputs differ by 100x the 1e-5 tolerance or more.
    assert np.abs(expected[0] - expected[1]).max() > 1e-3 or np.abs(expected[0] - expected[2]).max() > 1e-3


def test_a_clip_given_as_a_uri_is_read_through_a_local_copy(model_dir, synthetic_corpus, tmp_path, monkeypatch):
    """ffmpeg reads local files only: a ``file://`` clip (the ``gs://`` code path) goes through a temporary copy."""
    predictor = predict_lib.load(model_dir)
    clip = _clips(synthetic_corpus, actors=(3,))[0]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # a URI handled with os would resolve under a literal "file:" folder here
    got, want = predict_lib.predict_clips(predictor, ["file://" + clip, clip])
    assert "error" not in got, got
    assert got["probabilities"] == want["probabilities"] and got["clip"] == "file://" + clip
    (missing,) = predict_lib.predict_clips(predictor, ["file://" + clip + ".gone"])
    assert missing["error"] == {"code": "unreadable", "message": f"no such file: file://{clip}.gone"}
    assert os.listdir(cwd) == []


def test_a_failing_clip_gets_its_reason_and_the_others_still_run(model_dir, synthetic_corpus, tmp_path):
    good = _clips(synthetic_corpus, actors=(5,))[0]
    faceless = _faceless_clip(str(tmp_path / "faceless.mp4"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")

    # The test hook makes librosa raise on a copy of the good clip: an exception the preprocessing does not expect.
    raises = tmp_path / "librosa_raises.mp4"
    raises.write_bytes(open(good, "rb").read())
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **{preprocess.TEST_RAISE_ENV: raises.name})
    cmd = [sys.executable, "-m", "trainers.predict", f"--model_dir={model_dir}"]
    nan_audio = _nan_audio_clip(str(tmp_path / "nan_audio.mov"))
    proc = subprocess.run(cmd + [faceless, good, str(broken), str(raises), nan_audio], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 5, proc.stdout
    # That clip's line, reason internal, the exception's type and message.
    assert lines[3] == "librosa_raises.mp4: FAILED internal: ParameterError: hop_length=0 must be a positive integer"
    assert lines[4] == "nan_audio.mov: FAILED bad_audio: the audio holds 10 NaN and 0 infinite samples (the first " \
                       "at 0.062 s)", lines[4]
    assert lines[0].startswith("faceless.mp4: FAILED no_face")
    names = "|".join(re.escape(n) for n in labels.CLASS_NAMES)
    assert re.fullmatch(rf"{re.escape(os.path.basename(good))}: ({names}) [01]\.\d\d \((({names}) [01]\.\d\d(, )?)+\)",
                        lines[1]), lines[1]
    assert lines[2].startswith("broken.mp4: FAILED unreadable")

    # --json, every clip failing: a machine-readable reason each, and a non-zero exit code.
    proc = subprocess.run(cmd + ["--json", faceless, str(broken)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    results = json.loads(proc.stdout)
    assert [r["error"]["code"] for r in results] == ["no_face", "unreadable"]
    assert [r["clip"] for r in results] == [faceless, str(broken)]
