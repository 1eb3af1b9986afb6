"""``rt.data_source``: ArrayRecord shards read without TensorFlow give ``rt.load``'s examples, in its order."""

from __future__ import annotations

import pickle

import fake_shards
import numpy as np
import pytest
import tensorflow as tf

import ravdess_tfrecords as rt
from ravdess_tfrecords import schema
from ravdess_tfrecords.conversion import reformat
from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.reading import augment, selection
from ravdess_tfrecords.reading import data_source as data_source_lib

SPLIT = {"train": (1, 2, 3, 4), "validation": (5,), "test": (6,)}


@pytest.fixture(scope="module")
def song_dirs(tmp_path_factory) -> tuple[str, str]:
    """(TFRecord, ArrayRecord) directories of the same 6 actors' 8 speech + 2 song clips, 2 shards each."""
    tfrecords = str(tmp_path_factory.mktemp("song"))
    fake_shards.write_shards(tfrecords, actors=range(1, 7), song=True)
    array_records = str(tmp_path_factory.mktemp("song_array_record"))
    reformat.reformat(tfrecords, array_records)
    return tfrecords, array_records


def test_interleave_order_is_tf_data_interleave_on_uneven_files():
    lengths = [3, 0, 5, 1, 2, 4, 2, 1, 3]
    counts = tf.constant(lengths, tf.int64)
    ds = tf.data.Dataset.range(len(lengths)).interleave(
        lambda f: tf.data.Dataset.range(counts[f]).map(lambda r: (f, r)), cycle_length=4, block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    assert selection.interleave_order(lengths, 4) == [(int(f), int(r)) for f, r in ds.as_numpy_iterator()]


def test_same_examples_in_the_same_order_as_load(array_record_dir, tfrecords_dir):
    # train+validation: 22 actors, more than the 16 shards tf.data reads at once.
    split = "train+validation"
    src = rt.data_source(array_record_dir, split)
    inputs, label, meta = next(iter(rt.load(tfrecords_dir, split, training=False, batch_size=1000, as_dict=True,
                                            with_metadata=True, augment_on="device")))
    assert len(src) == int(label.shape[0]) == rt.Builder(tfrecords_dir).num_examples(split) == 66
    got = src[:]
    assert [e["clip_id"] for e in got] == [c.decode() for c in meta["clip_id"].numpy()]
    for name, want in {**inputs, "label": label, **meta}.items():
        want = want.numpy()
        have = np.stack([e[name] for e in got])
        if want.dtype == object:
            want = want.astype(str)
        else:
            assert have.dtype == want.dtype, name
        np.testing.assert_array_equal(have, want, err_msg=name)
    assert set(got[0]) == {*schema.INPUT_NAMES, "label", *schema.METADATA_KEYS}
    assert got[0]["audio"].shape == schema.audio_shape(src.info.audio_frames)
    # rt.load's float video (augment_on="host") is to_unit of the uint8 one, bit for bit.
    np.testing.assert_array_equal(data_source_lib.to_unit(got[0]["video"]),
                                  augment.to_unit(tf.constant(got[0]["video"])).numpy())
    again = pickle.loads(pickle.dumps(src))  # what DataLoader / Grain workers receive
    np.testing.assert_array_equal(again[-1]["audio"], got[-1]["audio"])
    with pytest.raises(IndexError):
        src[len(src)]


def test_splits_and_filters_agree_with_the_builder(song_dirs):
    tfrecords, song_array_dir = song_dirs
    builder = rt.Builder(tfrecords)
    actors = {k: list(v) for k, v in SPLIT.items()}
    for split, kwargs in [("train", {}), ("test", {"vocal_channels": "song"}),
                          ("train+validation", {"vocal_channels": ["speech"], "intensities": "strong"})]:
        src = rt.data_source(song_array_dir, split, actors=actors, **kwargs)
        assert len(src) == builder.num_examples(split, scheme="actors", actors=actors, **kwargs) > 0, (split, kwargs)
        examples = src[:]
        assert {int(e["actor"]) for e in examples} == set(selection.splits.resolve(split, SPLIT))
        if "vocal_channels" in kwargs:
            assert {e["vocal_channel"] for e in examples} == {np.atleast_1d(kwargs["vocal_channels"])[0]}
    assert len(rt.data_source(song_array_dir, "all", num_classes=8)) == 60
    song = {"actors": actors, "vocal_channels": "song"}
    assert int(rt.data_source(song_array_dir, "test", num_classes=8, **song)[0]["label"]) == int(
        rt.data_source(song_array_dir, "test", **song)[0]["emotion"]) - 1


def test_a_tfrecord_directory_says_how_to_get_array_record_shards(tfrecords_dir):
    with pytest.raises(UserError, match=r"holds tfrecord shards.*python -m ravdess_tfrecords\.reformat "
                                        rf"--data_dir={tfrecords_dir} --output=OUT"):
        rt.data_source(tfrecords_dir, "test")


@pytest.mark.parametrize("modality", ["audio_video", "audio"])
def test_parse_decodes_what_serialize_encodes(modality):
    values = fake_shards.make_example(7, fake_shards.SONG_CLIPS[0], 12, np.random.default_rng(0))
    if modality == "audio":
        del values["video"]
    got = data_source_lib.parse(schema.serialize(values, 12, modality), 12, modality)
    assert set(got) == set(values)
    for name, want in values.items():
        np.testing.assert_array_equal(got[name], want, err_msg=name)
        assert np.asarray(got[name]).dtype == np.asarray(want).dtype, name
    assert got["audio"].flags.writeable and got["audio"].shape == (24, 12, 1)
    with pytest.raises(ValueError, match="'audio' holds 288 values, the schema"):  # another dataset's M
        data_source_lib.parse(schema.serialize(values, 12, modality), 13, modality)
    if modality == "audio":
        with pytest.raises(ValueError, match="lacks feature 'video'"):
            data_source_lib.parse(schema.serialize(values, 12, modality), 12, "audio_video")
