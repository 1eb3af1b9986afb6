"""Check a converted directory against its ``ravdess_info.json``.

    python -m ravdess_tfrecords.verify --data_dir=/data/ravdess-tfrecords

Re-hashes every shard (TFRecord or ArrayRecord: ``file_format`` in ``ravdess_info.json``),
parses every record against the schema, and checks
counts, labels, shapes and value ranges, and that the tensorflow_datasets
metadata (``dataset_info.json``) lists the same splits and shards. Prints every
problem with the file it is in; exit code 1 if there is any. ``--data_dir`` may be
any ``tf.io.gfile`` path (``gs://``, ``file://``): every file goes through
``storage``. Reading half: needs only TensorFlow (and array-record for ArrayRecord shards).
"""

from __future__ import annotations

import collections
import importlib.util
import itertools
import json
import os
import sys
from collections.abc import Iterator

import numpy as np
from absl import app, flags

from ravdess_tfrecords import _cli, labels, schema, storage

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Defined by the entry point only: importing this module defines no flag."""
    flags.DEFINE_string("data_dir", None, "Directory written by ravdess_tfrecords.convert.")
    flags.DEFINE_boolean("verbose", False, _cli.VERBOSE_HELP)


_BATCH = 256  # records parsed per tf.io.parse_example


def _batches(records: Iterator[bytes]) -> Iterator[list[bytes]]:
    batch = []
    for record in records:
        batch.append(record)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_records(path: str, shard: dict, frames: int, seen: collections.Counter,
                   modality: str = schema.DEFAULT_MODALITY, file_format: str = schema.DEFAULT_FILE_FORMAT) -> list[str]:
    import tensorflow as tf

    problems, count = [], 0
    name = shard["file"]
    try:
        for batch in _batches(schema.read_records(path, file_format)):
            ex = schema.decode(tf.io.parse_example(batch, schema.parse_spec(modality)), frames)
            n = len(batch)
            count += n
            audio = ex["audio"].numpy()
            video = ex["video"].numpy() if "video" in ex else None
            label, emotion, actor = ex["label"].numpy(), ex["emotion"].numpy(), ex["actor"].numpy()
            if not np.isfinite(audio).all():
                problems.append(f"{name}: audio holds NaN or inf")
            if np.any((emotion < 1) | (emotion > 8)):
                problems.append(f"{name}: emotion code outside 1..8")
            elif np.any(label != [labels.label_from_emotion(int(e)) for e in emotion]):
                problems.append(f"{name}: label does not match the emotion code")
            if np.any(actor != shard["actor"]):
                problems.append(f"{name}: holds actors {sorted(set(actor.tolist()))}, expected {shard['actor']}")
            if np.any(ex["audio_frames"].numpy() <= 0):
                problems.append(f"{name}: audio_frames must be positive")
            if video is not None and video.reshape(n, -1).max(axis=1).min() == 0:
                problems.append(f"{name}: an all-black face stack")
            seen.update(label.tolist())
    except ValueError as e:  # read_records: a damaged file
        problems.append(f"{name}: cannot be parsed after {count} records ({file_format}: {e})")
        return problems
    except tf.errors.InvalidArgumentError as e:  # parse_example: not our examples
        problems.append(f"{name}: cannot be parsed after {count} records ({e.message.splitlines()[0]})")
        return problems
    if count != shard["num_examples"]:
        problems.append(f"{name}: {count} records, {schema.INFO_FILENAME} says {shard['num_examples']}")
    return problems


def verify(data_dir: str) -> tuple[list[str], int]:
    """All problems found in ``data_dir`` (empty when sound) and the number of records checked."""
    data_dir = storage.expand(data_dir)  # --data_dir=~/x reaches us unexpanded
    info_path = os.path.join(data_dir, schema.INFO_FILENAME)
    if not storage.exists(info_path):
        old = _read_json(os.path.join(data_dir, schema.OLD_INFO_FILENAME))
        return [schema.old_info_message(data_dir, old)
                or f"{info_path}: missing; {schema.CONVERT_HINT.format(path=data_dir)}"], 0
    try:
        info = json.loads(storage.read_text(info_path))
    except (OSError, json.JSONDecodeError) as e:
        return [f"{info_path}: unreadable ({e})"], 0
    if info.get("schema_version") not in schema.READABLE_SCHEMA_VERSIONS:
        return [f"{info_path}: schema version {info.get('schema_version')}, this library reads "
                f"{schema.SCHEMA_VERSION}; {schema.CONVERT_HINT.format(path=data_dir)}"], 0
    file_format = info.get("file_format", schema.DEFAULT_FILE_FORMAT)
    if file_format not in schema.FILE_FORMATS:
        return [f"{info_path}: unknown file_format {file_format!r} (this library knows "
                f"{', '.join(schema.FILE_FORMATS)})"], 0
    if file_format == "array_record" and importlib.util.find_spec("array_record") is None:
        return [f"{data_dir} holds ArrayRecord shards: reading them needs array-record (pip install array-record)"], 0
    problems, seen = [], collections.Counter()
    listed = set()
    for shard in info["shards"]:
        listed.add(shard["file"])
        path = os.path.join(data_dir, shard["file"])
        if not storage.exists(path):
            problems.append(f"{shard['file']}: missing")
            continue
        size = storage.size_and_mtime(path)[0]
        if "size" in shard and size != shard["size"]:
            problems.append(f"{shard['file']}: {size} bytes, {schema.INFO_FILENAME} says {shard['size']}")
        if schema.file_sha256(path) != shard["sha256"]:
            problems.append(f"{shard['file']}: sha256 differs from {schema.INFO_FILENAME} (changed or corrupt)")
        problems += _check_records(path, shard, info["audio_frames"], seen,
                                   info.get("modality", schema.DEFAULT_MODALITY), file_format)
    found = [storage.glob(os.path.join(data_dir, schema.shard_glob(None, f))) for f in schema.FILE_FORMATS]
    for extra in sorted(itertools.chain.from_iterable(found)):
        if os.path.basename(extra) not in listed:
            problems.append(f"{os.path.basename(extra)}: not listed in {schema.INFO_FILENAME}")
    per_actor = collections.Counter()
    for shard in info["shards"]:
        per_actor[str(shard["actor"])] += shard["num_examples"]
    if dict(per_actor) != info["counts"]["per_actor"]:
        problems.append(f"{schema.INFO_FILENAME}: counts.per_actor disagrees with the shard list")
    if sum(per_actor.values()) != info["num_examples"]:
        problems.append(f"{schema.INFO_FILENAME}: num_examples disagrees with the shard list")
    if not problems and {str(k): v for k, v in sorted(seen.items())} != info["counts"]["per_label"]:
        problems.append(f"{schema.INFO_FILENAME}: counts.per_label disagrees with the records")
    problems += _check_tfds_splits(data_dir, info["shards"], file_format)
    return problems, sum(seen.values())


def _read_json(path: str) -> object:
    """The parsed JSON at ``path``; None when absent or unreadable."""
    try:
        return json.loads(storage.read_text(path))
    except (OSError, ValueError):
        return None


def _check_tfds_splits(data_dir: str, shards: list[dict], file_format: str = schema.DEFAULT_FILE_FORMAT) -> list[str]:
    """tensorflow_datasets' splits (one per actor, ``actorNN``) and file format against our shard list's."""
    missing = [n for n in schema.TFDS_FILENAMES if not storage.exists(os.path.join(data_dir, n))]
    if missing:
        return [f"{', '.join(missing)}: missing (tensorflow_datasets cannot read the directory); "
                f"{schema.CONVERT_HINT.format(path=data_dir)}"]
    tfds_info = _read_json(os.path.join(data_dir, schema.TFDS_INFO_FILENAME))
    try:
        theirs = {s["name"]: [int(n) for n in s["shardLengths"]] for s in tfds_info["splits"]}
    except (TypeError, KeyError, ValueError):
        return [f"{schema.TFDS_INFO_FILENAME}: unreadable or without splits"]
    ours: dict[str, list[int]] = {}
    for shard in sorted(shards, key=lambda s: (s["actor"], s["file"])):
        ours.setdefault(schema.split_name(shard["actor"]), []).append(shard["num_examples"])
    if theirs != ours:
        return [f"{schema.TFDS_INFO_FILENAME}: splits {theirs} disagree with the shards of {schema.INFO_FILENAME}"]
    if tfds_info.get("fileFormat", schema.DEFAULT_FILE_FORMAT) != file_format:
        return [f"{schema.TFDS_INFO_FILENAME}: fileFormat {tfds_info.get('fileFormat')!r}, "
                f"{schema.INFO_FILENAME} says {file_format!r}"]
    return []


@_cli.user_errors
def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    _cli.require("data_dir")
    _cli.quiet_tensorflow()  # the flags are good: now TensorFlow (without its start-up lines)
    data_dir = storage.expand(FLAGS.data_dir)
    problems, records = verify(data_dir)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in {data_dir}", file=sys.stderr)
        return 1
    print(f"OK: {records} records in {data_dir} match {schema.INFO_FILENAME}")
    return 0


def run() -> None:
    """Console-script entry point (``ravdess-verify``)."""
    _cli.define_main_flags(_define_flags)
    _cli.run(main)


if __name__ == "__main__":
    run()
