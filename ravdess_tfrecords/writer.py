"""Writing files so that no reader ever sees half of one: temp name, then rename."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator

from ravdess_tfrecords import schema


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any error the temporary file is removed and ``path`` is untouched.
    """
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def num_shards(num_examples: int, examples_per_shard: int) -> int:
    return max(1, math.ceil(num_examples / examples_per_shard))


def write_actor_shards(output_dir: str, actor: int, records: Iterable[bytes], num_examples: int,
                       examples_per_shard: int) -> list[dict]:
    """Write one actor's serialized examples to ``ravdess-actorNN.tfrecord-*`` shards.

    Records are spread evenly, in order, over ``ceil(n / examples_per_shard)``
    shards; each shard appears under its final name only once complete.

    Returns:
      One dict per shard: ``file``, ``actor``, ``num_examples``, ``sha256``.
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
        with atomic_path(path) as tmp:
            with tf.io.TFRecordWriter(tmp) as out:
                for _ in range(size):
                    out.write(next(iterator))
        shards.append({"file": name, "actor": actor, "num_examples": size, "sha256": schema.file_sha256(path)})
    return shards
