"""Issue 16, converter half: a native crash costs one clip; paths, errors and exit codes as users type them.

A worker's death is real here: the converter's test hook (``RAVDESS_CONVERT_TEST_CRASH``, see
``conversion/convert.py``) makes the worker that preprocesses a named clip SIGKILL itself, as the
out-of-memory killer would, so the pool really loses a process. The machine's errors are real too:
a lowered RLIMIT_NOFILE, a read-only tmpfs, a user who may not write.
"""

import concurrent.futures
import contextlib
import functools
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile

import helpers
import pytest

from ravdess_tfrecords import filenames, schema
from ravdess_tfrecords.conversion import convert, synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _clip(root, clip_id, **kwargs):
    name = filenames.parse(clip_id)
    path = os.path.join(root, f"Actor_{name.actor:02d}", f"{clip_id}.mp4")
    synthetic.make_clip(path, name, **{"duration": 2.0, **kwargs})
    return path


def _env(**extra):
    return {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]), **extra}


def _cli(*args, env=None, **popen):
    proc = subprocess.run([sys.executable, "-m", "ravdess_tfrecords.convert", "--noprogress", *args],
                          capture_output=True, text=True, timeout=300, env=env or _env(), **popen)
    return proc.returncode, proc.stdout, proc.stderr


def _error_line(stderr):
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def _failures(out):
    return [json.loads(line) for line in (out / schema.FAILURES_FILENAME).read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{name: Future}`` of this module's independent converter runs, started together (``helpers.background``:
    one after the other, their imports took most of the module's time); each test waits for its own."""
    tmp = tmp_path_factory.mktemp
    corpus = concurrent.futures.Future()  # (folders, zips): made by the "folders" job, converted by both

    def two_forms(kind):
        if kind == "folders":
            try:
                corpus.set_result(_folders_and_zips_corpus(tmp("two_forms")))
            except BaseException as e:
                corpus.set_exception(e)
                raise
        folders, zips = corpus.result()
        out = folders.parent / f"out-{kind}"
        return out, _cli(f"--input={folders if kind == 'folders' else zips}", f"--output={out}", "--workers=2",
                         "--max_clip_seconds=2.5", "--finer_search_width=0")

    jobs = {
        "crash-2": functools.partial(_first_crash_run, tmp("crash"), 2),
        "crash-1": functools.partial(_first_crash_run, tmp("crash"), 1),
        "folders": functools.partial(two_forms, "folders"),
        "zips": functools.partial(two_forms, "zips"),
        "tilde": functools.partial(_tilde_run, tmp("tilde")),
        "nofile-0": functools.partial(_no_file_handles_run, tmp("nofile"), 0),
        "nofile-4": functools.partial(_no_file_handles_run, tmp("nofile"), 4),
        "no_media": functools.partial(_no_media_run, tmp("no_media")),
    }
    with helpers.background(jobs, at_once=4) as futures:
        yield futures


# ---- 1. a worker's native crash costs its clip only --------------------------------------------

CRASHING = "01-01-05-01-01-01-02"


def _first_crash_run(tmp_path, workers):
    corpus, out = tmp_path / "in", tmp_path / "out"
    for clip_id in ("01-01-03-01-01-01-01", "01-01-04-01-01-01-03"):
        _clip(str(corpus), clip_id)
    # The crashing clip comes from a zip: its temporary copy must not outlive the dead worker.
    member = _clip(str(tmp_path / "zipped"), CRASHING)
    with zipfile.ZipFile(corpus / "Video_Speech_Actor_02.zip", "w") as z:
        z.write(member, f"Actor_02/{CRASHING}.mp4")
    env = _env(RAVDESS_CONVERT_TEST_CRASH=f"{CRASHING}.mp4")
    return corpus, out, env, _cli(f"--input={corpus}", f"--output={out}", f"--workers={workers}", env=env)


@pytest.mark.parametrize("workers", [2, 1])
def test_a_worker_killed_on_a_clip_costs_only_that_clip(runs, workers):
    corpus, out, env, (code, stdout, stderr) = runs[f"crash-{workers}"].result()
    assert code == 0 and "Traceback" not in stderr, stderr
    [failure] = _failures(out)
    assert failure["file"] == f"Actor_02/{CRASHING}.mp4" and failure["code"] == "crashed", failure
    assert "killed by SIGKILL (signal 9)" in failure["reason"], failure
    info = json.loads((out / schema.INFO_FILENAME).read_text())
    assert info["summary"]["converted"] == 2 and info["counts"]["per_actor"] == {"1": 1, "3": 1}
    assert "crashed 1 (the worker process died on it" in stdout, stdout
    assert not list((out / ".cache").glob("ravdess-member-*")) and not list(out.glob("**/.*.tmp-*"))
    record = json.loads((out / ".cache" / convert.CRASHES_FILENAME).read_text())
    assert [(r["file"], r["crashes"]) for r in record.values()] == [(f"Actor_02/{CRASHING}.mp4", 1)]
    if workers == 2:
        return
    # A rerun tries it again (the out-of-memory killer may not strike twice); a second crash is the last.
    # This rerun is stopped by Ctrl-C while a new clip, after the crashing one, is in work: its crash is
    # counted all the same (crashes.json was once saved only by a run whose pass 1 ended normally).
    _clip(str(corpus / "zz"), "01-01-03-01-01-01-04")  # "zz/...": after the zip's clip in the run's order
    proc = subprocess.Popen([sys.executable, "-m", "ravdess_tfrecords.convert", "--noprogress", f"--input={corpus}",
                             f"--output={out}", "--workers=1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(f"skipped Video_Speech_Actor_02.zip:Actor_02/{CRASHING}.mp4"):
            proc.send_signal(signal.SIGINT)  # the next clip's fresh worker is starting
            break
    stdout, stderr = proc.communicate(timeout=300)
    stderr = "".join(seen) + stderr
    assert proc.returncode == 130 and "interrupted: finished clips are cached" in stderr, stdout + stderr
    assert "not tried again" not in stderr, stderr
    record = json.loads((out / ".cache" / convert.CRASHES_FILENAME).read_text())
    assert [(r["file"], r["crashes"]) for r in record.values()] == [(f"Actor_02/{CRASHING}.mp4", 2)]
    cached = len(list((out / ".cache").glob("*.npz")))  # 3 if the new clip's worker had started and finished it
    assert cached in (2, 3), cached
    code, stdout, stderr = _cli(f"--input={corpus}", f"--output={out}", "--workers=1", env=env)
    assert code == 0 and f"({cached} reused from an earlier run)" in stdout, stderr
    [failure] = _failures(out)
    assert failure["code"] == "crashed" and "in 2 runs" in failure["reason"], failure
    assert "1 clips were not tried again" in stdout and convert.CRASHES_FILENAME in stdout, stdout
    # Without the crash (a fixed library), deleting the record retries it, and it converts.
    (out / ".cache" / convert.CRASHES_FILENAME).unlink()
    code, stdout, stderr = _cli(f"--input={corpus}", f"--output={out}", "--workers=1")
    assert code == 0 and "converted 4 clips" in stdout and not _failures(out), stdout + stderr
    assert not (out / ".cache" / convert.CRASHES_FILENAME).exists()


# ---- 2. "~" in the path flags -------------------------------------------------------------------


def _tilde_run(tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    _clip(str(home / "corpus"), "01-01-03-01-01-01-01")
    return home, cwd, _cli("--input=~/corpus", "--output=~/out", "--workers=1", env=_env(HOME=str(home)), cwd=cwd)


def test_tilde_in_path_flags_is_the_home_folder(runs):
    home, cwd, (code, stdout, stderr) = runs["tilde"].result()
    assert code == 0, stderr
    assert (home / "out" / schema.INFO_FILENAME).exists() and f"-> {home / 'out'}" in stdout, stdout
    assert not (cwd / "~").exists() and os.listdir(cwd) == []


# ---- 3. folders and zips give the same output --------------------------------------------------


def _tree(root):
    return {os.path.relpath(os.path.join(d, n), root): open(os.path.join(d, n), "rb").read()
            for d, dirs, names in os.walk(root) if ".cache" not in os.path.relpath(d, root).split(os.sep)
            for n in names}


def _folders_and_zips_corpus(tmp_path):
    folders, zips = tmp_path / "folders", tmp_path / "zips"
    _clip(str(folders), "01-01-03-01-01-01-01")
    _clip(str(folders), "01-01-05-01-01-01-01", duration=3.2)           # cut at 2.5 s
    _clip(str(folders), "01-01-04-01-01-01-02")
    _clip(str(folders), "01-01-06-01-01-01-02", face=False)             # no_face
    zips.mkdir()
    for actor in ("Actor_01", "Actor_02"):  # as the zenodo download: Video_Speech_Actor_01.zip holds Actor_01/...
        with zipfile.ZipFile(zips / f"Video_Speech_{actor}.zip", "w") as z:
            for name in sorted(os.listdir(folders / actor)):
                z.write(folders / actor / name, f"{actor}/{name}")
    return folders, zips


def test_folders_and_zips_give_identical_output(runs):
    outs = {}
    for kind in ("folders", "zips"):
        outs[kind], (code, stdout, stderr) = runs[kind].result()
        assert code == 0, stderr
        assert "cut 1 clips longer than 2.5 s to their start: Actor_01/01-01-05-01-01-01-01.mp4" in stdout, stdout
    info = json.loads((outs["zips"] / schema.INFO_FILENAME).read_text())
    assert [c["file"] for c in info["cut"]] == ["Actor_01/01-01-05-01-01-01-01.mp4"]
    assert [(f["file"], f["code"]) for f in info["failures"]] == [("Actor_02/01-01-06-01-01-01-02.mp4", "no_face")]
    folder_tree, zip_tree = _tree(outs["folders"]), _tree(outs["zips"])
    assert schema.FAILURES_FILENAME in zip_tree and "dataset_info.json" in zip_tree
    assert sorted(folder_tree) == sorted(zip_tree)
    for name in folder_tree:
        assert folder_tree[name] == zip_tree[name], name


# ---- 4. the machine's errors, each for real: exit code exactly 1 --------------------------------

_MACHINE = "This is the machine, not the clips"


def _no_file_handles_run(tmp_path, spare):
    corpus, out = tmp_path / "in", tmp_path / "out"
    _clip(str(corpus), "01-01-03-01-01-01-01")
    program = (
        "import os, resource, sys\n"
        "from ravdess_tfrecords import _cli\n"
        "from ravdess_tfrecords.conversion import cli, convert\n"
        "_cli.quiet_tensorflow()\n"
        "n = len(os.listdir('/proc/self/fd'))\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, (n + {spare}, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        f"sys.argv = ['ravdess-convert', '--input={corpus}', '--output={out}', '--workers=2', '--noprogress']\n"
        "cli.run()\n"
    )
    return out, subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300,
                               env=_env())


@pytest.mark.parametrize("spare", [0, 4])
def test_no_file_handles_is_exit_1(runs, spare):
    """EMFILE: the converter's RLIMIT_NOFILE lowered to what it has open (+ ``spare``) after its imports."""
    out, proc = runs[f"nofile-{spare}"].result()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    line = _error_line(proc.stderr)
    assert "Too many open files" in line and _MACHINE in line, line
    assert not (out / schema.INFO_FILENAME).exists()


@pytest.fixture
def mount_point(tmp_path):
    with helpers.tmpfs(tmp_path, "8m") as disk:
        yield disk


def test_read_only_output_is_exit_1(tmp_path, mount_point):
    """EROFS: a published output whose file system is then remounted read-only."""
    corpus, out = tmp_path / "in", mount_point / "out"
    _clip(str(corpus), "01-01-03-01-01-01-01")
    assert convert.convert([str(corpus)], str(out), progress=False)["converted"] == 1
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    proc = subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only ({proc.stderr.strip()})")
    _clip(str(corpus), "01-01-04-01-01-01-02")
    code, _, stderr = _cli(f"--input={corpus}", f"--output={out}", "--workers=1")
    assert code == 1 and "Traceback" not in stderr, stderr
    assert "Read-only file system" in _error_line(stderr) and str(out) in _error_line(stderr)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def _restricted_user():
    """How to run a command as a user whose file permissions are checked, and that user's uid.

    ``nobody`` where it can run this Python (its interpreter may lie under root's private home);
    else root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (``setpriv``), which obeys the
    permission bits as any owner does. None where neither works.
    """
    if os.geteuid() != 0:
        return None
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        nobody = None
    if nobody is not None:
        def as_nobody():
            os.setgid(nobody.pw_gid)
            os.setgroups([])
            os.setuid(nobody.pw_uid)

        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run([sys.executable, "-c", "pass"], preexec_fn=as_nobody, cwd="/",
                              capture_output=True, timeout=60).returncode == 0:
                return {"preexec_fn": as_nobody}, [], nobody.pw_uid, 0
    setpriv = shutil.which("setpriv")
    if setpriv and nobody is not None:
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True,
                              timeout=60).returncode == 0:
                return {}, prefix, 0, nobody.pw_uid
    return None


def test_unwritable_output_for_its_user_is_exit_1():
    """EACCES: the converter may write its cache but not the output folder around it, so pass 1
    converts and pass 2 (the staging folder) is refused."""
    user = _restricted_user()
    if user is None:
        pytest.skip("needs root, and a user 'nobody' or setpriv, to run the converter as a user who may not write")
    popen, prefix, runner_uid, other_uid = user
    root = tempfile.mkdtemp(prefix="ravdess-eacces-")  # under /tmp: pytest's own tmp folders are private
    try:
        os.chmod(root, 0o755)
        corpus, out = os.path.join(root, "in"), os.path.join(root, "out")
        _clip(corpus, "01-01-03-01-01-01-01")
        for d, _, names in os.walk(corpus):
            os.chmod(d, 0o755)
            for n in names:
                os.chmod(os.path.join(d, n), 0o644)
        os.makedirs(os.path.join(out, ".cache"))
        os.chmod(out, 0o755)
        os.chown(out, other_uid, -1)  # the output: someone else's, read-only to the converter
        os.chown(os.path.join(out, ".cache"), runner_uid, -1)  # its cache: the converter's
        proc = subprocess.run([*prefix, sys.executable, "-m", "ravdess_tfrecords.convert", "--noprogress",
                               f"--input={corpus}", f"--output={out}", "--workers=1"], cwd=root,
                              env=_env(HOME=root), capture_output=True, text=True, timeout=300, **popen)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        line = _error_line(proc.stderr)
        assert "Permission denied" in line and _MACHINE in line and "skipped" not in proc.stderr, line
        assert len([n for n in os.listdir(os.path.join(out, ".cache")) if n.endswith(".npz")]) == 1
        assert sorted(os.listdir(out)) == [".cache"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- 5. nothing found: say what was searched ----------------------------------------------------


def _no_media_run(tmp_path):
    corpus, out = tmp_path / "in", tmp_path / "out"
    (corpus / "Actor_01").mkdir(parents=True)
    (corpus / "Actor_01" / "notes.txt").write_text("not a clip")
    return corpus, out, _cli(f"--input={corpus}", f"--output={out}", "--workers=1")


def test_an_input_without_media_says_what_was_searched(runs):
    corpus, out, (code, _, stderr) = runs["no_media"].result()
    assert code == 2 and "Traceback" not in stderr, stderr  # a user error: the input holds nothing to convert
    line = _error_line(stderr)
    assert f"under {corpus}" in line and "(searched 2 folders)" in line and ".mp4" in line and ".zip" in line, line
    assert "failures.jsonl" not in line and not out.exists()  # nothing written: no empty .cache/ either
