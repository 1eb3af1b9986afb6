"""The conversion on Apache Beam (``convert --runner=...``): same bytes as the local pool.

Loopback only: Beam's DirectRunner (its FnApiRunner, in this process's subprocess), on a
tiny synthetic corpus given as ``file://`` URLs, so the ``tf.io.gfile`` paths are the ones read and written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from ravdess_tfrecords import schema

# Runs the CLI in a fresh interpreter, then says whether anything imported apache_beam.
_CLI = (
    "import runpy, sys\n"
    "{setup}"
    "sys.argv = ['convert', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('ravdess_tfrecords.convert', run_name='__main__')\n"
    "except SystemExit as e:\n"
    "    code = e.code\n"
    "print('apache_beam imported:', sys.modules.get('apache_beam') is not None)\n"
    "sys.exit(code)\n"
)


def _cli(*args, setup=""):
    return subprocess.run([sys.executable, "-c", _CLI.format(setup=setup), "--noprogress", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def corpus_and_local(tmp_path_factory):
    """A folder of 2 actors (one bad file), a zip of a third, and their local conversion."""
    from ravdess_tfrecords.conversion import synthetic

    root = tmp_path_factory.mktemp("beam")
    synthetic.make_corpus(str(root / "in"), actors=[1, 2, 3], clips_per_actor=2, workers=2)
    (root / "in" / "Actor_01" / "01-01-07-01-01-01-01.mp4").write_bytes(b"not a video")
    archive = root / "Video_Speech_Actor_03.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in sorted(os.listdir(root / "in" / "Actor_03")):
            z.write(root / "in" / "Actor_03" / name, f"Actor_03/{name}")
            os.unlink(root / "in" / "Actor_03" / name)
    inputs = f"{root / 'in'},{archive}"
    proc = _cli(f"--input={inputs}", f"--output={root / 'local'}", "--workers=1")
    assert proc.returncode == 0, proc.stderr
    return root, inputs, proc.stdout


def test_without_runner_nothing_imports_beam(corpus_and_local):
    _, _, stdout = corpus_and_local
    assert "converted 6 clips of 3 actors" in stdout
    assert "apache_beam imported: False" in stdout


def test_direct_runner_output_equals_local_byte_for_byte(corpus_and_local):
    pytest.importorskip("apache_beam")
    root, inputs, _ = corpus_and_local
    urls = ",".join(f"file://{path}" for path in inputs.split(","))
    # Beam's own options pass through to PipelineOptions.
    proc = _cli(f"--input={urls}", f"--output=file://{root / 'beam'}", "--runner=DirectRunner",
                "--direct_num_workers=1", "--direct_running_mode=in_memory")
    assert proc.returncode == 0, proc.stderr
    assert "converted 6 clips of 3 actors" in proc.stdout
    published = sorted(n for n in os.listdir(root / "local") if not n.startswith("."))
    assert published == sorted([schema.INFO_FILENAME, schema.FAILURES_FILENAME, *schema.TFDS_FILENAMES,
                                *(schema.shard_name(actor, 0, 1) for actor in (1, 2, 3))])
    assert sorted(n for n in os.listdir(root / "beam") if not n.startswith(".")) == published
    assert not os.path.exists(root / "beam" / ".staging")
    for name in published:
        assert (root / "beam" / name).read_bytes() == (root / "local" / name).read_bytes(), name
    assert b"01-01-07-01-01-01-01.mp4" in (root / "beam" / schema.FAILURES_FILENAME).read_bytes()


def test_runner_without_beam_is_one_error_line(tmp_path):
    proc = _cli(f"--input={tmp_path}", f"--output={tmp_path / 'out'}", "--runner=DirectRunner",
                setup="sys.modules['apache_beam'] = None  # as if the [beam] extra were not installed\n")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == \
        'error: --runner needs an extra: pip install "ravdess-tfrecords[beam]" (missing: apache_beam)'
    assert not os.path.exists(tmp_path / "out")
    # Without --runner, a flag that is neither ours nor known stays an error.
    proc = _cli(f"--input={tmp_path}", f"--output={tmp_path / 'out'}", "--temp_location=/tmp")
    assert proc.returncode != 0 and "unexpected arguments" in proc.stderr
