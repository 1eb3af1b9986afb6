"""Test helper: an ArrayRecord copy of a TFRecord shard directory (the same records, in the same order).

Reads each shard with tf.data and writes it with array_record's ``ArrayRecordWriter`` (``group_size:1``,
as tensorflow_datasets writes for random access); ``ravdess_info.json`` follows with the shard names
and sizes and ``"file_format": "array_record"``. The project's conversion tool replaces this.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf
from array_record.python import array_record_module

from ravdess_tfrecords import schema


def write(tfrecord_dir: str, out_dir: str) -> str:
    with open(os.path.join(tfrecord_dir, schema.INFO_FILENAME)) as f:
        info = json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    for shard in info["shards"]:
        name = shard["file"].replace(".tfrecord-", ".array_record-")
        writer = array_record_module.ArrayRecordWriter(os.path.join(out_dir, name), "group_size:1")
        for record in tf.data.TFRecordDataset(os.path.join(tfrecord_dir, shard["file"])).as_numpy_iterator():
            writer.write(record)
        writer.close()
        path = os.path.join(out_dir, name)
        shard.update(file=name, size=os.path.getsize(path), sha256=schema.file_sha256(path))
    info["file_format"] = "array_record"
    with open(os.path.join(out_dir, schema.INFO_FILENAME), "w") as f:
        json.dump(info, f)
    return out_dir
