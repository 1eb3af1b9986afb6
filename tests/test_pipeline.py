"""The tf.data pipeline on shards whose every value is known (tests/fake_shards.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from fake_shards import write_shards

import ravdess_tfrecords as rt
from ravdess_tfrecords.reading import pipeline
from ravdess_tfrecords.reading.augment import AugmentConfig

M = 20


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """(data_dir, info dict, {clip_id: example}) for 24 actors x 10 clips (8 speech + 2 song)."""
    path = str(tmp_path_factory.mktemp("shards"))
    info, truth = write_shards(path, audio_frames=M, song=True)
    return path, info, truth


@pytest.fixture(scope="module")
def builder(shards):
    return rt.Builder(shards[0])


def collect(ds):
    """Concatenate a dataset of (inputs, label, metadata) batches into numpy arrays."""
    audio, video, label, meta = [], [], [], {}
    for (a, v), y, m in ds:
        audio.append(a.numpy())
        video.append(v.numpy())
        label.append(y.numpy())
        for k, t in m.items():
            meta.setdefault(k, []).append(t.numpy())
    meta = {k: np.concatenate(v) for k, v in meta.items()}
    meta["clip_id"] = np.array([c.decode() for c in meta["clip_id"]])
    return np.concatenate(audio), np.concatenate(video), np.concatenate(label), meta


def test_shapes_dtypes_and_static_batch(builder):
    train = builder.as_dataset("train", batch_size=8)
    (a_spec, v_spec), y_spec = train.element_spec
    assert a_spec.shape == (8, 24, M, 1) and a_spec.dtype == tf.float32
    assert v_spec.shape == (8, 6, 64, 64, 3) and v_spec.dtype == tf.float32
    assert y_spec.shape == (8,) and y_spec.dtype == tf.int64
    n = builder.num_examples("train")
    assert n == 170 and int(train.cardinality()) == n // 8  # drop_remainder in training
    (a, v), y = next(iter(train))
    assert 0.0 <= float(tf.reduce_min(v)) and float(tf.reduce_max(v)) <= 1.0
    assert float(tf.reduce_max(v)) > 0.9  # scaled, not left in 0..255 or squashed
    assert set(y.numpy()) <= set(range(7))
    (_, _), y = next(iter(builder.as_dataset("test", batch_size=64)))
    assert y.shape == (20,)  # evaluation keeps the remainder (2 actors x 10 clips)


@pytest.mark.parametrize("kwargs", [{}, {"scheme": "kfold", "fold": 2}, {"scheme": "luna5", "fold": 4},
                                    {"actors": {"train": [1, 2], "test": [9]}}])
def test_counts_per_split_equal_dataset_info(shards, builder, kwargs):
    _, info, truth = shards
    per_actor = info["counts"]["per_actor"]
    for split, actors in builder.split_actors(**kwargs).items():
        ds = builder.as_dataset(split, batch_size=16, training=False, with_metadata=True, **kwargs)
        _, _, _, meta = collect(ds)
        assert len(meta["clip_id"]) == sum(per_actor[str(a)] for a in actors)
        assert set(meta["actor"]) == set(actors)
        assert len(set(meta["clip_id"])) == len(meta["clip_id"])  # each example once


def test_evaluation_yields_the_stored_values_without_augmentation(shards, builder):
    _, _, truth = shards
    audio, video, label, meta = collect(builder.as_dataset("validation", batch_size=7, with_metadata=True))
    assert len(label) == 50
    for i, clip in enumerate(meta["clip_id"]):
        ex = truth[clip]
        np.testing.assert_array_equal(audio[i], ex["audio"])  # no masks at evaluation
        np.testing.assert_allclose(video[i], ex["video"].astype(np.float32) / 255.0, rtol=0, atol=1e-7)
        assert label[i] == ex["label"]
        assert meta["actor"][i] == ex["actor"] and meta["emotion"][i] == ex["emotion"]
        assert meta["vocal_channel"][i].decode() == ex["vocal_channel"]
        assert meta["audio_frames"][i] == ex["audio_frames"]


def test_evaluation_order_and_values_identical_across_two_passes(builder):
    ds = builder.as_dataset("test", batch_size=6, with_metadata=True)
    first, second = collect(ds), collect(ds)
    np.testing.assert_array_equal(first[2], second[2])
    np.testing.assert_array_equal(first[3]["clip_id"], second[3]["clip_id"])
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_training_masks_audio_with_zeros_only(shards, builder):
    _, _, truth = shards
    ds = builder.as_dataset("train", batch_size=32, seed=3, augment=AugmentConfig.only("time_mask", "freq_mask"),
                            with_metadata=True)
    audio, video, _, meta = collect(ds)
    stored = np.stack([truth[c]["audio"] for c in meta["clip_id"]])
    changed = audio != stored
    assert changed.mean() > 0.02  # masks were applied
    assert (audio[changed] == 0).all()  # and they only wrote zeros
    # Video untouched by an audio-only config.
    np.testing.assert_allclose(video, np.stack([truth[c]["video"] for c in meta["clip_id"]]) / 255.0, atol=1e-7)


def test_training_flip_flips_every_frame_of_a_clip(shards, builder):
    _, _, truth = shards
    ds = builder.as_dataset("train", batch_size=16, seed=5, augment=AugmentConfig.only("flip"), with_metadata=True)
    _, video, _, meta = collect(ds)
    flipped = 0
    for i, clip in enumerate(meta["clip_id"]):
        plain = truth[clip]["video"].astype(np.float32) / 255.0
        if np.allclose(video[i], plain[:, :, ::-1], atol=1e-7):
            flipped += 1
        else:
            np.testing.assert_allclose(video[i], plain, atol=1e-7)  # all frames or none
    assert 0.3 < flipped / len(video) < 0.7


def test_seeded_training_is_reproducible_and_reshuffles_each_epoch(builder):
    def clips(ds):
        return [c.decode() for _, _, m in ds for c in m["clip_id"].numpy()]

    def run():
        ds = builder.as_dataset("train", batch_size=10, seed=42, with_metadata=True)
        e1, e2 = clips(ds), clips(ds)
        return e1, e2, next(iter(ds))[0][1].numpy()

    a1, a2, av = run()
    b1, b2, bv = run()
    assert a1 == b1 and a2 == b2
    np.testing.assert_array_equal(av, bv)  # same augmentation too
    assert a1 != a2  # reshuffled each epoch
    # ...and shuffled at all: not the stored (actor, shard) order, nor sorted.
    stored = clips(builder.as_dataset("train", batch_size=10, training=False, with_metadata=True))
    assert sorted(a1) == sorted(stored)
    assert a1 != stored and a1 != sorted(a1)
    actors = [int(c.split("-")[-1]) for c in a1[:20]]
    assert len(set(actors)) > 5  # the first 20 clips come from many actors, not one actor's shard


def test_one_hot_and_eight_classes(shards, builder):
    _, _, truth = shards
    ds = builder.as_dataset("all", batch_size=50, num_classes=8, one_hot=True, with_metadata=True)
    _, _, y, meta = collect(ds)
    assert y.shape == (240, 8) and y.dtype == np.float32
    np.testing.assert_array_equal(y.sum(axis=1), 1.0)
    sparse = y.argmax(axis=1)
    np.testing.assert_array_equal(sparse, meta["emotion"] - 1)
    assert {0, 1} <= set(sparse)  # neutral and calm apart
    seven = collect(builder.as_dataset("all", batch_size=50, with_metadata=True))
    assert set(seven[2][seven[3]["emotion"] <= 2]) == {0}  # ...and merged by default
    (_, _), y7 = next(iter(builder.as_dataset("test", batch_size=4, one_hot=True)))
    assert y7.shape == (4, 7)


def test_vocal_channel_and_intensity_filters(builder):
    def count(**kw):
        _, _, _, meta = collect(builder.as_dataset("all", batch_size=64, with_metadata=True, **kw))
        return meta

    song = count(vocal_channels="song")
    assert len(song["clip_id"]) == 48 and set(song["vocal_channel"]) == {b"song"}
    speech_strong = count(vocal_channels=["speech"], intensities="strong")
    assert len(speech_strong["clip_id"]) == 24 * 3 and set(speech_strong["intensity"]) == {2}
    both = count(vocal_channels=("speech", "song"), intensities=[1, 2])
    assert len(both["clip_id"]) == 240
    with pytest.raises(ValueError, match="vocal_channels"):
        builder.as_dataset("all", vocal_channels="shout")
    with pytest.raises(ValueError, match="intensities"):
        builder.as_dataset("all", intensities=3)


def test_as_dict_and_cache(builder):
    """The cached pipeline yields what the uncached one does (this small split is cached by default: both explicit)."""
    ds = builder.as_dataset("test", batch_size=8, as_dict=True, cache=False)
    inputs, _ = ds.element_spec
    assert set(inputs) == {"audio", "video"}
    cached = builder.as_dataset("test", batch_size=8, as_dict=True, cache=True)
    assert _cache_output_types(ds) == [] and len(_cache_output_types(cached)) == 1  # one with a cache, one without
    batches = 0
    for (x1, y1), (x2, y2) in zip(ds, cached, strict=True):
        for key in ("audio", "video"):
            np.testing.assert_array_equal(x1[key].numpy(), x2[key].numpy())
        np.testing.assert_array_equal(y1.numpy(), y2.numpy())
        batches += 1
    assert batches == 3  # actors 23-24: 20 clips in batches of 8


def test_device_mode_yields_the_stored_uint8_video_for_every_split(shards, builder):
    _, _, truth = shards
    for kwargs in ({}, {"cache": False}):
        train = builder.as_dataset("train", batch_size=8, seed=1, augment_on="device", with_metadata=True, **kwargs)
        (a_spec, v_spec), _, _ = train.element_spec
        assert v_spec.dtype == tf.uint8 and v_spec.shape == (8, 6, 64, 64, 3) and a_spec.dtype == tf.float32
        audio, video, label, meta = collect(train)
        assert len(label) == 168  # 170 examples, drop_remainder in training
        for i, clip in enumerate(meta["clip_id"]):  # training, yet nothing augmented or scaled
            np.testing.assert_array_equal(video[i], truth[clip]["video"])
            np.testing.assert_array_equal(audio[i], truth[clip]["audio"])
            assert label[i] == truth[clip]["label"]
    (_, video), _ = next(iter(builder.as_dataset("test", batch_size=4, augment_on="device")))
    assert video.dtype == tf.uint8
    with pytest.raises(ValueError, match="augment_on='device'.*AugmentLayer"):
        builder.as_dataset("train", augment=AugmentConfig(), augment_on="device")
    with pytest.raises(ValueError, match="augment_on must be one of"):
        builder.as_dataset("train", augment_on="gpu")


def _cache_output_types(ds) -> list[list[int]]:
    """The element dtypes (``DataType`` enums) each cache stage of ``ds`` holds."""
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef.FromString(ds._as_serialized_graph().numpy())
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return [list(n.attr["output_types"].list.type) for n in nodes if n.op.startswith("CacheDataset")]


def test_the_cache_holds_decoded_tensors_so_later_epochs_skip_parsing(builder):
    cached = _cache_output_types(builder.as_dataset("train", batch_size=8, seed=0))
    assert len(cached) == 1
    assert tf.uint8.as_datatype_enum in cached[0] and tf.float32.as_datatype_enum in cached[0]
    assert tf.string.as_datatype_enum not in cached[0]  # no serialized records, no metadata strings
    assert _cache_output_types(builder.as_dataset("train", batch_size=8, seed=0, cache=False)) == []


def test_option_errors(builder):
    with pytest.raises(ValueError, match="training only"):
        builder.as_dataset("test", augment=AugmentConfig())
    with pytest.raises(ValueError, match="fewer than batch_size"):
        builder.as_dataset("train", actors={"train": [1]}, batch_size=32)
    with pytest.raises(ValueError, match="num_classes"):
        builder.as_dataset("test", num_classes=6)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        builder.as_dataset("dev")


def _moved_away(data_dir, tmp_path):
    """Move every shard out of ``data_dir`` (the builder already knows their paths)."""
    for shard in Path(data_dir).glob("ravdess-actor*"):
        shutil.move(str(shard), tmp_path / shard.name)


@pytest.mark.parametrize("kwargs, cached", [
    ({}, True),  # evaluation of a small split: cached by default
    ({"training": True, "seed": 1}, True),  # the default buffer holds the whole split
    ({"training": True, "seed": 1, "shuffle_buffer": 8}, False),  # a cache would freeze the file order
    ({"cache": False}, False),
])
def test_small_splits_are_cached_in_memory_by_default(shards, tmp_path, kwargs, cached):
    data_dir = tmp_path / "data"
    shutil.copytree(shards[0], data_dir)
    ds = rt.Builder(str(data_dir)).as_dataset("test", batch_size=4, with_metadata=True, **kwargs)
    first = collect(ds)
    _moved_away(data_dir, tmp_path)  # a second epoch now has only the cache to read
    if cached:
        second = collect(ds)
        assert sorted(second[3]["clip_id"]) == sorted(first[3]["clip_id"])
        if not kwargs:
            np.testing.assert_array_equal(second[1], first[1])
    else:
        with pytest.raises(tf.errors.NotFoundError):
            collect(ds)


def test_autocache_stays_off_for_big_shards(shards, monkeypatch):
    files = rt.Builder(shards[0]).files("train")
    assert pipeline.autocache(files, None, None)
    monkeypatch.setattr(pipeline, "AUTOCACHE_MAX_BYTES", 1000)
    assert not pipeline.autocache(files, None, None)


@pytest.mark.parametrize("mode, stages", [("auto", 0), ("always", 1), ("never", 0)])
def test_the_trainers_cache_modes_reach_the_pipeline(shards, monkeypatch, mode, stages):
    """``--cache=auto`` leaves it to ``autocache`` (here: too big), ``always`` caches, ``never`` does not."""
    from trainers import config as config_lib
    from trainers import data as data_lib

    monkeypatch.setattr(pipeline, "AUTOCACHE_MAX_BYTES", 1000)  # shards over the budget: auto does not cache
    config = config_lib.TrainConfig(shards[0], "unused", model="video", augment=(), batch_size=8, cache=mode)
    for ds in data_lib.make_datasets(config, ("video",)):
        assert len(_cache_output_types(ds)) == stages
    assert config_lib.TrainConfig("d", "m").cache == "auto"
    # config.json of an older version held a bool; True cached always, False never.
    old = dict(config.to_json(), cache=True)
    assert config_lib.TrainConfig.from_json(old).cache == "always"
    assert config_lib.TrainConfig.from_json(dict(old, cache=False)).cache == "never"
    with pytest.raises(ValueError, match="cache must be one of auto, always, never"):
        config_lib.TrainConfig("d", "m", cache="sometimes")


@pytest.mark.parametrize("cache", [True, False])
def test_an_epoch_stream_is_keyed_on_seed_and_epoch_not_on_its_start(builder, cache):
    """``initial_epoch=k``: epochs k, k+1, ... of whole batches, each shuffled and augmented by (seed, epoch)
    alone: the stream started at epoch 1 is the stream started at 0 from its second epoch on."""
    steps = builder.num_examples("train") // 8  # 170 clips: 21 batches, 2 clips left out per epoch

    def stream(initial_epoch, epochs):
        ds = builder.as_dataset("train", batch_size=8, seed=42, with_metadata=True, cache=cache,
                                initial_epoch=initial_epoch)
        return [(m["clip_id"].numpy().tolist(), v.numpy()) for (_, v), _, m in ds.take(epochs * steps)]

    from_0, from_1 = stream(0, 2), stream(1, 1)
    assert [c for c, _ in from_0[steps:]] == [c for c, _ in from_1]  # the same order...
    for (_, v0), (_, v1) in zip(from_0[steps:], from_1, strict=True):
        np.testing.assert_array_equal(v0, v1)  # ...and the same augmentation
    epoch_0, epoch_1 = ([c for clips, _ in part for c in clips] for part in (from_0[:steps], from_1))
    assert epoch_0 != epoch_1 and len(set(epoch_0)) == len(epoch_0) == steps * 8  # reshuffled, each clip once
    assert not np.array_equal(from_0[0][1], from_1[0][1])
    with pytest.raises(ValueError, match="drop_remainder"):
        builder.as_dataset("train", batch_size=8, initial_epoch=0, drop_remainder=False)
