"""ArrayRecord shards: the converter's ``--file_format=array_record``, ``ravdess_tfrecords.reformat``,
``verify`` on them, ``rt.load`` refusing them; the examples are the TFRecord conversion's, byte for byte."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import ravdess_tfrecords as rt
from ravdess_tfrecords import schema
from ravdess_tfrecords.conversion import reformat
from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.reading import verify


def _info(data_dir) -> dict:
    with open(os.path.join(data_dir, schema.INFO_FILENAME)) as f:
        return json.load(f)


def _files(data_dir) -> dict[str, bytes]:
    """Every published file (no cache) -> its bytes."""
    return {n: open(os.path.join(data_dir, n), "rb").read() for n in sorted(os.listdir(data_dir))
            if not n.startswith(".")}


def test_converter_writes_the_tfrecord_examples_as_array_record(tfrecords_dir, array_record_dir):
    ours, theirs = _info(array_record_dir), _info(tfrecords_dir)
    assert ours["file_format"] == "array_record" and theirs["file_format"] == "tfrecord"
    assert [s["file"] for s in ours["shards"]] == [
        schema.shard_name(s["actor"], 0, 1, "array_record") for s in theirs["shards"]]
    on_disk = sorted(n for n in os.listdir(array_record_dir) if ".array_record-" in n)
    assert on_disk == sorted(s["file"] for s in ours["shards"]) and not any("tfrecord" in n for n in on_disk)
    for mine, other in zip(ours["shards"], theirs["shards"], strict=True):
        records = list(schema.read_records(os.path.join(array_record_dir, mine["file"]), "array_record"))
        assert records == list(schema.read_records(os.path.join(tfrecords_dir, other["file"])))  # bytes, in order
        assert len(records) == mine["num_examples"] == other["num_examples"]
        assert schema.file_sha256(os.path.join(array_record_dir, mine["file"])) == mine["sha256"]
    same = lambda info: {k: v for k, v in info.items() if k not in ("shards", "file_format")}  # noqa: E731
    assert same(ours) == same(theirs)
    tfds_info = json.loads(open(os.path.join(array_record_dir, schema.TFDS_INFO_FILENAME)).read())
    assert tfds_info["fileFormat"] == "array_record"


def test_reformat_is_the_conversion_byte_for_byte_and_back(tfrecords_dir, array_record_dir, tmp_path):
    """TFRecord -> ArrayRecord equals the converter's ArrayRecord output, every file (so the writer is
    deterministic too); and back -> the TFRecord conversion's files."""
    out = tmp_path / "ar"
    info = reformat.reformat(tfrecords_dir, str(out))  # in process: the command line is a thin absl wrapper
    assert info["num_examples"] == 72 and info["file_format"] == "array_record"
    assert _files(out) == _files(array_record_dir)
    back = tmp_path / "tf"
    reformat.reformat(str(out), str(back), "tfrecord")
    assert _files(back) == _files(tfrecords_dir)
    with pytest.raises(UserError, match="holds tfrecord shards already"):
        reformat.reformat(str(back), str(tmp_path / "again"), "tfrecord")


def test_reformat_refuses_a_damaged_shard_and_publishes_nothing(tfrecords_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tfrecords_dir, data, ignore=shutil.ignore_patterns(".cache"))
    shard = data / _info(data)["shards"][3]["file"]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(UserError, match=f"{shard.name}: sha256 differs"):
        reformat.reformat(str(data), str(tmp_path / "out"), "array_record")
    assert os.listdir(tmp_path / "out") == []  # staging removed, nothing published


def test_verify_checks_array_record_shards(array_record_dir, tmp_path):
    assert verify.verify(array_record_dir) == ([], 72)
    data = tmp_path / "data"
    shutil.copytree(array_record_dir, data, ignore=shutil.ignore_patterns(".cache"))
    shard = data / _info(data)["shards"][0]["file"]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 4] ^= 0xFF
    shard.write_bytes(bytes(raw))
    problems, _ = verify.verify(str(data))
    assert any(p.startswith(shard.name) and "sha256" in p for p in problems), problems
    assert any(p.startswith(shard.name) and "cannot be parsed" in p for p in problems), problems


def test_load_refuses_array_record_with_one_line_naming_the_way_out(array_record_dir):
    builder = rt.Builder(array_record_dir)  # the info reads; only the tf.data reading refuses
    assert builder.info.file_format == "array_record" and builder.num_examples("train") > 0
    for read in (lambda: rt.load(array_record_dir, "test"), lambda: builder.label_counts("train"),
                 lambda: builder.num_examples("train", intensities=2)):
        with pytest.raises(UserError, match="holds array_record shards") as caught:
            read()
        assert "ravdess_tfrecords.data_source" in str(caught.value) and "--file_format=tfrecord" in str(caught.value)


def test_tfds_reads_the_array_record_directory(array_record_dir):
    tfds = pytest.importorskip("tensorflow_datasets")
    builder = tfds.builder_from_directory(array_record_dir)
    assert builder.info.file_format == tfds.core.file_adapters.FileFormat.ARRAY_RECORD
    source = builder.as_data_source(split="actor02")
    assert len(source) == 3
    first = next(iter(schema.read_records(rt.Builder(array_record_dir).info.files([2])[0], "array_record")))
    import tensorflow as tf

    frames = _info(array_record_dir)["audio_frames"]
    ours = schema.decode(tf.io.parse_single_example(first, schema.parse_spec()), frames)
    np.testing.assert_array_equal(source[0]["audio"], ours["audio"].numpy())
    np.testing.assert_array_equal(source[0]["video"], ours["video"].numpy())
    assert source[0]["clip_id"] == ours["clip_id"].numpy()


def test_a_failed_array_record_write_is_an_oserror_with_its_errno(tmp_path):
    """ArrayRecord reports a failed open as a RuntimeError: the converter's machine-error check needs the errno."""
    import errno

    from ravdess_tfrecords.conversion import writer

    with pytest.raises(OSError) as caught:
        writer.write_shard(str(tmp_path / "absent" / "x.array_record"), [b"x"], "array_record")
    assert caught.value.errno == errno.ENOENT
