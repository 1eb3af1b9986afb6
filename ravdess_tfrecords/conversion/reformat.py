"""Rewrite a converted directory's shards in another file format, without reconverting the corpus.

    python -m ravdess_tfrecords.reformat --data_dir=/data/ravdess-tfrecords --output=/data/ravdess-array-record

Every shard's serialized examples are copied, byte for byte and in order, into a shard of
the same name in the other format (``schema.shard_name``: ``.tfrecord-`` <-> ``.array_record-``);
``ravdess_info.json`` (each shard's new size and sha256, ``file_format``), the tfds metadata
(``tfds_metadata``, ``fileFormat``) and ``failures.jsonl`` follow. The result is what the converter
writes with ``--file_format`` for the same corpus, byte for byte (tests/test_array_record.py).
Written as the converter writes: into ``OUTPUT/.staging``, then published (``writer.publish``),
so a reader of ``OUTPUT`` sees its old contents or the new ones; ``OUTPUT`` may be ``DATA_DIR``
itself (its shards in the old format are then replaced). Each source shard is checked against
its listed sha256 first: a damaged directory is an error naming the shard, never copied on.
"""

from __future__ import annotations

import itertools
import json
import os

from absl import flags

from ravdess_tfrecords import _cli, schema, storage
from ravdess_tfrecords.conversion import tfds_metadata, writer
from ravdess_tfrecords.errors import UserError

FLAGS = flags.FLAGS


def _read_info(data_dir: str) -> dict:
    path = os.path.join(data_dir, schema.INFO_FILENAME)
    hint = schema.CONVERT_HINT.format(path=data_dir)
    try:
        info = json.loads(storage.read_text(path))
    except FileNotFoundError as e:
        raise UserError(f"{path}: missing; is {data_dir!r} a converted directory? {hint}") from e
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(info, dict) or info.get("schema_version") not in schema.READABLE_SCHEMA_VERSIONS:
        raise UserError(f"{path}: schema version {info.get('schema_version') if isinstance(info, dict) else None}, "
                        f"this library reads {schema.SCHEMA_VERSION}: {hint}")
    return info


def reformat(data_dir: str, output_dir: str, file_format: str = "array_record") -> dict:
    """Write ``data_dir``'s examples as ``file_format`` shards (``schema.FILE_FORMATS``) into ``output_dir``.

    Returns:
      The new ``ravdess_info.json`` contents.

    Raises:
      UserError: no converted directory, shards already in ``file_format``, or a source shard that
        differs from its listing (sha256, record count) or cannot be read, named.
      OSError: the output cannot be written (full disk, no permission); nothing published is touched.
    """
    data_dir, output_dir = storage.expand(data_dir), storage.expand(output_dir)
    schema.check_file_format(file_format)
    info = _read_info(data_dir)
    source_format = info.get("file_format", schema.DEFAULT_FILE_FORMAT)
    if source_format == file_format:
        raise UserError(f"{data_dir!r} holds {file_format} shards already ({schema.INFO_FILENAME}): nothing to do")
    storage.makedirs(output_dir)
    by_actor = itertools.groupby(sorted(info["shards"], key=lambda s: (s["actor"], s["file"])), lambda s: s["actor"])
    shards = []
    with writer.staging(output_dir) as staged:
        for _, group in by_actor:
            group = list(group)
            for index, shard in enumerate(group):
                shards.append(_reformat_shard(data_dir, shard, staged, index, len(group), source_format, file_format))
        texts = tfds_metadata.files(shards, info["audio_frames"], info.get("modality", schema.DEFAULT_MODALITY),
                                    file_format)
        failures = os.path.join(data_dir, schema.FAILURES_FILENAME)
        if storage.exists(failures):
            texts[schema.FAILURES_FILENAME] = storage.read_text(failures)
        new_info = {**info, "file_format": file_format, "shards": shards}
        texts[schema.INFO_FILENAME] = json.dumps(new_info, indent=2, sort_keys=True) + "\n"  # as the converter
        writer.publish(staged, output_dir, shards, texts)
    return new_info


def _reformat_shard(data_dir: str, shard: dict, staged: str, index: int, count: int, source_format: str,
                    file_format: str) -> dict:
    """One source shard, checked, rewritten into ``staged``: its ``ravdess_info.json`` entry."""
    source = os.path.join(data_dir, shard["file"])
    if not storage.exists(source):
        raise UserError(f"{source}: missing (listed in {schema.INFO_FILENAME})")
    if shard.get("sha256") and schema.file_sha256(source) != shard["sha256"]:
        raise UserError(f"{source}: sha256 differs from {schema.INFO_FILENAME} (changed or corrupt; "
                        f"python -m ravdess_tfrecords.verify --data_dir={data_dir} says more)")
    name = schema.shard_name(shard["actor"], index, count, file_format)
    try:
        written = writer.write_shard(os.path.join(staged, name), schema.read_records(source, source_format),
                                     file_format)
    except ValueError as e:  # read_records: a damaged shard
        raise UserError(f"{source}: cannot be read as {source_format} ({e})") from e
    if written["num_examples"] != shard["num_examples"]:
        raise UserError(f"{source}: {written['num_examples']} records, {schema.INFO_FILENAME} says "
                        f"{shard['num_examples']}")
    return {"file": name, "actor": shard["actor"], **written}


def _define_flags() -> None:
    """Defined by the entry point only: importing this module defines no flag."""
    flags.DEFINE_string("data_dir", None, "A directory written by ravdess_tfrecords.convert.")
    flags.DEFINE_string("output", None, "Where to write the reformatted directory (may be --data_dir itself).")
    flags.DEFINE_enum("file_format", "array_record", list(schema.FILE_FORMATS), "The shards' new file format.")
    flags.DEFINE_boolean("verbose", False, _cli.VERBOSE_HELP)


@_cli.user_errors
def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    _cli.require("data_dir", "output")
    try:
        info = reformat(FLAGS.data_dir, FLAGS.output, FLAGS.file_format)
    except OSError as e:
        if _cli.is_user_error(e):
            raise
        _cli.print_error(f"cannot write {FLAGS.output}: {e}")
        return 1
    print(f"wrote {info['num_examples']} examples in {len(info['shards'])} {FLAGS.file_format} shards "
          f"-> {storage.expand(FLAGS.output)}")
    return 0


def run() -> None:
    """Console-script entry point (``ravdess-reformat``)."""
    _cli.quiet_tensorflow()
    _cli.define_main_flags(_define_flags)
    _cli.run(main)


if __name__ == "__main__":
    run()
