"""RAVDESS's audio-only recordings (modality 03) end to end, on small synthetic wavs.

Folder and zip input, quiet-but-not-silent recordings, a mixed input, the
audio-only schema (no ``video``), reading ``(audio, label)``, the tfds metadata,
``trainers.fit --model=audio`` / ``evaluate`` / ``predict`` on a ``.wav``, and the
one-line refusal of a model that needs video. The real recordings serve
``tools/bench_accuracy.py``, never this suite.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import zipfile

import helpers
import numpy as np
import pytest

from ravdess_tfrecords import filenames, schema
from ravdess_tfrecords.conversion import convert, synthetic

ACTORS = (1, 2, 3, 4)
CLIPS_PER_ACTOR = 7  # every one of the 7 classes once per actor
QUIET = "03-01-05-01-01-01-01.wav"  # made at -32 dB: its peak near -40 dBFS, as actor 09's quietest


def _names(actor: int) -> list[filenames.ClipName]:
    """The first 7 speech names of an actor (one per class), as audio-only (modality 03) recordings."""
    return [dataclasses.replace(n, modality=3) for n in synthetic.speech_names(actor)[:CLIPS_PER_ACTOR]]


@pytest.fixture(scope="session")
def wav_corpus(tmp_path_factory) -> str:
    """4 actors x 7 synthetic audio-only recordings; one of actor 01's is quiet (peak about -40 dBFS)."""
    out = tmp_path_factory.mktemp("wavs")
    for actor in ACTORS:
        for name in _names(actor):
            quiet = f"{name.clip_id}.wav" == QUIET
            synthetic.make_wav(str(out / f"Actor_{actor:02d}" / f"{name.clip_id}.wav"), name,
                               gain_db=-32.0 if quiet else 0.0)
    return str(out)


@pytest.fixture(scope="session")
def wav_dataset(wav_corpus, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("wav_tfrecords")
    convert.convert([wav_corpus], str(out), workers=2, progress=False)
    return str(out)


def _peak_dbfs(path: str) -> float:
    import wave

    with wave.open(path) as f:
        y = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float64) / 32768
    return 20 * np.log10(np.abs(y).max())


def test_a_folder_of_wavs_converts_to_an_audio_only_dataset(wav_corpus, wav_dataset):
    assert -42 < _peak_dbfs(os.path.join(wav_corpus, "Actor_01", QUIET)) < -38
    with open(os.path.join(wav_dataset, schema.INFO_FILENAME)) as f:
        info = json.load(f)
    assert info["modality"] == "audio" and info["video_shape"] is None
    assert info["num_examples"] == len(ACTORS) * CLIPS_PER_ACTOR  # the quiet one included: nothing skipped
    assert info["summary"]["skipped"] == {}
    assert info["preprocessing"]["standardize"] in ("coefficient", "sample")
    with open(os.path.join(wav_dataset, schema.TFDS_FEATURES_FILENAME)) as f:
        features = json.load(f)["featuresDict"]["features"]
    assert "video" not in features and "audio" in features
    with open(os.path.join(wav_dataset, schema.TFDS_INFO_FILENAME)) as f:
        supervised = json.load(f)["supervisedKeys"]
    assert supervised == {"tuple": {"items": [{"featureKey": "audio"}, {"featureKey": "label"}]}}


def test_a_zip_gives_the_same_bytes_as_the_folder(wav_corpus, wav_dataset, tmp_path):
    archive = tmp_path / "Audio_Speech_Actors_01-24.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for actor in ACTORS:
            folder = os.path.join(wav_corpus, f"Actor_{actor:02d}")
            for name in sorted(os.listdir(folder)):
                z.write(os.path.join(folder, name), f"Actor_{actor:02d}/{name}")
    out = tmp_path / "out"
    convert.convert([str(archive)], str(out), workers=1, progress=False)
    with open(os.path.join(wav_dataset, schema.INFO_FILENAME)) as f:
        shards = json.load(f)["shards"]
    assert shards
    for shard in shards:
        assert (out / shard["file"]).read_bytes() == open(os.path.join(wav_dataset, shard["file"]), "rb").read()


def test_quiet_is_not_silent_but_noise_and_digital_silence_are(tmp_path):
    name = filenames.parse("03-01-03-01-01-01-05.wav")
    corpus = tmp_path / "corpus" / "Actor_05"
    synthetic.make_wav(str(corpus / "03-01-03-01-01-01-05.wav"), name, gain_db=-32.0)       # quiet speech
    noise = filenames.parse("03-01-04-01-01-01-05.wav")
    synthetic.make_wav(str(corpus / "03-01-04-01-01-01-05.wav"), noise, voice=False)        # a -70 dBFS floor
    synthetic._write_wav(str(corpus / "03-01-05-01-01-01-05.wav"), np.zeros(48000), 16000)  # digital silence
    summary = convert.convert([str(tmp_path / "corpus")], str(tmp_path / "out"), workers=1, progress=False)
    assert summary["converted"] == 1 and summary["skipped"] == {"silent": 2}
    reasons = {f["file"]: f["reason"] for f in summary["failures"]}
    assert "noise with no speech" in reasons[os.path.join("Actor_05", "03-01-04-01-01-01-05.wav")]
    assert "loudest frame -200 dBFS" in reasons[os.path.join("Actor_05", "03-01-05-01-01-01-05.wav")]


def test_a_mixed_input_says_what_it_found_and_what_it_took(synthetic_corpus, wav_corpus, tmp_path, capsys):
    mixed = tmp_path / "mixed"  # one actor's clips and recordings side by side, as a per-actor zip holds them
    shutil.copytree(os.path.join(synthetic_corpus, "Actor_01"), mixed / "Actor_01")
    mp4s = len(os.listdir(mixed / "Actor_01"))
    for name in os.listdir(os.path.join(wav_corpus, "Actor_01")):
        shutil.copy(os.path.join(wav_corpus, "Actor_01", name), mixed / "Actor_01" / name)
    wavs = CLIPS_PER_ACTOR
    summary = convert.convert([str(mixed)], str(tmp_path / "av"), workers=2, progress=False)
    err = capsys.readouterr().err
    assert f"found {mp4s} audio-video (01) and {wavs} audio-only (03) files" in err
    assert f"converting the {mp4s} audio-video ones" in err and "--modality=audio" in err
    assert summary["info"]["modality"] == "audio_video" and summary["skipped"] == {"other_modality": wavs}
    summary = convert.convert([str(mixed)], str(tmp_path / "a"), workers=2, progress=False, modality="audio")
    assert f"converting the {wavs} audio-only ones (by --modality)" in capsys.readouterr().err
    assert summary["info"]["modality"] == "audio" and summary["converted"] == wavs
    assert summary["skipped"] == {"other_modality": mp4s}


def test_the_reader_yields_audio_and_label(wav_dataset):
    import ravdess_tfrecords as rt

    builder = rt.Builder(wav_dataset)
    assert builder.info.modality == "audio" and builder.info.input_names == ("audio",)
    assert "audio only" in str(builder.info)
    frames = builder.info.audio_frames
    audio, label = next(iter(rt.load(wav_dataset, "all", batch_size=5, training=True, seed=1)))
    assert tuple(audio.shape) == (5, 24, frames, 1) and audio.dtype.name == "float32"
    assert tuple(label.shape) == (5,) and 0 <= int(min(label)) and int(max(label)) <= 6
    inputs, _, meta = next(iter(builder.as_dataset("all", batch_size=4, as_dict=True, with_metadata=True)))
    assert set(inputs) == {"audio"} and meta["clip_id"][0].numpy().decode().startswith("03-")


def test_tfds_reads_the_audio_only_directory(wav_dataset):
    tfds = pytest.importorskip("tensorflow_datasets")
    builder = tfds.builder_from_directory(wav_dataset)
    audio, label = next(iter(builder.as_dataset(split="actor01", as_supervised=True)))
    assert tuple(audio.shape) == (24, json.load(open(os.path.join(wav_dataset, schema.INFO_FILENAME)))
                                  ["audio_frames"], 1)
    assert "video" not in builder.info.features


def test_verify_accepts_the_audio_only_directory(wav_dataset):
    from ravdess_tfrecords.reading import verify

    problems, records = verify.verify(wav_dataset)
    assert problems == [] and records == len(ACTORS) * CLIPS_PER_ACTOR


def test_audio_model_trains_evaluates_and_predicts_a_wav(wav_dataset, wav_corpus, tmp_path):
    run = str(tmp_path / "run")
    actors = ["--train_actors=1,2", "--validation_actors=3", "--test_actors=4"]
    proc = helpers.fit(tmp_path, f"--data_dir={wav_dataset}", f"--model_dir={run}", "--model=audio", *actors,
                       "--epochs=2", "--batch_size=4", "--seed=1", "--noexport")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(run, "metrics.json")) as f:
        assert json.load(f)["test"]["num_examples"] == CLIPS_PER_ACTOR
    proc = subprocess.run([sys.executable, "-m", "trainers.evaluate", f"--model_dir={run}", "--subset=test"],
                          cwd=tmp_path, env=helpers.fit_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and f"({CLIPS_PER_ACTOR} examples)" in proc.stdout, proc.stderr[-2000:]
    wav = os.path.join(wav_corpus, "Actor_01", QUIET)
    proc = subprocess.run([sys.executable, "-m", "trainers.predict", f"--model_dir={run}", "--json", wav],
                          cwd=tmp_path, env=helpers.fit_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)[0]
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-4 and result["label"] in result["probabilities"]


@pytest.mark.parametrize("model", ["fusion", "video"])
def test_a_model_with_video_on_audio_only_data_is_one_error_line(wav_dataset, tmp_path, model):
    run = tmp_path / "run"
    proc = subprocess.run([*helpers.python_m_telling_tensorflow("trainers.fit"), f"--data_dir={wav_dataset}",
                           f"--model_dir={run}", f"--model={model}", "--train_actors=1,2", "--validation_actors=3",
                           "--test_actors=4"], cwd=tmp_path, env=helpers.fit_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert proc.stdout.splitlines()[-1] == "tensorflow imported: False"  # refused before TensorFlow loads
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and f"--model={model} needs" in lines[-1]
    assert "audio-only dataset" in lines[-1] and "--model=audio" in lines[-1]
    assert not run.exists()  # refused before anything is written


@pytest.mark.parametrize("standardize", ["coefficient", "sample"])
def test_predict_features_of_a_wav_equal_the_stored_example(wav_corpus, tmp_path, standardize):
    """``trainers.predict``'s preprocessing of a ``.wav`` (the saved settings, ``standardize`` included) gives
    exactly the audio the converter stored for it."""
    import ravdess_tfrecords as rt
    from ravdess_tfrecords.conversion.preprocess import Settings
    from trainers import predict_lib

    out = tmp_path / "out"
    convert.convert([os.path.join(wav_corpus, "Actor_02")], str(out), workers=1, progress=False,
                    settings=Settings(standardize=standardize))
    builder = rt.Builder(str(out))
    assert builder.info.preprocessing["standardize"] == standardize
    settings = Settings.from_dict(builder.info.preprocessing)
    for audio, _, meta in builder.as_dataset("all", batch_size=CLIPS_PER_ACTOR, with_metadata=True).take(1):
        for i, source in enumerate(meta["source"].numpy()):
            wav = os.path.join(wav_corpus, "Actor_02", source.decode())
            features, video = predict_lib.clip_features(wav, settings, builder.info.audio_frames, video=False)
            assert video is None
            np.testing.assert_array_equal(features, audio[i].numpy())
