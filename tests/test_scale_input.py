"""Input that scales: filtered epoch sizes, the data's info read once per run, two workers' shares of an epoch."""

from __future__ import annotations

import warnings

import fake_shards
import pytest
import tensorflow as tf
from tensorflow.python.data.experimental.ops import distribute as tf_distribute

import ravdess_tfrecords
from ravdess_tfrecords import storage
from ravdess_tfrecords.reading import builder as builder_lib
from trainers import data as data_lib
from trainers import train_lib

SPLIT = {"train": (1, 2, 3, 4), "validation": (5,), "test": (6,)}


@pytest.fixture(scope="module")
def song_dir(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("song"))
    fake_shards.write_shards(out, actors=range(1, 7), song=True)  # 8 speech + 2 song clips per actor
    return out


def _count(ds: tf.data.Dataset) -> int:
    return int(sum(label.shape[0] for _, label in ds))


def test_num_examples_counts_after_the_vocal_channel_filter(song_dir):
    builder = ravdess_tfrecords.Builder(song_dir)
    kwargs = {"actors": {k: list(v) for k, v in SPLIT.items()}}
    assert builder.num_examples("train", **kwargs) == 40
    speech = builder.num_examples("train", vocal_channels=["speech"], **kwargs)
    assert speech == 32
    assert builder.num_examples("train", vocal_channels="song", **kwargs) == 8
    # What the pipeline yields with the same filter: an "epoch" of steps is one pass.
    ds = builder.as_dataset("train", training=False, vocal_channels=["speech"], batch_size=7, scheme="actors",
                            actors=kwargs["actors"])
    assert _count(ds) == speech


def test_a_run_reads_the_info_once_and_stats_each_shard_once(song_dir, tmp_path, monkeypatch):
    reads, stats = [], []
    read, stat, size_and_mtime = builder_lib.DatasetInfo.read.__func__, tf.io.gfile.stat, storage.size_and_mtime
    monkeypatch.setattr(builder_lib.DatasetInfo, "read",
                        classmethod(lambda cls, d: reads.append(d) or read(cls, d)))
    # Both ways a shard can be stat'ed: the info's check (through storage) and tf.data's autocache.
    monkeypatch.setattr(tf.io.gfile, "stat", lambda path: stats.append(path) or stat(path))
    monkeypatch.setattr(storage, "size_and_mtime", lambda path: stats.append(path) or size_and_mtime(path))
    config = train_lib.TrainConfig(song_dir, str(tmp_path / "run"), split="actors", actors=SPLIT, model="audio",
                                   epochs=1, batch_size=8, augment=(), export=False, verbose=0,
                                   vocal_channels=("speech",))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = train_lib.run(config)
    assert metrics["test"]["num_examples"] == 8  # speech only
    # The filtered validation set's length is unknown to Keras, which warned at the end of the first epoch that
    # the input "ran out of data": one pass is what it evaluates, so the run keeps that to itself.
    assert not [w for w in caught if "ran out of data" in str(w.message)]
    assert len(reads) == 1
    seen = list(stats)
    assert len(seen) == len(ravdess_tfrecords.Builder(song_dir).info.shards) == len(set(seen))
    # trainers.evaluate re-evaluates on the same clips: the run's vocal-channel filter applies.
    again = train_lib.evaluate_saved(config.model_dir)
    assert again["num_examples"] == 8 and again["confusion_matrix"] == metrics["test"]["confusion_matrix"]


def _audio_keys(ds: tf.data.Dataset) -> list[bytes]:
    return [a.tobytes() for (audio, _), _ in ds for a in audio.numpy()]


@pytest.mark.parametrize("augment_on", ["device", "host"])
def test_two_workers_split_every_epoch_by_batch(song_dir, tmp_path, augment_on):
    # No cache: in one process both rewritten copies would share one in-memory cache resource
    # (two real workers are two processes).
    config = train_lib.TrainConfig(song_dir, str(tmp_path / "run"), split="actors", actors=SPLIT, batch_size=4,
                                   augment_on=augment_on, seed=1, cache=False)
    builder = ravdess_tfrecords.Builder(song_dir)

    def epoch(ds: tf.data.Dataset, steps: int) -> list[bytes]:
        return sorted(_audio_keys(ds.take(steps)))

    # What each of two workers reads, with tf.data's own auto-shard rewrite (by batch): every other global
    # batch of the same keyed stream. Together, one epoch is the whole epoch (host mode: augmented alike,
    # the same seeds on both workers) and, unaugmented, every training clip once.
    train, _, _ = data_lib.make_datasets(config, ("audio", "video"), builder)
    sharded, _, steps = data_lib.scale_out(train, train, config, num_examples=40, num_workers=2)
    assert steps == 10
    per_worker = [epoch(tf_distribute._AutoShardDataset(sharded, 2, index), 5) for index in range(2)]
    assert [len(keys) for keys in per_worker] == [20, 20] and not set(per_worker[0]) & set(per_worker[1])
    again, _, _ = data_lib.make_datasets(config, ("audio", "video"), builder)  # as the other worker builds it
    assert sorted(per_worker[0] + per_worker[1]) == epoch(again, steps)
    whole = sorted(_audio_keys(builder.as_dataset("train", scheme="actors", actors=SPLIT, training=False,
                                                  batch_size=8)))
    if augment_on == "device":  # the pipeline does not augment: the stored clips, each once
        assert sorted(per_worker[0] + per_worker[1]) == whole
    else:  # host augmentation masks the audio: the training clips are not as stored
        assert len(set(per_worker[0] + per_worker[1]) & set(whole)) < len(whole)
