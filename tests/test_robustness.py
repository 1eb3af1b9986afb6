"""Conversion that survives real corpora: every bad input skipped with its reason, resume after SIGKILL."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from ravdess_tfrecords import filenames, schema
from ravdess_tfrecords.conversion import convert, ffmpeg, synthetic


def _clip(root, clip_id, **kwargs):
    name = filenames.parse(clip_id)
    path = os.path.join(root, f"Actor_{name.actor:02d}", f"{clip_id}.mp4")
    synthetic.make_clip(path, name, **kwargs)
    return path


def _ffmpeg(*args):
    subprocess.run([ffmpeg.executable(), "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """A corpus with two good clips and one of every kind of bad input."""
    root = tmp_path_factory.mktemp("messy")
    corpus = root / "in"
    good = _clip(str(corpus), "01-01-03-01-01-01-01")
    _clip(str(corpus / "Actor 02 ünïcödé"), "01-01-05-01-01-01-02")  # spaces and non-ASCII in the path
    a1 = corpus / "Actor_01"
    (a1 / "01-01-04-01-01-01-01.mp4").write_bytes(b"")                                   # zero bytes
    (a1 / "01-01-04-01-01-02-01.mp4").write_bytes(open(good, "rb").read()[:20000])       # truncated
    (a1 / "01-01-04-01-02-01-01.mp4").write_bytes(b"<html>not a video</html>" * 50)     # not a video
    _ffmpeg("-i", good, "-an", "-c", "copy", str(a1 / "01-01-04-01-02-02-01.mp4"))     # no audio stream
    _ffmpeg("-i", good, "-vn", "-c", "copy", str(a1 / "01-01-04-02-01-01-01.mp4"))     # no video stream
    shutil.copy(good, a1 / "02-01-03-01-01-01-01.mp4")                                   # video-only modality
    _ffmpeg("-i", good, "-vn", str(a1 / "03-01-03-01-01-01-01.wav"))                    # audio-only modality
    _clip(str(corpus), "01-01-06-01-01-01-01", face=False)                               # no face
    _clip(str(corpus), "01-01-06-01-01-02-01", voice=False)                              # silent
    shutil.copy(good, a1 / "clip_final(1).mp4")                                          # not a RAVDESS name
    os.symlink(str(root / "gone.mp4"), a1 / "01-01-07-01-01-01-01.mp4")                  # unreadable
    with zipfile.ZipFile(corpus / "Video_Speech_Actor_01.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(good, "Actor_01/01-01-03-01-01-01-01.mp4")                               # duplicate of the folder's
        z.write(good, "Actor_01/01-01-08-01-01-01-01.mp4")                               # corrupt member (below)
    data = bytearray((corpus / "Video_Speech_Actor_01.zip").read_bytes())
    with zipfile.ZipFile(corpus / "Video_Speech_Actor_01.zip") as z:
        info = z.getinfo("Actor_01/01-01-08-01-01-01-01.mp4")
    start = info.header_offset + 30 + len(info.filename) + 100
    data[start: start + 200] = bytes(200)
    (corpus / "Video_Speech_Actor_01.zip").write_bytes(bytes(data))
    out = root / "out"
    summary = convert.convert([str(corpus)], str(out), workers=2, progress=False)
    reasons = {f["file"]: (f["code"], f["reason"]) for f in summary["failures"]}
    return summary, reasons, out


@pytest.mark.parametrize("file, code, words", [
    ("Actor_01/01-01-04-01-01-01-01.mp4", "unreadable", "Invalid data"),
    ("Actor_01/01-01-04-01-01-02-01.mp4", "truncated", "the header says"),
    ("Actor_01/01-01-04-01-02-01-01.mp4", "unreadable", "ffmpeg cannot read it"),
    ("Actor_01/01-01-04-01-02-02-01.mp4", "no_audio", "no audio stream"),
    ("Actor_01/01-01-04-02-01-01-01.mp4", "no_video", "no video stream"),
    ("Actor_01/02-01-03-01-01-01-01.mp4", "other_modality", "modality 02 (video-only)"),
    ("Actor_01/03-01-03-01-01-01-01.wav", "other_modality",
     "modality 03 (audio-only); this conversion takes audio_video (01) files"),
    ("Actor_01/01-01-06-01-01-01-01.mp4", "no_face", "no face found"),
    ("Actor_01/01-01-06-01-01-02-01.mp4", "silent", "audio is silent"),
    ("Actor_01/clip_final(1).mp4", "bad_name", "is not a RAVDESS name"),
    ("Actor_01/01-01-07-01-01-01-01.mp4", "unreadable", "cannot stat"),
    # Zip members are named as the folder the zip unpacks into; the duplicate's reason says where it is.
    ("Actor_01/01-01-03-01-01-01-01.mp4", "duplicate",
     "already taken from Actor_01/01-01-03-01-01-01-01.mp4 (this copy: "
     "Video_Speech_Actor_01.zip:Actor_01/01-01-03-01-01-01-01.mp4)"),
    ("Actor_01/01-01-08-01-01-01-01.mp4", "unreadable", "cannot read it"),
])
def test_each_bad_input_has_its_reason(messy, file, code, words):
    _, reasons, _ = messy
    assert file.replace("/", os.sep) in reasons or file in reasons, sorted(reasons)
    got_code, reason = reasons.get(file) or reasons[file.replace("/", os.sep)]
    assert got_code == code and words in reason, reason


def test_good_clips_beside_bad_ones_all_convert(messy):
    summary, reasons, out = messy
    assert summary["converted"] == 2 and len(reasons) == 13
    info = json.loads((out / schema.INFO_FILENAME).read_text())
    assert info["counts"]["per_actor"] == {"1": 1, "2": 1}
    assert not glob.glob(str(out / "**" / "*.tmp-*"), recursive=True)
    assert not glob.glob(str(out / ".cache" / "ravdess-member-*"))


def test_long_and_4k_clips_convert(tmp_path):
    corpus = tmp_path / "in"
    _clip(str(corpus), "01-01-03-01-01-01-03", duration=60.0)
    _clip(str(corpus), "01-01-03-01-01-01-04", width=3840, height=2160, duration=2.5)
    summary = convert.convert([str(corpus)], str(tmp_path / "out"), progress=False,
                              settings=convert.Settings(max_clip_seconds=30.0))
    assert summary["converted"] == 2 and summary["cut"] == 1, summary["failures"]
    cut = json.loads((tmp_path / "out" / schema.INFO_FILENAME).read_text())["cut"]
    assert [c["file"] for c in cut] == [os.path.join("Actor_03", "01-01-03-01-01-01-03.mp4")]
    assert abs(cut[0]["seconds"] - 60.0) < 0.2
    closing = convert.format_summary(summary, str(tmp_path / "out"))
    assert "cut 1 clips longer than 30 s to their start: Actor_03/01-01-03-01-01-01-03.mp4 (60.0 s)" in closing


def test_output_under_a_file_is_a_clear_error(tmp_path):
    """ENOTDIR: the output's parent is a file. (EACCES, an output its user may not write, is
    tests/test_convert_crashes.py::test_unwritable_output_for_its_user_is_exit_1.)"""
    corpus = tmp_path / "in"
    _clip(str(corpus), "01-01-03-01-01-01-01")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OSError, match="is not writable: Not a directory"):
        convert.convert([str(corpus)], str(blocker / "out"), progress=False)


def _run(corpus, out, **popen):
    return subprocess.Popen([sys.executable, "-m", "ravdess_tfrecords.convert", f"--input={corpus}",
                             f"--output={out}", "--workers=1", "--noprogress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _wait_until_gone(group: int, timeout: float = 30.0) -> None:
    """Until no process of process group ``group`` is left (the converter's workers stay in its group)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process group {group} still has processes after {timeout} s")


def test_sigkill_then_resume_gives_identical_output(tmp_path):
    corpus = tmp_path / "in"
    for k in range(6):
        _clip(str(corpus), f"01-01-0{3 + k % 5}-01-0{1 + k // 5}-01-0{1 + k % 2}")
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = _run(corpus, killed, start_new_session=True)
    deadline = time.time() + 240
    while len(glob.glob(str(killed / ".cache" / "*.npz"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the converter alone; its worker follows it (its parent, the forkserver, ends)
    proc.wait()
    _wait_until_gone(proc.pid)  # a clip the worker was finishing may still land in the cache
    cached = len(glob.glob(str(killed / ".cache" / "*.npz")))
    assert 2 <= cached < 6 and not (killed / schema.INFO_FILENAME).exists()
    out, err = _run(corpus, killed).communicate(timeout=300)
    assert f"({cached} reused from an earlier run)" in out, out + err
    assert _run(corpus, clean).wait(timeout=300) == 0
    names = sorted(os.path.basename(p) for p in glob.glob(str(clean / "ravdess-*")))
    for name in [*names, schema.INFO_FILENAME, schema.FAILURES_FILENAME]:
        assert (killed / name).read_bytes() == (clean / name).read_bytes(), name


def test_changed_setting_invalidates_the_cache(tmp_path):
    corpus = tmp_path / "in"
    _clip(str(corpus), "01-01-03-01-01-01-01")
    first = convert.convert([str(corpus)], str(tmp_path / "out"), progress=False)
    again = convert.convert([str(corpus)], str(tmp_path / "out"), progress=False)
    other = convert.convert([str(corpus)], str(tmp_path / "out"), progress=False,
                            settings=convert.Settings(face_margin=0.3))
    assert (first["reused"], again["reused"], other["reused"]) == (0, 1, 0)
    assert first["info"]["shards"] == again["info"]["shards"] != other["info"]["shards"]


def test_ctrl_c_stops_promptly_and_leaves_no_temp_files(tmp_path):
    corpus = tmp_path / "in"
    for k in range(8):
        _clip(str(corpus), f"01-01-0{3 + k % 5}-0{1 + k // 5}-01-01-0{1 + k % 2}")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "ravdess_tfrecords.convert", f"--input={corpus}",
                             f"--output={out}", "--workers=2", "--noprogress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 240
    while not glob.glob(str(out / ".cache" / "*.npz")) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    stopped = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - stopped < 20
    assert proc.returncode == 130 and "run the same command again to resume" in err, err
    assert not glob.glob(str(out / "**" / "*.tmp-*"), recursive=True)
    assert not glob.glob(str(out / ".cache" / "ravdess-member-*"))
    assert not (out / schema.INFO_FILENAME).exists()
    for cached in glob.glob(str(out / ".cache" / "*.npz")):  # whatever was cached is whole
        with np.load(cached, allow_pickle=False) as data:
            assert data["video"].shape == (6, 64, 64, 3)
