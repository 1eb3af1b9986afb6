"""Conversion speed, measured side by side in one run on full-size (1280x720) synthetic clips.

    python -m tools.bench_convert            # make bench

Prints seconds per clip for
  (a) ffmpeg decoding the whole clip to null: the floor any converter pays,
  (b) our preprocessing (``preprocess_clip``),
  (c) a naive reference: every frame decoded at full size with dlib HOG on each,
      audio through ``librosa.load``'s default loader,
and the ratios (b)/(a) (target <= 1.5) and (c)/(b) (target >= 20), then the
whole converter's throughput with 1 and 2 workers (target >= 1.8x).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
from absl import flags

from ravdess_tfrecords import conversion, filenames, schema
from ravdess_tfrecords.conversion import audio, faces, ffmpeg, preprocess, synthetic, video

FLAGS = flags.FLAGS
flags.DEFINE_integer("clips", 4, "Full-size clips for (a) and (b).")
flags.DEFINE_integer("naive_clips", 1, "Clips for the naive reference (c): it is slow.")
flags.DEFINE_integer("worker_clips", 12, "Clips for the 1-vs-2 worker comparison (0 skips it).")
flags.DEFINE_string("work_dir", None, "Where to write the clips (default: a temporary directory).")


def _time(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / len(items)


def _floor(path: str) -> None:
    subprocess.run([ffmpeg.executable(), "-nostdin", "-loglevel", "error", "-i", path, "-f", "null", "-"],
                   check=True)


def _naive(path: str) -> np.ndarray:
    """What a first notebook does: all frames at full size, HOG on each, librosa.load."""
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # audioread fallback warnings
        y, sr = librosa.load(path)
    start, end = audio.speech_interval(y, sr, 30.0, -50.0)
    mfcc = audio.standardize(librosa.feature.mfcc(y=y[int(start * sr): int(end * sr)], sr=sr, n_mfcc=24))
    info = ffmpeg.probe(path)
    raw = ffmpeg.run_to_bytes(["-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], "video")
    frames = np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)
    boxes = [faces.detect(f) for f in frames]
    picks = video.frame_indices(video.frame_times(start, end, 6), info.fps, info.duration)
    filled = faces.fill_missing([boxes[i] for i in picks])
    crops = [faces.crop_resize(frames[i], faces.square_box(b, 0.1), schema.FACE_SIZE)
             for i, b in zip(picks, filled, strict=True)]
    return mfcc, np.stack(crops)


def main(argv: list[str]) -> None:
    del argv
    conversion.require_synthetic_extras("tools.bench_convert")  # it synthesizes and converts
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        root = os.path.expanduser(FLAGS.work_dir) if FLAGS.work_dir else tmp
        # librosa's default loader reaches ffmpeg through audioread, which looks on PATH.
        bindir = os.path.join(tmp, "bin")
        os.makedirs(bindir)
        os.symlink(ffmpeg.executable(), os.path.join(bindir, "ffmpeg"))
        os.environ["PATH"] = bindir + os.pathsep + os.environ["PATH"]

        n = max(FLAGS.clips, FLAGS.worker_clips)
        print(f"making {n} full-size synthetic clips (1280x720, 29.97 fps) ...", flush=True)
        corpus = os.path.join(root, "corpus")
        synthetic.make_corpus(corpus, actors=range(1, 3), clips_per_actor=(n + 1) // 2, width=1280, height=720,
                              workers=os.cpu_count() or 1)
        paths = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(corpus) for f in fs if f.endswith(".mp4"))
        sample = paths[: FLAGS.clips]
        preprocess.preprocess_clip(sample[0])  # warm-up: librosa/numba and dlib load once per process
        _naive(sample[0]) if FLAGS.naive_clips else None
        a = _time(_floor, sample)
        b = _time(preprocess.preprocess_clip, sample)
        c = _time(_naive, sample[: FLAGS.naive_clips]) if FLAGS.naive_clips else float("nan")
        print(f"\nseconds per clip over {len(sample)} clips (1280x720, {filenames.parse(sample[0]).clip_id} ...)")
        print(f"  (a) ffmpeg decode to null (floor)  {a:8.3f}")
        print(f"  (b) our preprocessing              {b:8.3f}   (b)/(a) = {b / a:5.2f}   target <= 1.5  "
              f"{'OK' if b / a <= 1.5 else 'MISSED'}")
        print(f"  (c) naive reference                {c:8.3f}   (c)/(b) = {c / b:5.1f}   target >= 20   "
              f"{'OK' if c / b >= 20 else 'MISSED'}")

        if FLAGS.worker_clips:
            _bench_workers(paths, root)


def _warm(_) -> int:
    preprocess.preprocess_clip(_WARM_CLIP[0])
    return os.getpid()


_WARM_CLIP: list[str] = []


def _one_thread(path: str):
    """What the converter's workers run when there are several: decoding on their share of the cores."""
    return preprocess.preprocess_clip(path, threads=max(1, (os.cpu_count() or 1) // 2))


def _bench_workers(paths: list[str], root: str) -> None:
    """Steady-state throughput (what a 1,440-clip corpus sees) and whole runs, 1 vs 2 workers."""
    _WARM_CLIP.append(paths[0])
    serial = _time(preprocess.preprocess_clip, paths) * len(paths)
    ctx = get_context("fork")  # children inherit _WARM_CLIP; each still warms its own librosa/dlib
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        list(pool.map(_warm, range(2)))
        start = time.perf_counter()
        list(pool.map(_one_thread, paths))
        parallel = time.perf_counter() - start
    print(f"\npreprocessing throughput on {len(paths)} clips, workers warmed up")
    print(f"  1 worker  {serial:7.2f} s   {len(paths) / serial:5.2f} clips/s")
    print(f"  2 workers {parallel:7.2f} s   {len(paths) / parallel:5.2f} clips/s   speed-up = "
          f"{serial / parallel:4.2f}x   target >= 1.8  {'OK' if serial / parallel >= 1.8 else 'MISSED'}")
    times, peaks = {}, {}
    for workers in (1, 2):
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "ravdess_tfrecords.convert", f"--input={os.path.dirname(paths[0])}/..",
             f"--output={os.path.join(root, f'out-w{workers}')}", f"--workers={workers}", "--noprogress"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peaks[workers] = _peak_tree_rss(proc)
        times[workers] = time.perf_counter() - start
    print("whole converter runs (new process: start-up, TensorFlow import and shard writing included);")
    print("peak memory = the largest sum of resident memory over the converter and its workers, sampled every 50 ms")
    print(f"  1 worker  {times[1]:7.1f} s   peak {peaks[1] / 2**20:6.0f} MiB")
    print(f"  2 workers {times[2]:7.1f} s   peak {peaks[2] / 2**20:6.0f} MiB   speed-up = {times[1] / times[2]:4.2f}x"
          f"   memory target <= 1536 MiB  {'OK' if peaks[2] <= 1536 * 2**20 else 'MISSED'}")


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


def _peak_tree_rss(proc: subprocess.Popen) -> int:
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(f"converter exited with {proc.returncode}")
    return peak

if __name__ == "__main__":
    from ravdess_tfrecords import _cli

    _cli.check_ranges({"clips": (1, None), "naive_clips": (0, None), "worker_clips": (0, None)})
    _cli.run(main)
