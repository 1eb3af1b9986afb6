"""End-to-end conversion with real ffmpeg, librosa, dlib and TFRecords."""

import glob
import json
import os
import shutil
import subprocess
import zipfile

import helpers
import numpy as np
import pytest
import tensorflow as tf

from ravdess_tfrecords import filenames, labels, schema
from ravdess_tfrecords.conversion import convert, synthetic
from tests.conftest import CLIPS_PER_ACTOR


def _info(data_dir):
    with open(os.path.join(data_dir, schema.INFO_FILENAME)) as f:
        return json.load(f)


def _parse_all(data_dir, files):
    info = _info(data_dir)
    ds = tf.data.TFRecordDataset([os.path.join(data_dir, f) for f in files]).batch(1000)
    batch = next(iter(ds))
    return schema.decode(tf.io.parse_example(batch, schema.parse_spec()), info["audio_frames"])


def test_one_shard_set_per_actor_with_counts(tfrecords_dir):
    info = _info(tfrecords_dir)
    assert info["schema_version"] == schema.SCHEMA_VERSION
    assert info["num_examples"] == 24 * CLIPS_PER_ACTOR
    assert info["counts"]["per_actor"] == {str(a): CLIPS_PER_ACTOR for a in range(1, 25)}
    assert sum(info["counts"]["per_label"].values()) == info["num_examples"]
    assert info["class_names"] == list(labels.CLASS_NAMES)
    assert info["summary"] == {"found": 72, "converted": 72, "skipped": {}, "cut": 0, "finer_face_search": 0}
    assert info["cut"] == [] and info["finer_face_search"] == []
    for actor in range(1, 25):
        on_disk = sorted(os.path.basename(p) for p in glob.glob(os.path.join(tfrecords_dir, schema.shard_glob(actor))))
        listed = [s["file"] for s in info["shards"] if s["actor"] == actor]
        assert on_disk == listed == [schema.shard_name(actor, 0, 1)]
    for shard in info["shards"]:
        assert schema.file_sha256(os.path.join(tfrecords_dir, shard["file"])) == shard["sha256"]
        assert os.path.getsize(os.path.join(tfrecords_dir, shard["file"])) == shard["size"]
        assert sum(1 for _ in tf.data.TFRecordDataset(os.path.join(tfrecords_dir, shard["file"]))) == 3


def test_parsed_examples_have_schema_shapes_and_labels(tfrecords_dir):
    info = _info(tfrecords_dir)
    m = info["audio_frames"]
    ex = _parse_all(tfrecords_dir, [s["file"] for s in info["shards"]])
    n = info["num_examples"]
    assert ex["audio"].dtype == tf.float32 and tuple(ex["audio"].shape) == (n, 24, m, 1)
    assert ex["video"].dtype == tf.uint8 and tuple(ex["video"].shape) == (n, 6, 64, 64, 3)
    true_frames = ex["audio_frames"].numpy()
    assert abs(true_frames.mean() - m) <= 0.5  # M is the corpus mean
    for i in range(n):
        clip_id = ex["clip_id"][i].numpy().decode()
        name = filenames.parse(clip_id)
        assert ex["label"][i] == name.label() and ex["emotion"][i] == name.emotion
        assert ex["actor"][i] == name.actor and ex["gender"][i].numpy().decode() == name.gender
        assert ex["source"][i].numpy().decode() == f"{clip_id}.mp4"
        a = ex["audio"][i, :, :, 0].numpy()
        pad = m - true_frames[i]
        if pad > 0:  # pre-padded: zeros first, the standardized real frames after
            assert np.all(a[:, :pad] == 0) and np.any(a[:, pad] != 0)
            assert abs(a[:, pad:].mean()) < 1e-3 and abs(a[:, pad:].std() - 1) < 1e-2
    assert ex["video"].numpy().std() > 10  # real pictures, not blank crops


def _small_corpus(root, clip_ids, **kwargs):
    for clip_id in clip_ids:
        name = filenames.parse(clip_id)
        synthetic.make_clip(os.path.join(root, f"Actor_{name.actor:02d}", f"{clip_id}.mp4"), name, **kwargs)


def test_bad_files_are_skipped_with_reasons_and_rest_converts(tmp_path):
    corpus = tmp_path / "in"
    good = ["01-01-03-01-01-01-01", "01-01-05-02-01-01-02"]
    _small_corpus(str(corpus), good)
    _small_corpus(str(corpus), ["01-01-04-01-01-01-01"], voice=False)
    (corpus / "Actor_01" / "01-01-06-01-01-01-01.mp4").write_bytes(b"\x00not a video at all" * 100)
    shutil.copy(corpus / "Actor_01" / f"{good[0]}.mp4", corpus / "Actor_01" / "02-01-03-01-01-01-01.mp4")
    shutil.copy(corpus / "Actor_01" / f"{good[0]}.mp4", corpus / "Actor_01" / "my holiday.mp4")
    (corpus / "notes.txt").write_text("not media, ignored")
    out = tmp_path / "out"
    summary = convert.convert([str(corpus)], str(out), workers=2, progress=False)
    assert summary["converted"] == 2 and summary["found"] == 6
    assert summary["skipped"] == {"bad_name": 1, "other_modality": 1, "silent": 1, "unreadable": 1}
    lines = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    by_code = {f["code"]: f for f in lines}
    assert by_code["silent"]["file"] == os.path.join("Actor_01", "01-01-04-01-01-01-01.mp4")
    assert "silent" in by_code["silent"]["reason"]
    assert by_code["unreadable"]["file"].endswith("01-01-06-01-01-01-01.mp4")
    assert "ffmpeg" in by_code["unreadable"]["reason"]
    assert "'my holiday.mp4' is not a RAVDESS name" in by_code["bad_name"]["reason"]
    assert _info(str(out))["failures"] == lines
    ids = _parse_all(str(out), [s["file"] for s in _info(str(out))["shards"]])["clip_id"].numpy()
    assert sorted(i.decode() for i in ids) == good
    assert not glob.glob(str(out / "**" / "*.tmp-*"), recursive=True)


def test_zero_converted_is_an_error_exit_naming_the_file(tmp_path):
    corpus = tmp_path / "in"
    corpus.mkdir()
    (corpus / "01-01-06-01-01-01-01.mp4").write_bytes(b"garbage")
    proc = subprocess.run(
        [*helpers.python_m_telling_tensorflow("ravdess_tfrecords.convert"), f"--input={corpus}",
         f"--output={tmp_path / 'out'}", "--workers=1", "--noprogress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    # Pass 1 needs no TensorFlow: a run that ends there never pays its start-up (~5 s of CPU).
    assert proc.stdout.splitlines()[-1] == "tensorflow imported: False", proc.stdout
    assert "skipped 01-01-06-01-01-01-01.mp4: ffmpeg cannot read it" in proc.stderr
    assert "error: no clip converted" in proc.stderr
    # What docs/converting.md says a failed run leaves: failures.jsonl (every file's reason), the cache, nothing else.
    assert sorted(os.listdir(tmp_path / "out")) == [".cache", schema.FAILURES_FILENAME]
    (failure,) = [json.loads(line) for line in (tmp_path / "out" / schema.FAILURES_FILENAME).read_text().splitlines()]
    assert failure["file"] == "01-01-06-01-01-01-01.mp4" and failure["code"] == "unreadable"


def test_deterministic_across_workers_and_zip_input(tmp_path):
    corpus = tmp_path / "in"
    _small_corpus(str(corpus), ["01-01-03-01-01-01-01", "01-01-07-02-02-01-01", "01-01-02-01-01-02-02"])
    archive = tmp_path / "Video_Speech_Actor_01.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(glob.glob(str(corpus / "*" / "*.mp4"))):
            z.write(path, os.path.relpath(path, corpus))
    runs = {
        "w1": convert.convert([str(corpus)], str(tmp_path / "w1"), workers=1, progress=False),
        "w2": convert.convert([str(corpus)], str(tmp_path / "w2"), workers=2, progress=False),
        "zip": convert.convert([str(archive)], str(tmp_path / "zip"), workers=2, progress=False),
    }
    assert {k: r["converted"] for k, r in runs.items()} == {"w1": 3, "w2": 3, "zip": 3}
    names = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "w1" / "ravdess-*")))
    assert names == [schema.shard_name(1, 0, 1), schema.shard_name(2, 0, 1)]
    for name in [*names, schema.INFO_FILENAME, *schema.TFDS_FILENAMES]:
        data = {k: (tmp_path / k / name).read_bytes() for k in runs}
        assert data["w1"] == data["w2"] == data["zip"], name


def test_song_is_kept_only_when_asked(tmp_path):
    corpus = tmp_path / "in"
    _small_corpus(str(corpus), ["01-01-03-01-01-01-03", "01-02-03-01-01-01-03"])
    speech = convert.convert([str(corpus)], str(tmp_path / "a"), progress=False)
    both = convert.convert([str(corpus)], str(tmp_path / "b"), vocal_channels=("speech", "song"), progress=False)
    assert speech["converted"] == 1 and speech["skipped"] == {"filtered": 1}
    assert both["converted"] == 2 and both["skipped"] == {}
    with pytest.raises(ValueError, match="unknown vocal channel"):
        convert.convert([str(corpus)], str(tmp_path / "c"), vocal_channels=("singing",))


def test_the_local_pool_refuses_a_remote_output_before_any_work(tmp_path):
    # The pool caches on local disk; a bucket is Beam's job. Refused before anything is read or written.
    with pytest.raises(ValueError, match="--runner"):
        convert.convert([str(tmp_path / "nowhere")], "gs://bucket/ravdess-tfrecords")
