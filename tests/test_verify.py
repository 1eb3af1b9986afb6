import json
import os
import shutil
import subprocess
import sys

import helpers
import pytest

from ravdess_tfrecords import schema
from ravdess_tfrecords.reading import verify


@pytest.fixture
def copy_dir(tfrecords_dir, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(tfrecords_dir, out, ignore=shutil.ignore_patterns(".cache"))
    return out


def _first_shard(data_dir):
    with open(data_dir / schema.INFO_FILENAME) as f:
        return json.load(f)["shards"][0]["file"]


def test_sound_directory_verifies(copy_dir, tmp_path, monkeypatch):
    problems, records = verify.verify(str(copy_dir))
    assert problems == [] and records == 72
    monkeypatch.setenv("HOME", str(tmp_path))  # copy_dir is ~/data now
    assert verify.verify("~/data") == ([], 72)
    import ravdess_tfrecords as rt

    assert rt.Builder("~/data").data_dir == str(copy_dir)
    assert rt.load("~/data", "test", batch_size=4).cardinality() > 0  # rt.load reads ~/data too


def test_flipped_byte_is_caught_with_its_file(copy_dir):
    shard = copy_dir / _first_shard(copy_dir)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems, _ = verify.verify(str(copy_dir))
    assert any(p.startswith(shard.name) and "sha256" in p for p in problems)
    assert any(p.startswith(shard.name) and "cannot be parsed" in p for p in problems)


def test_deleted_shard_and_cli_exit_code(copy_dir):
    name = _first_shard(copy_dir)
    os.unlink(copy_dir / name)
    problems, _ = verify.verify(str(copy_dir))
    assert f"{name}: missing" in problems
    home = os.path.dirname(copy_dir)  # --data_dir=~/data: a flag's ~ is not the shell's to expand
    proc = subprocess.run([sys.executable, "-m", "ravdess_tfrecords.verify", "--data_dir=~/data"],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, HOME=home))
    assert proc.returncode == 1 and f"{name}: missing" in proc.stderr, proc.stderr
    assert f"1 problem(s) in {copy_dir}" in proc.stderr


def test_wrong_schema_version_and_missing_info(copy_dir, tmp_path):
    info_path = copy_dir / schema.INFO_FILENAME
    info = json.loads(info_path.read_text())
    info["schema_version"] = 99
    info_path.write_text(json.dumps(info))
    (problem,), _ = verify.verify(str(copy_dir))
    assert "schema version 99" in problem and "ravdess_tfrecords.convert" in problem
    (problem,), _ = verify.verify(str(tmp_path / "nowhere"))
    assert "missing" in problem and "ravdess_tfrecords.convert" in problem


def test_directory_of_an_older_converter_says_to_reconvert(copy_dir):
    """Schema 2 and before wrote our info as dataset_info.json, tensorflow_datasets' file name now."""
    info = json.loads((copy_dir / schema.INFO_FILENAME).read_text())
    (copy_dir / schema.INFO_FILENAME).unlink()
    (copy_dir / schema.OLD_INFO_FILENAME).write_text(json.dumps({**info, "schema_version": 2}))
    (problem,), _ = verify.verify(str(copy_dir))
    assert "older ravdess_tfrecords converter (schema version 2" in problem and "re-convert" in problem
    assert "ravdess_tfrecords.convert" in problem


def test_tfds_metadata_that_disagrees_with_the_shards_is_caught(copy_dir):
    tfds_path = copy_dir / schema.TFDS_INFO_FILENAME
    tfds_info = json.loads(tfds_path.read_text())
    tfds_info["splits"][0]["shardLengths"] = ["99"]
    tfds_path.write_text(json.dumps(tfds_info))
    problems, _ = verify.verify(str(copy_dir))
    assert len(problems) == 1 and problems[0].startswith(f"{schema.TFDS_INFO_FILENAME}: splits"), problems
    (copy_dir / schema.TFDS_FEATURES_FILENAME).unlink()
    problems, _ = verify.verify(str(copy_dir))
    assert problems == [f"{schema.TFDS_FEATURES_FILENAME}: missing (tensorflow_datasets cannot read the "
                        f"directory); {schema.CONVERT_HINT.format(path=copy_dir)}"]


def test_truncated_shard_is_caught_by_its_size(copy_dir):
    shard = copy_dir / _first_shard(copy_dir)
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size - 10)
    problems, _ = verify.verify(str(copy_dir))
    assert any(p.startswith(shard.name) and f"bytes, {schema.INFO_FILENAME} says" in p for p in problems), problems


def test_cli_user_error_is_one_quiet_line():
    proc = subprocess.run(helpers.python_m_telling_tensorflow("ravdess_tfrecords.verify"), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line: no traceback, no TF start-up log
    assert proc.stderr.startswith("error: --data_dir is required")
    assert proc.stdout == "tensorflow imported: False\n", proc.stdout  # refused before TensorFlow's start-up


def test_a_uri_data_dir_is_read_through_storage(copy_dir, tmp_path, monkeypatch):
    """``--data_dir=file:///...`` takes the ``gs://`` code path; os/open/glob would find nothing there."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # a path handled with os would resolve under a literal "file:" folder here
    uri = "file://" + str(copy_dir)
    assert verify.verify(uri) == ([], 72)
    name = _first_shard(copy_dir)
    os.rename(copy_dir / name, copy_dir / name.replace("-of-", "-of-x"))  # one missing, one unlisted
    problems, _ = verify.verify(uri)
    assert f"{name}: missing" in problems and f"{name.replace('-of-', '-of-x')}: not listed in " \
        f"{schema.INFO_FILENAME}" in problems, problems
    assert os.listdir(cwd) == []
