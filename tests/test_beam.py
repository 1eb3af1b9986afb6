"""The conversion on Apache Beam (``convert --runner=...``): same bytes as the local pool.

Loopback only: Beam's DirectRunner (its FnApiRunner, in this process's subprocess), on a
tiny synthetic corpus given as ``file://`` URLs, so the ``tf.io.gfile`` paths are the ones read and written.
"""

from __future__ import annotations

import ast
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import pytest

from ravdess_tfrecords import schema

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def _assert_same_output(beam_dir, local_dir, file_format=schema.DEFAULT_FILE_FORMAT):
    published = sorted(n for n in os.listdir(local_dir) if not n.startswith("."))
    assert published == sorted([schema.INFO_FILENAME, schema.FAILURES_FILENAME, *schema.TFDS_FILENAMES,
                                *(schema.shard_name(actor, 0, 1, file_format) for actor in (1, 2, 3))])
    # Nothing else: no .staging left, and no .cache (a Beam run caches nothing, so it has nothing to resume from).
    assert sorted(os.listdir(beam_dir)) == published
    for name in published:
        assert (beam_dir / name).read_bytes() == (local_dir / name).read_bytes(), name
    assert b"01-01-07-01-01-01-01.mp4" in (beam_dir / schema.FAILURES_FILENAME).read_bytes()


def test_direct_runner_output_equals_local_byte_for_byte(corpus_and_local):
    pytest.importorskip("apache_beam")
    root, inputs, _ = corpus_and_local
    urls = ",".join(f"file://{path}" for path in inputs.split(","))
    # Beam's own options pass through to PipelineOptions.
    proc = _cli(f"--input={urls}", f"--output=file://{root / 'beam'}", "--runner=DirectRunner",
                "--direct_num_workers=1", "--direct_running_mode=in_memory", "--verbose")
    assert proc.returncode == 0, proc.stderr
    assert "converted 6 clips of 3 actors" in proc.stdout
    _assert_same_output(root / "beam", root / "local")
    assert "apitools not found" in proc.stderr  # --verbose hides none of Beam's log


def test_direct_runner_is_quiet_without_verbose(corpus_and_local):
    """Two worker processes, each logging at INFO to the inherited stderr: only the summary shows.
    With ``--file_format=array_record``: the local output's examples as ArrayRecord (``reformat``), byte for byte."""
    pytest.importorskip("apache_beam")
    from ravdess_tfrecords.conversion import reformat

    root, inputs, _ = corpus_and_local
    proc = _cli(f"--input={inputs}", f"--output={root / 'quiet'}", "--runner=DirectRunner",
                "--direct_num_workers=2", "--direct_running_mode=multi_processing", "--file_format=array_record")
    assert proc.returncode == 0, proc.stderr
    assert "converted 6 clips of 3 actors" in proc.stdout
    lines = (proc.stderr + proc.stdout).splitlines()
    assert not [line for line in lines if "INFO" in line or re.match(r"I\d{4} ", line)], proc.stderr
    assert "apitools" not in proc.stderr
    assert len(lines) < 15, proc.stderr
    reformat.reformat(str(root / "local"), str(root / "local_array_record"), "array_record")
    _assert_same_output(root / "quiet", root / "local_array_record", "array_record")


def test_a_beam_worker_keeps_a_clip_in_memory(corpus_and_local, tmp_path, monkeypatch):
    """No temporary file for a local clip: it works with no temporary directory at all, and its arrays
    are the ones the local pool caches and reads back."""
    pytest.importorskip("apache_beam")
    from ravdess_tfrecords import filenames
    from ravdess_tfrecords.conversion import beam_convert, convert, sources
    from ravdess_tfrecords.conversion.preprocess import Settings

    root, _, _ = corpus_and_local
    [source] = sources.discover([str(root / "in" / "Actor_01" / "01-01-01-01-01-01-01.mp4")])[0]
    name = filenames.parse(source.basename)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    step = beam_convert._Preprocess(Settings())
    step.setup()
    arrays, result = step.process((0, name, source))
    assert arrays.tag == "arrays" and result["status"] == "converted"
    assert "cache" not in result and "arrays" not in result
    actor, (_, _, mfcc, video) = arrays.value
    cached = convert.preprocess_source(source, Settings(), str(tmp_path / "clip.npz"))
    assert cached["status"] == "converted" and actor == name.actor
    local_mfcc, local_video = convert.load_cached(cached["cache"])
    assert mfcc.dtype == local_mfcc.dtype and np.array_equal(mfcc, local_mfcc)
    assert video.dtype == local_video.dtype and np.array_equal(video, local_video)


TYPOS = ["--workerz=2", "--vocal_chanels=speech"]


@pytest.fixture(scope="module")
def typo_runs(tmp_path_factory):
    """``{typo: (process, its temporary folder)}``: the runs of the test below, side by side (each imports Beam)."""
    pytest.importorskip("apache_beam")
    folders = {typo: tmp_path_factory.mktemp("typo") for typo in TYPOS}

    def run(typo):
        return _cli(f"--input={folders[typo]}", f"--output={folders[typo] / 'out'}", "--runner=DirectRunner",
                    "--direct_num_workers=1", typo)

    with concurrent.futures.ThreadPoolExecutor(len(TYPOS)) as pool:
        return {typo: (proc, folders[typo]) for typo, proc in zip(TYPOS, pool.map(run, TYPOS), strict=True)}


@pytest.mark.parametrize("typo", TYPOS)
def test_a_mistyped_flag_with_a_runner_is_an_error(typo, typo_runs):
    proc, tmp_path = typo_runs[typo]
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"error: unexpected arguments: {typo} (neither a flag of the converter "
                                        "nor a Beam pipeline option; see --help)"]
    assert not os.path.exists(tmp_path / "out")


def test_unknown_options_knows_every_beam_options_class():
    pytest.importorskip("apache_beam")
    from ravdess_tfrecords.conversion import beam_convert

    beam_args = ["--project=p", "--region=us-central1", "--temp_location=gs://b/tmp", "--job_name", "j",
                 "--direct_num_workers=2", "--flink_master=host:8081", "--spark_master_url=spark://h:7077",
                 "--setup_file=./pyproject.toml", "--save_main_session"]
    assert beam_convert.unknown_options(beam_args) == []
    assert beam_convert.unknown_options([*beam_args, "--workerz=2", "--temp_locaton=x"]) == \
        ["--workerz=2", "--temp_locaton=x"]
    with pytest.raises(ValueError, match="direct_num_workers"):
        beam_convert.unknown_options(["--direct_num_workers=two"])


def _imported_modules(path: str) -> set[str]:
    """Every module name an ``import`` or ``from ... import`` in ``path`` names, with the names it imports."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {node.module or ""} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_the_imports_between_the_pool_and_beam_run_one_way():
    package = os.path.join(REPO, "ravdess_tfrecords", "conversion")
    # convert imports neither beam_convert nor the command line that dispatches to it.
    imported = _imported_modules(os.path.join(package, "convert.py"))
    assert not [m for m in imported if {"beam_convert", "cli", "apache_beam"} & set(m.split("."))]
    assert "ravdess_tfrecords.conversion.preprocess" in imported  # the walk sees convert's imports
    assert "ravdess_tfrecords.conversion.convert" in _imported_modules(os.path.join(package, "beam_convert.py"))


def test_runner_without_beam_is_one_error_line(tmp_path):
    proc = _cli(f"--input={tmp_path}", f"--output={tmp_path / 'out'}", "--runner=DirectRunner",
                setup="sys.modules['apache_beam'] = None  # as if the [beam] extra were not installed\n")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == \
        'error: --runner needs an extra: pip install "ravdess-tfrecords[beam]" (missing: apache_beam)'
    assert not os.path.exists(tmp_path / "out")
    # Without --runner, a Beam option is no flag of the converter: the same one error line.
    proc = _cli(f"--input={tmp_path}", f"--output={tmp_path / 'out'}", "--temp_location=/tmp")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: unexpected arguments: --temp_location=/tmp (not a flag of the "
                                        "converter; see --help)"]
