"""tensorflow_datasets reads a converted directory: ``tfds.builder_from_directory(data_dir)``.

Skipped only where the ``[tfds]`` extra is not installed (``make test`` installs it).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from fake_shards import write_shards

import ravdess_tfrecords as rt
from ravdess_tfrecords import labels, schema
from ravdess_tfrecords.conversion import tfds_metadata

tfds = pytest.importorskip("tensorflow_datasets")

M = 9


def _tfds_features(audio_frames: int):
    """Every stored feature as a tfds feature, declared with tfds' own API (not from our JSON)."""
    declared = {
        "audio": tfds.features.Tensor(shape=(24, audio_frames, 1), dtype=np.float32, encoding="bytes"),
        "video": tfds.features.Tensor(shape=(6, 64, 64, 3), dtype=np.uint8, encoding="bytes"),
        "label": tfds.features.ClassLabel(names=list(labels.CLASS_NAMES)),
    }
    for name, feature in schema.FEATURES.items():
        if name not in declared:
            declared[name] = np.int64 if feature.kind == "int" else tfds.features.Text()
    return tfds.features.FeaturesDict(declared)


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds_fake"))
    info, truth = write_shards(path, actors=(1, 2, 5), audio_frames=M, song=True, shards_per_actor=2)
    return path, info, truth


def test_our_metadata_is_what_tfds_write_metadata_writes(fake_dir, tmp_path):
    """The files the converter writes without tfds equal, byte for byte, tfds' own for the same data."""
    data_dir, info, _ = fake_dir
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    for shard in info["shards"]:
        os.symlink(os.path.join(data_dir, shard["file"]), theirs / shard["file"])
    split_infos = [
        tfds.core.SplitInfo(name=schema.split_name(actor), num_bytes=sum(s["size"] for s in info["shards"]
                                                                         if s["actor"] == actor),
                            shard_lengths=[s["num_examples"] for s in info["shards"] if s["actor"] == actor])
        for actor in (1, 2, 5)
    ]
    tfds.folder_dataset.write_metadata(
        data_dir=str(theirs), features=_tfds_features(M), split_infos=split_infos, check_data=False,
        version=tfds_metadata.version(), description=tfds_metadata.description(M),
        homepage=tfds_metadata.HOMEPAGE, citation=tfds_metadata.CITATION,
        supervised_keys=(("audio", "video"), "label"))
    written = sorted(n for n in os.listdir(theirs) if "tfrecord" not in n)
    assert written == sorted(schema.TFDS_FILENAMES)
    for name in written:
        assert (theirs / name).read_bytes() == open(os.path.join(data_dir, name), "rb").read(), name


def test_splits_features_and_supervised_keys(fake_dir):
    data_dir, _, truth = fake_dir
    builder = tfds.builder_from_directory(data_dir)
    assert sorted(builder.info.splits) == ["actor01", "actor02", "actor05"]
    assert builder.info.splits["actor01"].num_examples == 10 and builder.info.splits["actor01"].num_shards == 2
    features = builder.info.features
    assert features["audio"].shape == (24, M, 1) and features["audio"].np_dtype == np.float32
    assert features["video"].shape == (6, 64, 64, 3) and features["video"].np_dtype == np.uint8
    assert features["label"].names == list(labels.CLASS_NAMES)
    assert set(features.keys()) == set(schema.FEATURES)
    # tfds' split syntax: unions and slices of actors.
    both = builder.as_dataset(split="actor01+actor05")
    assert sorted(int(a) for a in both.map(lambda ex: ex["actor"]).as_numpy_iterator()) == [1] * 10 + [5] * 10
    assert len(list(builder.as_dataset(split="actor02[:3]"))) == 3
    (audio, video), label = next(iter(builder.as_dataset(split="actor02", as_supervised=True)))
    assert audio.shape == (24, M, 1) and video.dtype == np.uint8 and label.dtype == np.int64
    ex = next(iter(builder.as_dataset(split="actor02[:1]")))
    want = truth[ex["clip_id"].numpy().decode()]
    np.testing.assert_array_equal(ex["audio"].numpy(), want["audio"])
    np.testing.assert_array_equal(ex["video"].numpy(), want["video"])
    assert ex["gender"].numpy() == b"female" and int(ex["label"]) == want["label"]


def _by_clip(examples) -> dict[bytes, dict]:
    return {ex["clip_id"]: ex for ex in examples}


def test_tfds_and_rt_load_yield_the_same_tensors_for_a_conversion(tfrecords_dir):
    """The synthetic corpus converted by the real converter: same clips, shapes, dtypes and bytes."""
    builder = tfds.builder_from_directory(tfrecords_dir)
    info = rt.Builder(tfrecords_dir).info
    assert sorted(builder.info.splits) == [schema.split_name(a) for a in info.actors]
    assert builder.info.splits["actor01+actor02"].num_examples == info.num_examples_of((1, 2))
    from_tfds = _by_clip(tfds.as_numpy(builder.as_dataset(split="+".join(builder.info.splits))))

    # augment_on="device": no augmentation, video kept uint8 as stored.
    ds = rt.load(tfrecords_dir, "all", batch_size=16, training=False, with_metadata=True, augment_on="device")
    from_rt = {}
    for (audio, video), label, meta in tfds.as_numpy(ds):
        for i, clip_id in enumerate(meta["clip_id"]):
            from_rt[clip_id] = {"audio": audio[i], "video": video[i], "label": label[i],
                                **{k: v[i] for k, v in meta.items()}}
    assert len(from_rt) == info.num_examples and sorted(from_rt) == sorted(from_tfds)
    for clip_id, ours in from_rt.items():
        theirs = from_tfds[clip_id]
        for name in ("audio", "video"):
            assert theirs[name].shape == ours[name].shape and theirs[name].dtype == ours[name].dtype, name
            assert theirs[name].tobytes() == ours[name].tobytes(), (clip_id, name)
        for name in ("label", *schema.METADATA_KEYS):
            assert theirs[name] == ours[name], (clip_id, name)


def test_without_tfds_metadata_only_tfds_complains(fake_dir, tmp_path):
    """Our reader needs only ravdess_info.json; tfds needs its own files."""
    data_dir, _, _ = fake_dir
    bare = tmp_path / "bare"
    shutil.copytree(data_dir, bare)
    for name in schema.TFDS_FILENAMES:
        os.remove(bare / name)
    assert rt.Builder(str(bare)).info.num_examples == 30
    with pytest.raises(tfds.core.dataset_info.DatasetInfoFileError, match=schema.TFDS_INFO_FILENAME):
        tfds.builder_from_directory(str(bare))
