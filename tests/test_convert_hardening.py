"""Issue 11, converter half: the run survives a clip's bug, stops on the machine's errors,
leaves no worker behind, publishes atomically, searches harder for faces, says what it cut,
keys its cache on library versions, and defines flags only in its entry points."""

import concurrent.futures
import contextlib
import functools
import glob
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import helpers
import numpy as np
import pytest

from ravdess_tfrecords import filenames, schema
from ravdess_tfrecords.conversion import convert, faces, ffmpeg, preprocess, sources, synthetic
from ravdess_tfrecords.conversion.errors import MachineError
from ravdess_tfrecords.conversion.preprocess import Settings, preprocess_clip


def _clip(root, clip_id, **kwargs):
    name = filenames.parse(clip_id)
    path = os.path.join(root, f"Actor_{name.actor:02d}", f"{clip_id}.mp4")
    synthetic.make_clip(path, name, **kwargs)
    return path


def _cli(*args, **popen):
    return subprocess.Popen([sys.executable, "-m", "ravdess_tfrecords.convert", "--noprogress", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _error_line(stderr):
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_flags_are_defined_only_by_the_entry_points(tmp_path):
    program = (
        "from absl import flags\n"
        "flags.DEFINE_string('data_dir', 'mine', 'a project of its own')\n"
        "flags.DEFINE_string('output', 'mine', '')\n"
        "flags.DEFINE_integer('workers', 3, '')\n"
        "import ravdess_tfrecords.convert, ravdess_tfrecords.verify\n"
        "from ravdess_tfrecords.conversion import convert\n"
        "from ravdess_tfrecords.reading import verify\n"
        "assert callable(convert.convert) and callable(verify.verify)\n"
        "print('imported')\n"
    )
    # The three programs run side by side (each a fresh interpreter); the entry points still define theirs.
    commands = [["-c", program], ["-m", "ravdess_tfrecords.verify", f"--data_dir={tmp_path}"],
                ["-m", "ravdess_tfrecords.convert", "--help"]]
    with concurrent.futures.ThreadPoolExecutor(len(commands)) as pool:
        imported, verify, help_text = pool.map(
            lambda args: subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120),
            commands)
    assert imported.returncode == 0 and "imported" in imported.stdout, imported.stderr
    assert verify.returncode == 1 and "ravdess_tfrecords.convert" in verify.stderr, verify.stderr
    assert "--examples_per_shard" in help_text.stdout and "--finer_search_width" in help_text.stdout, help_text.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{name: Future}`` of this module's converter runs that need nothing else (``helpers.background``: side
    by side, not one test after the other); each test waits for its own."""
    tmp = tmp_path_factory.mktemp
    jobs = {"internal": functools.partial(_all_internal_run, tmp("internal")),
            "beside_good": functools.partial(_beside_good_run, tmp("beside")),
            "kill-group": functools.partial(_killed_converter_run, tmp("killed"), "group"),
            "kill-converter": functools.partial(_killed_converter_run, tmp("killed"), "converter")}
    with helpers.background(jobs, at_once=4) as futures:
        yield futures


INTERNAL_IDS = ["01-01-03-01-01-01-01", "01-01-05-01-01-01-02", "01-01-04-01-01-01-03"]


def _all_internal_run(tmp_path):
    corpus, out = tmp_path / "in", tmp_path / "out"
    for clip_id in INTERNAL_IDS:
        _clip(str(corpus), clip_id, duration=2.0)
    # The test hook gives these clips hop_length=0: librosa itself raises inside each worker's clip (a real
    # failure, not a mock). (--n_mels=0 did this once: now it is refused before any work, below.)
    env = dict(os.environ, **{preprocess.TEST_RAISE_ENV: ",".join(f"{i}.mp4" for i in INTERNAL_IDS)})
    proc = _cli(f"--input={corpus}", f"--output={out}", "--workers=2", env=env)
    _, err = proc.communicate(timeout=300)
    return out, proc, err


def test_an_unexpected_exception_skips_the_clip_as_internal(runs):
    out, proc, err = runs["internal"].result()
    ids = INTERNAL_IDS
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert "no clip converted" in _error_line(err)
    failures = [json.loads(line) for line in (out / schema.FAILURES_FILENAME).read_text().splitlines()]
    assert [f["file"] for f in failures] == [os.path.join(f"Actor_{i[-2:]}", f"{i}.mp4") for i in ids]
    for f in failures:  # every clip was tried: the first exception did not end the run
        assert f["code"] == "internal" and f["reason"].startswith("ParameterError: hop_length=0"), f
        assert "Traceback (most recent call last)" in f["traceback"] and "librosa" in f["traceback"]
        assert f"skipped {f['file']}: ParameterError" in err


def _beside_good_run(tmp_path):
    corpus, out = tmp_path / "in", tmp_path / "out"
    good = _clip(str(corpus), "01-01-03-01-01-01-01", duration=2.0)
    _clip(str(corpus), "01-01-04-01-01-01-02", duration=2.0)
    raises = _clip(str(corpus), "01-01-05-01-01-01-02", duration=2.0)
    # Audio of NaN samples (float PCM in Matroska): a reason of its own, bad_audio (it was an IndexError).
    nan = tmp_path / "nan.f32"
    np.full(16000 * 2, np.nan, np.float32).tofile(nan)
    bad = corpus / "Actor_01" / "01-01-07-01-01-01-01.mkv"
    subprocess.run([ffmpeg.executable(), "-loglevel", "error", "-y", "-i", good, "-f", "f32le", "-ar", "16000",
                    "-ac", "1", "-i", str(nan), "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "pcm_f32le",
                    str(bad)], check=True)
    # The test hook makes librosa itself raise on one clip: an exception the preprocessing does not expect.
    env = dict(os.environ, **{preprocess.TEST_RAISE_ENV: os.path.basename(raises)})
    proc = _cli(f"--input={corpus}", f"--output={out}", "--workers=2", env=env)
    stdout, err = proc.communicate(timeout=300)
    return out, raises, bad, proc, stdout, err


def test_an_unexpected_exception_or_bad_audio_beside_good_clips_skips_only_that_clip(runs):
    out, raises, bad, proc, stdout, err = runs["beside_good"].result()
    assert proc.returncode == 0 and "converted 2 clips" in stdout, stdout + err
    failures = {f["code"]: f for f in map(json.loads, (out / schema.FAILURES_FILENAME).read_text().splitlines())}
    assert sorted(failures) == ["bad_audio", "internal"], failures
    internal = failures["internal"]
    assert internal["file"] == os.path.join("Actor_02", os.path.basename(raises)), internal
    assert internal["reason"].startswith("ParameterError: hop_length=0") and "librosa" in internal["traceback"]
    assert failures["bad_audio"]["file"] == os.path.join("Actor_01", bad.name)
    assert failures["bad_audio"]["reason"] == "the audio holds 32000 NaN and 0 infinite samples (the first at 0.000 s)"
    assert f"skipped {os.path.join('Actor_01', bad.name)}: the audio holds 32000 NaN" in err
    assert "internal 1 (unexpected error" in stdout and "bad_audio 1 (the audio holds NaN" in stdout
    assert "(traceback in failures.jsonl)" in err
    info = json.loads((out / schema.INFO_FILENAME).read_text())
    assert info["summary"]["converted"] == 2 and all("traceback" not in f for f in info["failures"])


# ---- every number in its range, before any work ----------------------------------------------

# flag=value -> the range its error line names. Each of these once ran: --workers=0 waited forever,
# --examples_per_shard=0 divided by zero after all of pass 1, the others failed (or did nonsense) per clip.
BAD_NUMBERS = {
    "workers=0": "an integer >= 1",
    "workers=-2": "an integer >= 1",
    "examples_per_shard=0": "an integer >= 1",
    "sample_rate=100": "an integer in [4000, 192000]",
    "n_fft=0": "an integer >= 16",
    "hop_length=0": "an integer >= 1",
    "n_mels=0": "an integer >= 24",
    "n_mels=23": "an integer >= 24",
    "top_db=-1.0": "a finite number >= 0",
    "top_db=inf": "a finite number >= 0",
    "silence_dbfs=1.0": "a finite number <= 0",
    "silence_dbfs=nan": "a finite number <= 0",
    "speech_contrast_db=-1.0": "a finite number >= 0",
    "work_width=10": "an integer >= 80",
    "face_margin=-0.5": "a finite number >= 0",
    "face_upsample=9": "an integer in [0, 3]",
    "finer_search_width=-1": "an integer >= 0",
    "max_clip_seconds=0.0": "a finite number >= 0.5",
}


@pytest.fixture(scope="module")
def bad_number_runs(tmp_path_factory):
    """``{case: (returncode, stderr, output dir)}``: each ``BAD_NUMBERS`` run of the converter, 4 at a time
    (each is a fresh interpreter; the flags are refused before TensorFlow's import)."""
    root = tmp_path_factory.mktemp("ranges")
    corpus = root / "in" / "Actor_01"
    corpus.mkdir(parents=True)
    (corpus / "01-01-03-01-01-01-01.mp4").write_bytes(b"a clip to convert")  # work there would be

    def run(case):
        out = root / case.replace("=", "-")
        proc = subprocess.run([sys.executable, "-m", "ravdess_tfrecords.convert", "--noprogress",
                               f"--input={root / 'in'}", f"--output={out}", f"--{case}"], env=helpers.repo_env(),
                              capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stderr, out

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return dict(zip(BAD_NUMBERS, pool.map(run, BAD_NUMBERS), strict=True))


@pytest.mark.parametrize("case", list(BAD_NUMBERS))
def test_a_number_out_of_range_is_one_error_line_before_any_work(case, bad_number_runs):
    code, stderr, out = bad_number_runs[case]
    assert code == 2, stderr
    assert stderr.splitlines() == [f"error: flag --{case}: must be {BAD_NUMBERS[case]} (--help lists the flags)"]
    assert not out.exists()  # nothing written, not even .cache/


def test_the_python_api_checks_the_same_ranges(tmp_path):
    with pytest.raises(preprocess.UserError, match=r"^n_mels=0: must be an integer >= 24$"):
        Settings(n_mels=0)
    with pytest.raises(preprocess.UserError, match=r"^silence_dbfs=nan: must be a finite number <= 0$"):
        Settings(silence_dbfs=float("nan"))
    with pytest.raises(preprocess.UserError, match=r"^face_upsample=1.0: must be an integer in \[0, 3\]$"):
        Settings(face_upsample=1.0)
    for bad in ({"workers": 0}, {"examples_per_shard": 0}):
        with pytest.raises(preprocess.UserError, match=f"^{next(iter(bad))}=0: must be an integer >= 1$"):
            convert.convert([str(tmp_path)], str(tmp_path / "out"), **bad)
    assert not (tmp_path / "out").exists()
    assert Settings.from_dict(preprocess.LEGACY) == Settings(**preprocess.LEGACY)  # a stored legacy one passes


def test_cache_key_holds_the_library_versions():
    versions = convert.library_versions()
    assert sorted(versions) == ["dlib", "ffmpeg", "librosa", "numpy"]
    assert versions["ffmpeg"].startswith("ffmpeg version") and versions["numpy"] == np.__version__
    source = sources.Source("a.mp4", "a.mp4", None, "file:1:2")
    keys = {convert.cache_key(source, Settings(), versions)}
    keys |= {convert.cache_key(source, Settings(), {**versions, lib: "0.0"}) for lib in versions}
    assert len(keys) == 1 + len(versions)  # an upgrade of any of them recomputes


def test_a_conversion_caches_under_its_cache_key(tmp_path):
    """The key above is the one a conversion uses: a changed setting misses the cache, the same one hits."""
    corpus, out = tmp_path / "in", tmp_path / "out"
    clip_id = "01-01-03-01-01-01-01"
    _clip(str(corpus), clip_id, duration=2.0)
    [source], _ = sources.discover([str(corpus)])
    versions = convert.library_versions()

    def cached():
        return sorted(os.path.basename(p) for p in glob.glob(str(out / ".cache" / "*.npz")))

    first = convert.convert([str(corpus)], str(out), progress=False)
    key = convert.cache_key(source, Settings(), versions)
    assert first["reused"] == 0 and cached() == [f"{clip_id}-{key}.npz"]
    wider = Settings(face_margin=0.2)
    other = convert.convert([str(corpus)], str(out), progress=False, settings=wider)
    other_key = convert.cache_key(source, wider, versions)
    assert other["reused"] == 0 and other_key != key and cached() == sorted([f"{clip_id}-{key}.npz",
                                                                            f"{clip_id}-{other_key}.npz"])
    again = convert.convert([str(corpus)], str(out), progress=False)
    assert again["reused"] == 1 and len(cached()) == 2


def test_cut_clips_are_listed(tmp_path):
    corpus = tmp_path / "in"
    _clip(str(corpus), "01-01-03-01-01-01-03", duration=12.0)
    _clip(str(corpus), "01-01-03-01-01-01-04", duration=3.0)
    summary = convert.convert([str(corpus)], str(tmp_path / "out"), progress=False,
                              settings=Settings(max_clip_seconds=8.0))
    assert summary["converted"] == 2 and summary["cut"] == 1
    cut = json.loads((tmp_path / "out" / schema.INFO_FILENAME).read_text())["cut"]
    assert [c["file"] for c in cut] == [os.path.join("Actor_03", "01-01-03-01-01-01-03.mp4")]
    assert abs(cut[0]["seconds"] - 12.0) < 0.2
    assert "cut 1 clips longer than 8 s" in convert.format_summary(summary, str(tmp_path / "out"))


def test_a_small_face_is_found_by_the_finer_search(tmp_path):
    corpus = tmp_path / "in"
    # 960x540, face 100 px: 50 px at --work_width=480, below HOG's 80 px window; found larger.
    small = _clip(str(corpus), "01-01-03-01-01-01-05", width=960, height=540, face_side=100, duration=2.5)
    _clip(str(corpus), "01-01-05-01-01-01-05", duration=2.5)
    clip = preprocess_clip(small, Settings())
    assert clip.finer_search and clip.video.std() > 10
    assert 60 < clip.boxes[0, 2] - clip.boxes[0, 0] < 140  # the small face, in original pixels
    summary = convert.convert([str(corpus)], str(tmp_path / "out"), progress=False)
    assert summary["converted"] == 2 and summary["finer_face_search"] == 1, summary["failures"]
    info = json.loads((tmp_path / "out" / schema.INFO_FILENAME).read_text())
    assert info["finer_face_search"] == [os.path.join("Actor_05", "01-01-03-01-01-01-05.mp4")]
    assert "found only by the finer search" in convert.format_summary(summary, str(tmp_path / "out"))
    without = convert.convert([str(corpus)], str(tmp_path / "plain"), progress=False,
                              settings=Settings(finer_search_width=0))
    assert without["skipped"] == {"no_face": 1}  # the face really is too small at the working scale


def test_a_face_shown_only_between_the_six_frames_is_found_in_more_frames(tmp_path):
    """No face in the six frames nor by the finer search, but at other times of the speech interval: found
    there, and each of the six frames borrows the nearest one's box (it was no_face)."""
    path, name = str(tmp_path / "01-01-03-01-01-01-06.mp4"), filenames.parse("01-01-03-01-01-01-06")
    synthetic.make_clip(path, name, duration=4.0, face=False)
    _, _, start, end = preprocess._decode_speech(path, Settings())  # the interval the six frames divide
    length = end - start
    # The face shows within length/24 of each boundary between the six segments, whose centres (the six
    # frames) lie length/12 away; the 24 frames of the further search lie length/48 from the boundaries.
    shown = [(start + k * length / 6 - length / 24, start + k * length / 6 + length / 24) for k in range(1, 6)]
    truth = synthetic.make_clip(path, name, duration=4.0, face_times=shown)
    assert preprocess._decode_speech(path, Settings())[2:] == (start, end)  # the same voice: the same interval
    clip = preprocess_clip(path, Settings())
    assert clip.finer_search and clip.video.shape == (6, 64, 64, 3)
    times = (start + length / 6 * (np.arange(6) + 0.5))
    for box, t in zip(clip.boxes, times, strict=True):  # the face, where it is (it moves ~10 px)
        assert faces.iou(tuple(box), truth.face_box(t)) > 0.5, (box, truth.face_box(t))
    again = preprocess_clip(path, Settings())
    assert np.array_equal(again.video, clip.video) and np.array_equal(again.boxes, clip.boxes)  # deterministic


# ---- processes -------------------------------------------------------------------------------


def _children_of(pid):
    """Every live descendant of ``pid`` (from /proc)."""
    parents = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.split("/")[2])] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _pool_workers(pid):
    """The converter's pool workers: the children of its forkserver (``convert.worker_context``)."""
    processes = {}
    for pid_dir in glob.glob("/proc/[0-9]*"):
        try:
            with open(f"{pid_dir}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"{pid_dir}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if fields[0] != "Z":
            processes[int(pid_dir.rsplit("/", 1)[1])] = (int(fields[1]), cmdline)
    servers = [p for p, (parent, cmdline) in processes.items() if parent == pid and b"forkserver" in cmdline]
    return [p for p, (parent, _) in processes.items() if parent in servers]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _killed_converter_run(tmp_path, target):
    """Kill a converter in pass 1: ``(its pool workers then, its descendants still alive 10 s later)``."""
    if not sys.platform.startswith("linux"):
        return None
    corpus, out = tmp_path / "in", tmp_path / "out"
    for k in range(6):
        _clip(str(corpus), f"01-01-0{3 + k % 5}-01-0{1 + k // 5}-01-0{1 + k % 2}", duration=2.0)
    proc = _cli(f"--input={corpus}", f"--output={out}", "--workers=2", start_new_session=True)
    deadline = time.time() + 240
    while not glob.glob(str(out / ".cache" / "*.npz")) and time.time() < deadline:
        time.sleep(0.05)
    workers, pool = _children_of(proc.pid), _pool_workers(proc.pid)
    if target == "group":  # timeout -s KILL, a job scheduler
        os.killpg(proc.pid, signal.SIGKILL)
    else:  # the OOM killer: the converter alone
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.1)
    survivors = [p for p in workers if _alive(p)]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return workers, pool, survivors


# Run in a fresh interpreter: the modules a worker imports for its first clip after the forkserver's preload.
_AFTER_PRELOAD = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
before = set(sys.modules)
from ravdess_tfrecords.conversion import preprocess
preprocess.preprocess_clip(sys.argv[2])
print(json.dumps(sorted({m.split(".")[0] for m in set(sys.modules) - before})))
"""


def test_workers_fork_from_a_forkserver_that_loaded_what_a_clip_needs(tmp_path):
    """A worker costs a fork, not an interpreter's start: the forkserver has imported librosa's MFCC (scipy.signal,
    numba's cache), built dlib's detector and found ffmpeg, so a worker's first clip imports none of its libraries."""
    context = convert.worker_context()
    assert context.get_start_method() == "forkserver"
    clip = _clip(str(tmp_path), "01-01-03-01-01-01-01")
    proc = subprocess.run([sys.executable, "-c", _AFTER_PRELOAD, convert.WORKER_PRELOAD, clip],
                          capture_output=True, text=True, timeout=120, env=helpers.repo_env())
    assert proc.returncode == 0, proc.stderr
    imported = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    libraries = {"librosa", "scipy", "numba", "llvmlite", "dlib", "soundfile", "soxr", "imageio_ffmpeg", "PIL"}
    assert not imported & libraries, imported


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("target", ["group", "converter"])
def test_a_killed_converter_leaves_no_worker(runs, target):
    workers, pool, survivors = runs[f"kill-{target}"].result()
    assert len(pool) == 2, workers  # not the resource tracker, not an ffmpeg
    assert not survivors


# ---- the machine's errors: a real 4 MB disk --------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs (needs root and mount permission; skipped otherwise)."""
    with helpers.tmpfs(tmp_path, "4m") as disk:
        yield disk


def _fill(disk, leave):
    """Leave about ``leave`` bytes free on ``disk``."""
    st = os.statvfs(disk)
    with open(disk / "ballast", "wb") as f:
        f.write(bytes(max(0, st.f_bavail * st.f_frsize - leave)))


def _published(out):
    return {p: open(p, "rb").read() for p in sorted(glob.glob(str(out / "*")))}


def _assert_clean_failure(proc, out, before):
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "Traceback" not in err, err
    line = _error_line(err)
    assert "No space left on device" in line and str(out) in line, line
    assert _published(out) == before  # the last published output, untouched
    assert not glob.glob(str(out / ".staging")) and not glob.glob(str(out / "**" / "*.tmp-*"), recursive=True)
    assert not glob.glob(str(out / ".cache" / "ravdess-member-*"))
    return err


def test_a_full_disk_while_zip_members_unpack_stops_the_run(small_disk, tmp_path):
    corpus, out = tmp_path / "in", small_disk / "out"
    first = _clip(str(corpus), "01-01-03-01-01-01-01", duration=2.0)
    assert convert.convert([first], str(out), progress=False)["converted"] == 1
    before = _published(out)
    archive = tmp_path / "Actor_02.zip"  # a per-actor zip, as one public copy packs the corpus
    with zipfile.ZipFile(archive, "w") as z:
        for k in range(3):
            clip_id = f"01-01-0{3 + k}-01-01-01-02"
            z.write(_clip(str(tmp_path / "zipped"), clip_id, duration=2.0), f"Actor_02/{clip_id}.mp4")
    _fill(small_disk, 8192)
    err = _assert_clean_failure(_cli(f"--input={archive}", f"--output={out}", "--workers=2"), out, before)
    assert "unreadable" not in err and "skipped" not in err  # not blamed on the clips


def test_a_full_disk_while_shards_are_written_stops_the_run(small_disk, tmp_path):
    corpus, out = tmp_path / "in", small_disk / "out"
    for k in range(3):
        _clip(str(corpus), f"01-01-0{3 + k}-01-01-01-01", duration=2.0)
    assert convert.convert([str(corpus)], str(out), progress=False)["converted"] == 3
    before = _published(out)
    shard_bytes = sum(os.path.getsize(p) for p in glob.glob(str(out / "ravdess-*")))
    _fill(small_disk, shard_bytes // 2)  # pass 1 is all cached; pass 2's new shards do not fit
    _assert_clean_failure(_cli(f"--input={corpus}", f"--output={out}", "--workers=1", "--examples_per_shard=1"),
                          out, before)
    # ArrayRecord's writer says "No space left on device" in a RuntimeError: the same MachineError.
    with pytest.raises(MachineError, match="No space left on device"):
        convert.convert([str(corpus)], str(out), progress=False, examples_per_shard=1, file_format="array_record")
    assert _published(out) == before and not glob.glob(str(out / ".staging"))
