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
import errno
import itertools
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


# tensorflow_datasets' ArrayRecord writer options (``ArrayRecordFileAdapter``): one record per chunk, so
# reading one example by index decodes only it. Same records -> byte-identical file (tests/test_array_record.py).
ARRAY_RECORD_OPTIONS = "group_size:1"


def write_shard(path: str, records: Iterable[bytes], file_format: str = schema.DEFAULT_FILE_FORMAT) -> dict:
    """Write serialized examples to one shard file at ``path`` in ``file_format`` (``schema.FILE_FORMATS``),
    which appears under its name only once complete.

    Returns:
      ``num_examples``, ``size`` (bytes) and ``sha256`` of the file.

    Raises:
      OSError: the file cannot be written (TensorFlow's ``ResourceExhaustedError`` and
        ``PermissionDeniedError``, and ArrayRecord's errors, become ENOSPC / EACCES / ...).
    """
    count = 0
    with atomic_path(path) as tmp:
        if schema.check_file_format(file_format) == "tfrecord":
            import tensorflow as tf

            # TensorFlow reports a full disk as its own error class, which is not an OSError.
            with storage.tf_errors_as_os(path), tf.io.TFRecordWriter(tmp) as out:
                for record in records:
                    out.write(record)
                    count += 1
        else:
            from array_record.python import array_record_module

            with _array_record_errors_as_os(path):
                out = array_record_module.ArrayRecordWriter(tmp, ARRAY_RECORD_OPTIONS)
                try:
                    for record in records:
                        out.write(record)
                        count += 1
                finally:
                    out.close()
        return {"num_examples": count, "size": os.path.getsize(tmp), "sha256": schema.file_sha256(tmp)}


@contextlib.contextmanager
def _array_record_errors_as_os(path: str) -> Iterator[None]:
    """ArrayRecord (riegeli) reports a failed open or write as a ``RuntimeError`` whose text holds the
    system's message (``write() failed: No space left on device; ...``): an ``OSError`` with that errno."""
    try:
        yield
    except RuntimeError as e:
        text = str(e)
        code = next((c for c in sorted(errno.errorcode) if os.strerror(c) in text), None)
        if code is None:
            raise
        raise OSError(code, text.splitlines()[0], path) from e


def write_actor_shards(output_dir: str, actor: int, records: Iterable[bytes], num_examples: int,
                       examples_per_shard: int, file_format: str = schema.DEFAULT_FILE_FORMAT) -> list[dict]:
    """Write one actor's serialized examples to ``ravdess-actorNN.<file_format>-*`` shards (``write_shard``).

    Records are spread evenly, in order, over ``ceil(n / examples_per_shard)``
    shards; each shard appears under its final name only once complete.

    Returns:
      One dict per shard: ``file``, ``actor``, ``num_examples``, ``size`` (bytes), ``sha256``.

    Raises:
      OSError: the file cannot be written (``write_shard``).
    """
    count = num_shards(num_examples, examples_per_shard)
    bounds = [round(i * num_examples / count) for i in range(count + 1)]
    iterator = iter(records)
    shards = []
    for index in range(count):
        name = schema.shard_name(actor, index, count, file_format)
        size = bounds[index + 1] - bounds[index]
        written = write_shard(os.path.join(output_dir, name), itertools.islice(iterator, size), file_format)
        shards.append({"file": name, "actor": actor, **written})
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
    # Either format: a conversion to ArrayRecord replaces a TFRecord one, and back.
    earlier = [storage.glob(os.path.join(output_dir, schema.shard_glob(None, f))) for f in schema.FILE_FORMATS]
    for old in itertools.chain.from_iterable(earlier):
        if os.path.basename(old) not in listed:
            storage.remove(old)
