"""Convert RAVDESS clips to per-speaker TFRecord shards.

    python -m ravdess_tfrecords.convert --input=/data/ravdess --output=/data/ravdess-tfrecords

Pass 1 preprocesses every audio-video clip in worker processes and caches each
result (``OUTPUT/.cache``, keyed by the settings and the source's fingerprint),
so a stopped run resumes where it was. Pass 2 takes the mean MFCC frame count
over the converted clips as M, pads every clip to it, and writes one shard set
per actor plus ``dataset_info.json`` and ``failures.jsonl``.

Bad input never stops the run: each skipped file gets one line naming it and
the reason, and the summary counts them. Zero converted clips is exit code 1.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import hashlib
import json
import os
import sys
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
from absl import app, flags

from ravdess_tfrecords import __version__, audio, filenames, labels, schema, sources, writer
from ravdess_tfrecords import progress as progress_bar
from ravdess_tfrecords.errors import REASONS, ClipError
from ravdess_tfrecords.preprocess import Settings, preprocess_clip

FLAGS = flags.FLAGS
flags.DEFINE_list("input", None, "RAVDESS folders, Actor_NN folders or zip files (comma-separated).")
flags.DEFINE_string("output", None, "Directory for the shards, dataset_info.json and failures.jsonl.")
flags.DEFINE_integer("workers", os.cpu_count() or 1, "Worker processes for pass 1.")
flags.DEFINE_list("vocal_channels", ["speech"], "Which vocal channels to keep: speech, song or both.")
flags.DEFINE_integer("examples_per_shard", 32, "At most this many examples per shard.")
flags.DEFINE_boolean("progress", True, "Show a progress bar.")
# One flag per preprocessing setting, defaults from the Settings dataclass (one source of truth).
_FLAG_TYPES = {int: flags.DEFINE_integer, float: flags.DEFINE_float, bool: flags.DEFINE_boolean}
for _field in dataclasses.fields(Settings):
    _FLAG_TYPES[type(_field.default)](_field.name, _field.default, f"Preprocessing: {_field.name} (see Settings).")

CACHE_DIRNAME = ".cache"
VOCAL_CHANNELS = {name: code for code, name in filenames.VOCAL_CHANNELS.items()}
# Skips by design, summarized by count instead of one line per file.
_QUIET = ("not_audio_video", "filtered")


def cache_key(source: sources.Source, settings: Settings) -> str:
    """Changes whenever the settings, the source's content or the schema may have."""
    blob = json.dumps([schema.SCHEMA_VERSION, source.basename, source.fingerprint, settings.to_dict()],
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _init_worker() -> None:
    """Workers leave the terminal's process group: Ctrl-C reaches only the main process,
    which lets each worker finish (and cache) its clip, then stops."""
    os.setpgrp()


def _preprocess_job(job: tuple) -> dict:
    """Worker: preprocess one clip into its cache file (or find it cached)."""
    source, settings, cache_path, threads = job
    result = {"display": source.display, "cache": cache_path}
    if os.path.exists(cache_path):
        with np.load(cache_path, allow_pickle=False) as cached:
            return {**result, "status": "cached", "frames": int(cached["audio"].shape[1])}
    try:
        with sources.local_path(source, os.path.dirname(cache_path)) as path:
            clip = preprocess_clip(path, settings, threads=threads)
    except ClipError as e:
        return {**result, "status": e.code, "reason": e.message}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:  # a corrupt or unreadable zip member
        return {**result, "status": "unreadable", "reason": f"cannot read it ({type(e).__name__}: {e})"}
    with writer.atomic_path(cache_path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, audio=clip.audio, video=clip.video, interval=np.asarray(clip.interval),
                     boxes=clip.boxes)
    return {**result, "status": "converted", "frames": int(clip.audio.shape[1])}


def _say(message: str, progress: bool) -> None:
    if progress:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def _classify(found: list[sources.Source], channels: set[int]):
    """Split sources into clips to preprocess and skipped ones (by name alone)."""
    clips, skipped, seen = [], [], {}
    for source in found:
        try:
            name = filenames.parse(source.basename)
        except ValueError as e:
            skipped.append({"file": source.display, "code": "bad_name", "reason": str(e)})
            continue
        if name.modality != 1:
            skipped.append({"file": source.display, "code": "not_audio_video",
                            "reason": f"modality {name.modality:02d} ({filenames.MODALITIES[name.modality]})"})
        elif name.vocal_channel not in channels:
            skipped.append({"file": source.display, "code": "filtered",
                            "reason": f"vocal channel {name.vocal_channel_name} not selected"})
        elif name.clip_id in seen:
            skipped.append({"file": source.display, "code": "duplicate",
                            "reason": f"clip {name.clip_id} already taken from {seen[name.clip_id]}"})
        else:
            seen[name.clip_id] = source.display
            clips.append((name, source))
    return clips, skipped


def _example(name: filenames.ClipName, source: sources.Source, cache_path: str, frames: int) -> bytes:
    with np.load(cache_path, allow_pickle=False) as cached:
        mfcc, video = cached["audio"], cached["video"]
    return schema.serialize({
        "audio": audio.model_input(mfcc, frames),
        "video": video,
        "label": name.label(),
        "emotion": name.emotion,
        "audio_frames": mfcc.shape[1],
        "actor": name.actor,
        "gender": name.gender,
        "intensity": name.intensity,
        "statement": name.statement,
        "repetition": name.repetition,
        "vocal_channel": name.vocal_channel_name,
        "clip_id": name.clip_id,
        "source": source.basename,
    }, frames)


def _check_writable(output_dir: str) -> None:
    try:
        os.makedirs(os.path.join(output_dir, CACHE_DIRNAME), exist_ok=True)
        writer.write_text(os.path.join(output_dir, CACHE_DIRNAME, ".writable"), "")
    except OSError as e:
        raise OSError(f"output directory {output_dir!r} is not writable: {e.strerror or e}") from e


def convert(inputs: list[str], output_dir: str, *, settings: Settings | None = None, workers: int = 1,
            vocal_channels=("speech",), examples_per_shard: int = 32, progress: bool = True) -> dict:
    """Convert every audio-video clip under ``inputs`` into shards under ``output_dir``.

    Returns:
      The ``summary`` of ``dataset_info.json``: found, converted, skipped by reason,
      plus ``failures`` (one dict per skipped file) and ``info`` (the whole metadata).

    Raises:
      ValueError: an unknown vocal channel. FileNotFoundError: a missing input.
      OSError: an output directory that cannot be written.
      RuntimeError: no clip could be converted.
    """
    settings = settings or Settings()
    unknown = set(vocal_channels) - set(VOCAL_CHANNELS)
    if unknown:
        raise ValueError(f"unknown vocal channel(s) {sorted(unknown)}; choose from {sorted(VOCAL_CHANNELS)}")
    _check_writable(output_dir)
    cache_dir = os.path.join(output_dir, CACHE_DIRNAME)
    for pattern in (".*.tmp-*", "ravdess-member-*"):
        for stale in glob.glob(os.path.join(cache_dir, pattern)):
            os.unlink(stale)  # left by a killed run

    found, problems = sources.discover(list(inputs))
    clips, failures = _classify(found, {VOCAL_CHANNELS[c] for c in vocal_channels})
    failures += [{"file": display, "code": "unreadable", "reason": reason} for display, reason in problems]
    for f in failures:
        if f["code"] not in _QUIET:
            _say(f"skipped {f['file']}: {f['reason']}", progress)

    # Pass 1: preprocess (parallel, cached).
    # Several workers: each decodes on its share of the cores rather than all of them fighting over all.
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0
    jobs = [(source, settings, os.path.join(cache_dir, f"{name.clip_id}-{cache_key(source, settings)}.npz"), threads)
            for name, source in clips]
    results = []
    pool = None
    if workers > 1 and len(jobs) > 1:
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker)
    try:
        stream = pool.map(_preprocess_job, jobs) if pool else map(_preprocess_job, jobs)
        for result in progress_bar.bar(stream, len(jobs), "preprocessing", progress):
            if result["status"] not in ("converted", "cached"):
                failures.append({"file": result["display"], "code": result["status"], "reason": result["reason"]})
                _say(f"skipped {result['display']}: {result['reason']}", progress)
            results.append(result)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)

    ok = ("converted", "cached")
    done = [(name, source, r) for (name, source), r in zip(clips, results, strict=True) if r["status"] in ok]
    if not done:
        raise RuntimeError(f"no clip converted from {', '.join(inputs)} ({len(found)} media files found)")

    # Pass 2: pad to the corpus mean and write one shard set per actor.
    frames = int(round(float(np.mean([r["frames"] for _, _, r in done]))))
    by_actor = collections.defaultdict(list)
    for item in done:
        by_actor[item[0].actor].append(item)
    shards = []
    for actor in progress_bar.bar(sorted(by_actor), len(by_actor), "writing shards", progress, unit="actor"):
        items = sorted(by_actor[actor], key=lambda item: item[0].clip_id)
        records = (_example(name, source, r["cache"], frames) for name, source, r in items)
        shards += writer.write_actor_shards(output_dir, actor, records, len(items), examples_per_shard)
    new_files = {s["file"] for s in shards}
    for old in glob.glob(os.path.join(output_dir, schema.shard_glob())):
        if os.path.basename(old) not in new_files:
            os.unlink(old)  # from an earlier conversion with other actors or shard counts

    failures.sort(key=lambda f: (f["file"], f["code"]))
    reused = sum(r["status"] == "cached" for _, _, r in done)
    summary = {
        "found": len(found) + len(problems),
        "converted": len(done),
        "skipped": dict(sorted(collections.Counter(f["code"] for f in failures).items())),
    }
    names = [name for name, _, _ in done]
    info = {
        "name": "ravdess",
        "schema_version": schema.SCHEMA_VERSION,
        "version": __version__,
        "class_names": list(labels.CLASS_NAMES),
        "num_classes": labels.NUM_CLASSES,
        "audio_frames": frames,
        "audio_shape": list(schema.audio_shape(frames)),
        "video_shape": list(schema.VIDEO_SHAPE),
        "preprocessing": {**settings.to_dict(), "n_mfcc": schema.NUM_MFCC,
                          "vocal_channels": sorted(vocal_channels)},
        "num_examples": len(done),
        "counts": {
            "per_actor": _count(n.actor for n in names),
            "per_label": _count(n.label() for n in names),
            "per_emotion": _count(n.emotion for n in names),
        },
        "shards": shards,
        "summary": summary,
        "failures": failures,
    }
    writer.write_text(os.path.join(output_dir, schema.FAILURES_FILENAME),
                      "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures))
    writer.write_text(os.path.join(output_dir, schema.INFO_FILENAME), json.dumps(info, indent=2, sort_keys=True) + "\n")
    return {**summary, "failures": failures, "info": info, "reused": reused}


def _count(values) -> dict[str, int]:
    counts = collections.Counter(values)
    return {str(k): counts[k] for k in sorted(counts)}


def format_summary(summary: dict, output_dir: str) -> str:
    """The closing lines: found / converted / skipped by reason."""
    info = summary["info"]
    lines = [
        f"found {summary['found']} media files",
        f"converted {summary['converted']} clips of {len(info['counts']['per_actor'])} actors into "
        f"{len(info['shards'])} shards (audio {tuple(info['audio_shape'])}, video {tuple(info['video_shape'])})"
        f" -> {output_dir}" + (f" ({summary['reused']} reused from an earlier run)" if summary["reused"] else ""),
    ]
    if summary["skipped"]:
        parts = ", ".join(f"{code} {n} ({REASONS[code]})" for code, n in summary["skipped"].items())
        lines.append(f"skipped {sum(summary['skipped'].values())}: {parts}; "
                     f"every file in {os.path.join(output_dir, schema.FAILURES_FILENAME)}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides the summary
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.input or not FLAGS.output:
        raise app.UsageError("--input and --output are required")
    settings = Settings(**{f.name: getattr(FLAGS, f.name) for f in dataclasses.fields(Settings)})
    try:
        summary = convert(FLAGS.input, FLAGS.output, settings=settings, workers=FLAGS.workers,
                          vocal_channels=FLAGS.vocal_channels, examples_per_shard=FLAGS.examples_per_shard,
                          progress=FLAGS.progress)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: finished clips are cached; run the same command again to resume", file=sys.stderr)
        return 130
    print(format_summary(summary, FLAGS.output))
    return 0


def run() -> None:
    """Console-script entry point (``ravdess-convert``)."""
    app.run(main)


if __name__ == "__main__":
    run()
