"""Writing files so that no reader ever sees half of one, nor a mix of two conversions.

Single files: a temporary name, then a rename. A whole output: every shard and
text file is written into a staging directory inside the output, then renamed
into place with ``ravdess_info.json`` last (``publish``). The Beam pipeline
(``beam_convert``) calls ``write_actor_shards`` per actor and ``publish`` once.

Paths may be local or any ``tf.io.gfile`` path (``gs://...``, see ``storage``):
a file for an object store is written locally, then uploaded whole.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator, Mapping

from ravdess_tfrecords import schema, storage

STAGING_DIRNAME = ".staging"


# Written whole or not at all; the names stay importable from here for the converter's modules.
atomic_path = storage.atomic_path
write_text = storage.write_text


def num_shards(num_examples: int, examples_per_shard: int) -> int:
    return max(1, math.ceil(num_examples / examples_per_shard))


def write_actor_shards(output_dir: str, actor: int, records: Iterable[bytes], num_examples: int,
                       examples_per_shard: int) -> list[dict]:
    """Write one actor's serialized examples to ``ravdess-actorNN.tfrecord-*`` shards.

    Records are spread evenly, in order, over ``ceil(n / examples_per_shard)``
    shards; each shard appears under its final name only once complete.

    Returns:
      One dict per shard: ``file``, ``actor``, ``num_examples``, ``size`` (bytes), ``sha256``.

    Raises:
      OSError: the file cannot be written (TensorFlow's ``ResourceExhaustedError``
        for a full disk and ``PermissionDeniedError`` become ENOSPC / EACCES).
    """
    import tensorflow as tf

    count = num_shards(num_examples, examples_per_shard)
    bounds = [round(i * num_examples / count) for i in range(count + 1)]
    iterator = iter(records)
    shards = []
    for index in range(count):
        name = schema.shard_name(actor, index, count)
        path = os.path.join(output_dir, name)
        size = bounds[index + 1] - bounds[index]
        # TensorFlow reports a full disk as its own error class, which is not an OSError.
        with storage.tf_errors_as_os(path), atomic_path(path) as tmp:
            with tf.io.TFRecordWriter(tmp) as out:
                for _ in range(size):
                    out.write(next(iterator))
            shards.append({"file": name, "actor": actor, "num_examples": size, "size": os.path.getsize(tmp),
                           "sha256": schema.file_sha256(tmp)})
    return shards


@contextlib.contextmanager
def staging(output_dir: str) -> Iterator[str]:
    """A fresh staging directory inside ``output_dir`` (same filesystem: renames are atomic),
    removed afterwards whatever happens."""
    path = os.path.join(output_dir, STAGING_DIRNAME)
    storage.rmtree(path)  # left by a killed run
    storage.makedirs(path)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            storage.rmtree(path)


def publish(staged: str, output_dir: str, shards: list[dict], texts: Mapping[str, str]) -> None:
    """Make a staged conversion the output.

    Writes ``texts`` (``{file name: content}``, ``ravdess_info.json`` among them)
    into ``staged`` first: a full disk stops the run here, before anything
    published is touched. Then renames the shards into ``output_dir``, then the
    texts with ``ravdess_info.json`` last, then deletes the shards of an earlier
    conversion that the new info does not list. Nothing is published until
    everything is written, and the switch is a few renames; a reader that
    opens the directory during them may find new shards under the old info,
    which ``Builder`` reports (each shard's size is checked against the info)
    instead of failing mid-epoch.
    """
    for name, text in texts.items():
        write_text(os.path.join(staged, name), text)
    for shard in shards:
        storage.replace(os.path.join(staged, shard["file"]), os.path.join(output_dir, shard["file"]))
    for name in sorted(texts, key=lambda n: n == schema.INFO_FILENAME):
        storage.replace(os.path.join(staged, name), os.path.join(output_dir, name))
    listed = {s["file"] for s in shards}
    for old in storage.glob(os.path.join(output_dir, schema.shard_glob())):
        if os.path.basename(old) not in listed:
            storage.remove(old)
