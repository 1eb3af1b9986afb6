"""Builder / DatasetInfo / load: reading ravdess_info.json, splits, clear errors, and real converted data."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from fake_shards import write_shards

import ravdess_tfrecords as rt
from ravdess_tfrecords import labels, schema
from ravdess_tfrecords.reading import augment, splits

M = 16


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("builder"))
    write_shards(path, audio_frames=M)
    return path


def _copy(src, dst, edit=None, drop_files=()):
    """Copy a shard directory, optionally editing its ravdess_info.json or deleting files."""
    shutil.copytree(src, dst)
    for name in drop_files:
        os.remove(os.path.join(dst, name))
    if edit:
        path = os.path.join(dst, schema.INFO_FILENAME)
        with open(path) as f:
            info = json.load(f)
        edit(info)
        with open(path, "w") as f:
            json.dump(info, f)
    return str(dst)


def test_info_is_read_from_ravdess_info_json(data_dir):
    b = rt.Builder(data_dir)
    info = b.info
    assert isinstance(info, rt.DatasetInfo)
    assert info.class_names == labels.CLASS_NAMES and info.num_classes == 7
    assert info.audio_frames == M and info.audio_shape == (24, M, 1) and info.video_shape == (6, 64, 64, 3)
    assert info.num_examples == 24 * 8 and info.actors == tuple(range(1, 25))
    assert info.counts["per_actor"]["5"] == 8 and info.preprocessing["n_mfcc"] == 24
    assert len(info.shards) == 48 and info.examples_per_actor()[3] == 8
    assert b.class_names(8) == labels.CLASS_NAMES_8
    assert "192 examples" in repr(b)


def test_split_actors_and_files_follow_the_scheme(data_dir):
    b = rt.Builder(data_dir)
    assert b.split_actors() == splits.SPEAKER
    assert b.split_actors("luna5", fold=3)["test"] == (8, 17, 21, 23, 24)
    assert b.split_actors("kfold", folds=4, fold=3)["test"] == tuple(range(19, 25))
    files = b.files("test")
    assert [os.path.basename(f) for f in files] == [schema.shard_name(a, i, 2) for a in (23, 24) for i in (0, 1)]
    assert b.num_examples("train+validation") == 22 * 8
    assert b.num_examples("test", scheme="sixfold", fold=5) == 4 * 8


def test_load_is_the_builder(data_dir):
    ds = rt.load(data_dir, "validation", batch_size=5, with_metadata=True)
    ref = rt.Builder(data_dir).as_dataset("validation", batch_size=5, with_metadata=True)
    got = np.concatenate([m["clip_id"].numpy() for _, _, m in ds])
    want = np.concatenate([m["clip_id"].numpy() for _, _, m in ref])
    np.testing.assert_array_equal(got, want)
    assert len(got) == 40


def test_missing_data_dir_says_what_to_run(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"nowhere.*does not exist.*python -m ravdess_tfrecords\.convert"):
        rt.load(missing)


def test_dir_without_info_or_shards_says_what_to_run(tmp_path, data_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"has no shards and no ravdess_info\.json.*--output="):
        rt.Builder(str(empty))
    only_shards = _copy(data_dir, tmp_path / "noinfo", drop_files=[schema.INFO_FILENAME])
    with pytest.raises(FileNotFoundError, match=r"has 48 shard files but no ravdess_info\.json.*make tfrecords"):
        rt.Builder(only_shards)
    no_shards = _copy(data_dir, tmp_path / "noshards", edit=lambda i: i.update(shards=[]))
    with pytest.raises(FileNotFoundError, match=r"no shards.*ravdess_tfrecords\.convert"):
        rt.Builder(no_shards)
    gone = schema.shard_name(7, 1, 2)
    lost = _copy(data_dir, tmp_path / "lost", drop_files=[gone])
    with pytest.raises(FileNotFoundError, match=rf"lacks shards listed.*{gone}"):
        rt.Builder(lost)


def test_a_shard_whose_size_differs_from_the_info_is_a_clear_error(tmp_path, data_dir):
    """A truncated shard, or one replaced by a conversion publishing right now: caught when the
    Builder opens the directory, not as a parse error mid-epoch."""
    damaged = _copy(data_dir, tmp_path / "damaged")
    name = schema.shard_name(5, 0, 2)
    path = os.path.join(damaged, name)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 100)
    with pytest.raises(ValueError, match=rf"size differs.*{name}.*python -m ravdess_tfrecords\.convert"):
        rt.Builder(damaged)


def test_wrong_schema_version_names_both_versions_and_the_command(tmp_path, data_dir):
    old = _copy(data_dir, tmp_path / "old", edit=lambda i: i.update(schema_version=schema.SCHEMA_VERSION + 1))
    with pytest.raises(ValueError) as err:
        rt.load(old)
    message = str(err.value)
    assert f"schema version {schema.SCHEMA_VERSION + 1}" in message
    assert f"reads schema version {schema.SCHEMA_VERSION}" in message
    assert "python -m ravdess_tfrecords.convert" in message


def test_a_directory_of_an_older_converter_says_to_reconvert(tmp_path, data_dir):
    """Schema 2 and before: our info was dataset_info.json (tensorflow_datasets' file name now)."""
    old = _copy(data_dir, tmp_path / "v2", edit=lambda i: i.update(schema_version=2))
    os.replace(os.path.join(old, schema.INFO_FILENAME), os.path.join(old, schema.OLD_INFO_FILENAME))
    for name in schema.TFDS_FILENAMES[1:]:
        os.remove(os.path.join(old, name))
    with pytest.raises(ValueError) as err:
        rt.Builder(old)
    message = str(err.value)
    assert "older ravdess_tfrecords converter (schema version 2, its info in dataset_info.json)" in message
    assert f"reads schema version {schema.SCHEMA_VERSION} (ravdess_info.json): re-convert" in message
    assert "python -m ravdess_tfrecords.convert" in message
    # tensorflow_datasets' dataset_info.json alone (no ravdess_info.json) is not taken for an old directory.
    tfds_only = _copy(data_dir, tmp_path / "tfds_only", drop_files=[schema.INFO_FILENAME])
    with pytest.raises(FileNotFoundError, match=r"has 48 shard files but no ravdess_info\.json"):
        rt.Builder(tfds_only)


def test_unknown_actor_and_presets_on_a_partial_conversion(tmp_path):
    few = str(tmp_path / "few")
    write_shards(few, actors=range(1, 7), audio_frames=M)
    b = rt.Builder(few)
    with pytest.raises(ValueError, match=r"no shards: 9, 30"):
        b.as_dataset("train", actors={"train": [1, 9], "test": [30]})
    with pytest.raises(ValueError, match=r"no shards: 7, 8, 9, .*24"):
        b.as_dataset("train")  # the speaker preset needs actors 7..24
    with pytest.raises(ValueError, match=r"actor 2 in train and test"):
        b.split_actors(actors={"train": [1, 2], "test": [2]})
    # kfold is cut from the actors present.
    folds = [b.split_actors("kfold", folds=3, fold=i)["test"] for i in range(3)]
    assert folds == [(1, 2), (3, 4), (5, 6)]
    with pytest.raises(ValueError, match="converted with \\['speech'\\] only"):
        b.as_dataset("all", vocal_channels="song")


@pytest.mark.slow
def test_end_to_end_on_converted_synthetic_corpus(request):
    """The lead's tfrecords_dir: the synthetic corpus converted by the real converter."""
    try:
        data_dir = request.getfixturevalue("tfrecords_dir")
    except pytest.FixtureLookupError:
        pytest.skip("tests/conftest.py has no tfrecords_dir fixture")
    with open(os.path.join(data_dir, schema.INFO_FILENAME)) as f:
        raw = json.load(f)
    b = rt.Builder(data_dir)
    m = raw["audio_frames"]
    for split, actors in b.split_actors().items():
        n = 0
        for (audio, video), label, meta in b.as_dataset(split, batch_size=16, training=False, with_metadata=True):
            assert audio.dtype == tf.float32 and audio.shape[1:] == (24, m, 1)
            assert video.dtype == tf.float32 and video.shape[1:] == (6, 64, 64, 3)
            assert label.dtype == tf.int64
            v = video.numpy()
            assert 0.0 <= v.min() and v.max() <= 1.0 and v.std() > 0.01  # real faces, not blank
            a = audio.numpy()
            assert np.isfinite(a).all() and np.abs(a).max() < 50
            # Real MFCC frames are never all zero: the time masks' real_frames is the stored count.
            np.testing.assert_array_equal(augment.real_frames(audio).numpy(),
                                          np.minimum(meta["audio_frames"].numpy(), m))
            assert set(meta["actor"].numpy()) <= set(actors)
            np.testing.assert_array_equal(label.numpy(), [labels.label_from_emotion(int(e))
                                                          for e in meta["emotion"].numpy()])
            n += int(label.shape[0])
        assert n == sum(raw["counts"]["per_actor"].get(str(a), 0) for a in actors)
    (audio, video), label = next(iter(b.as_dataset("train", batch_size=8, seed=0)))
    assert audio.shape == (8, 24, m, 1) and video.shape == (8, 6, 64, 64, 3) and label.shape == (8,)
    assert 0.0 <= float(tf.reduce_min(video)) and float(tf.reduce_max(video)) <= 1.0


def test_a_vocal_channel_filter_that_keeps_everything_keeps_the_known_length(data_dir):
    b = rt.Builder(data_dir)  # converted with speech only
    ds = b.as_dataset("test", batch_size=4, vocal_channels=["speech"])
    assert int(ds.cardinality()) == 4  # 16 examples, no filter stage, length known
    assert sum(int(y.shape[0]) for _, y in ds) == 16


def test_info_prints_a_short_summary_not_every_shard(data_dir):
    info = rt.Builder(data_dir).info
    assert len(info.shards) == 48  # the record lists every shard (the converter's with its sha256)...
    text, line = str(info), repr(info)
    for shown in (text, line):
        assert not any(s.file in shown or (s.sha256 and s.sha256 in shown) for s in info.shards)  # ...the summary none
        assert data_dir in shown and f"{info.num_examples} examples" in shown and f"{len(info.shards)} shards" in shown
    assert "\n" not in line and line.startswith("DatasetInfo(")
    assert len(text.splitlines()) <= 6
    assert f"from 24 actors (1-24) in {len(info.shards)} shards" in text
    assert f"audio (24, {M}, 1) float32, video (6, 64, 64, 3) uint8" in text
    assert "7 classes: neutral/calm, happy, sad, angry, fearful, disgust, surprised" in text
    per_label = info.counts["per_label"]
    assert f"examples per label: neutral/calm {per_label['0']}, happy {per_label['1']}," in text
    assert f"schema version {schema.SCHEMA_VERSION}" in text
