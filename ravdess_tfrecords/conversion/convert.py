"""Convert RAVDESS clips to per-speaker TFRecord shards: the local process pool.

    python -m ravdess_tfrecords.convert --input=/data/ravdess --output=/data/ravdess-tfrecords

Pass 1 preprocesses every audio-video clip in worker processes and caches each
result (``OUTPUT/.cache``, keyed by the settings, the source's fingerprint and
the versions of librosa, numpy, dlib and ffmpeg), so a stopped run resumes
where it was. Pass 2 takes the mean MFCC frame count over the converted clips
as M, pads every clip to it, writes one shard set per actor plus
``ravdess_info.json``, ``failures.jsonl`` and the metadata tensorflow_datasets reads
(``tfds_metadata``: ``dataset_info.json``, ``features.json``, ``label.labels.txt``)
into ``OUTPUT/.staging``, and publishes them (``writer.publish``): a reader sees the old output or the new one.

Bad input never stops the run: each skipped file gets one line naming it and
the reason, and the summary counts them; an unexpected exception in one clip
skips that clip as ``internal``, with its traceback in ``failures.jsonl``.
The machine does stop it (a full disk, no file handles, an output that cannot
be written: ``errors.MachineError``), leaving the last published output intact.
Zero converted clips is exit code 1, and so is a machine error.

Workers stay in the converter's process group and ignore SIGINT (Ctrl-C lets
each finish and cache its clip), and die with the converter however it ends.

The command line is ``cli``: with ``--runner=...`` it runs the same steps as an
Apache Beam pipeline instead (``beam_convert``, which imports this module; this
module imports neither).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import glob
import hashlib
import importlib.metadata
import json
import os
import signal
import sys
import tempfile
import traceback
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from ravdess_tfrecords import __version__, filenames, labels, schema, storage
from ravdess_tfrecords.conversion import audio, ffmpeg, sources, tfds_metadata, writer
from ravdess_tfrecords.conversion import progress as progress_bar
from ravdess_tfrecords.conversion.errors import REASONS, ClipError, MachineError, is_machine_error
from ravdess_tfrecords.conversion.preprocess import Settings, preprocess_clip

CACHE_DIRNAME = ".cache"
VOCAL_CHANNELS = {name: code for code, name in filenames.VOCAL_CHANNELS.items()}
# Skips by design, summarized by count instead of one line per file.
_QUIET = ("not_audio_video", "filtered")
OK_STATUSES = ("converted", "cached")


def library_versions() -> dict[str, str]:
    """Versions of what computes the cached results: librosa, numpy, dlib and the ffmpeg binary."""
    import dlib  # writing half only

    return {"dlib": str(dlib.__version__), "ffmpeg": ffmpeg.version(),
            "librosa": importlib.metadata.version("librosa"), "numpy": np.__version__}


def cache_key(source: sources.Source, settings: Settings, versions: dict[str, str]) -> str:
    """Changes whenever the settings, the source's content, the schema or a library's version may have."""
    blob = json.dumps([schema.SCHEMA_VERSION, source.basename, source.fingerprint, settings.to_dict(), versions],
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _init_worker(parent_pid: int) -> None:
    """Workers stay in the converter's process group, so a signal to the group (``timeout -s KILL``,
    a job scheduler) reaches them, but ignore SIGINT: Ctrl-C stops only the main process, which
    lets each worker finish (and cache) its clip. And a worker dies with the converter."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ffmpeg.die_with_parent(parent_pid)


def preprocess_source(source: sources.Source, settings: Settings, cache_path: str | None = None,
                      threads: int = 0) -> dict:
    """Preprocess one clip into its cache file (or find it cached): a function of (clip, settings).

    ``cache_path`` None (a Beam worker): nothing is cached or read back; a converted clip's
    ``(mfcc, video)`` come in memory, under ``arrays``.

    Never raises for a clip's problem. Returns a dict with ``status``: ``converted`` or
    ``cached`` (with ``frames``, ``duration``, ``finer_search``), a ``REASONS`` code (with
    ``reason``; ``internal`` also with ``traceback``), or ``machine`` (with ``reason``):
    the machine failed writing the cache (or a temporary copy of the clip), and the run must stop.
    """
    result = {"display": source.display} | ({"cache": cache_path} if cache_path else {})
    cache_dir = os.path.dirname(cache_path) if cache_path else None
    try:
        if cache_path is None or not os.path.exists(cache_path):
            try:
                with sources.local_path(source, cache_dir) as path:
                    clip = preprocess_clip(path, settings, threads=threads)
            except ClipError as e:
                return {**result, "status": e.code, "reason": e.message}
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # a corrupt zip member
                return {**result, "status": "unreadable", "reason": f"cannot read it ({type(e).__name__}: {e})"}
            if cache_path is None:
                result["arrays"] = (clip.audio, clip.video)
            else:
                with writer.atomic_path(cache_path) as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, audio=clip.audio, video=clip.video, interval=np.asarray(clip.interval),
                                 boxes=clip.boxes, duration=np.float64(clip.duration),
                                 finer_search=np.bool_(clip.finer_search))
            # What pass 2 needs is in memory: no read back of the file just written.
            return {**result, "status": "converted", "frames": int(clip.audio.shape[1]),
                    "duration": float(clip.duration), "finer_search": bool(clip.finer_search)}
        with np.load(cache_path, allow_pickle=False) as cached:
            return {**result, "status": "cached", "frames": int(cached["audio"].shape[1]),
                    "duration": float(cached["duration"]), "finer_search": bool(cached["finer_search"])}
    except OSError as e:
        if is_machine_error(e, cache_dir or tempfile.gettempdir()):
            return {**result, "status": "machine", "reason": f"{type(e).__name__}: {e}"}
        return {**result, "status": "unreadable", "reason": f"cannot read it ({type(e).__name__}: {e})"}
    except Exception as e:  # noqa: BLE001 -- one clip's bug in librosa, dlib or numpy must not end the run
        return {**result, "status": "internal", "reason": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc()}


def _preprocess_job(job: tuple) -> dict:
    """Worker entry point: ``preprocess_source`` of one job tuple."""
    return preprocess_source(*job)


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


def example(name: filenames.ClipName, source: sources.Source, mfcc: np.ndarray, video: np.ndarray,
            frames: int) -> bytes:
    """One serialized ``tf.train.Example``: MFCCs ``(24, T)`` padded or cut to ``frames``, video, labels."""
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


def _check_writable(output_dir: str, probe_dir: str) -> None:
    """Fail early unless a file can be written in ``probe_dir`` (inside ``output_dir``)."""
    try:
        storage.makedirs(probe_dir)
        writer.write_text(os.path.join(probe_dir, ".writable"), "")
    except OSError as e:
        raise MachineError(f"output directory {output_dir!r} is not writable: {e.strerror or e}") from e


def _machine_error(what: str, error: object, output_dir: str) -> MachineError:
    return MachineError(
        f"{what}: {error}. This is the machine, not the clips: nothing published in {output_dir!r} was "
        "changed (the last complete output is intact). Free space or file handles, or fix the permissions, "
        "and run the same command again (a local run resumes from its cached clips; a Beam run starts over).")


def _failures_text(failures: list[dict]) -> str:
    return "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures)


def convert(inputs: list[str], output_dir: str, *, settings: Settings | None = None, workers: int = 1,
            vocal_channels=("speech",), examples_per_shard: int = 32, progress: bool = True) -> dict:
    """Convert every audio-video clip under ``inputs`` into shards under ``output_dir``.

    Returns:
      The ``summary`` of ``ravdess_info.json`` (found, converted, skipped by reason, cut,
      finer_face_search), plus ``failures`` (one dict per skipped file), ``info`` (the
      whole metadata) and ``reused`` (clips taken from the cache).

    Raises:
      ValueError: an unknown vocal channel; an ``output_dir`` that is not local (the pool
        caches on this machine's disk: a Beam runner writes to any ``tf.io.gfile`` path).
      FileNotFoundError: a missing input.
      MachineError (an OSError): the output or its cache cannot be written (full disk,
        too many open files, no permission); the published output is left as it was.
      RuntimeError: no clip could be converted (``failures.jsonl`` says why, per file).
    """
    if not storage.is_local(output_dir):
        raise ValueError(f"--output={output_dir} is not on this machine's disk, where the local process pool "
                         "caches and writes: give a local folder (and copy it), or run on Apache Beam "
                         "(--runner=DirectRunner, or a cluster's runner), which writes to any tf.io.gfile path")
    settings = settings or Settings()
    plan = prepare(inputs, output_dir, vocal_channels, progress)
    cache_dir = os.path.join(output_dir, CACHE_DIRNAME)
    for pattern in (".*.tmp-*", "ravdess-member-*"):
        for stale in glob.glob(os.path.join(cache_dir, pattern)):
            os.unlink(stale)  # left by a killed run

    # Pass 1: preprocess (parallel, cached).
    # Several workers: each decodes on its share of the cores rather than all of them fighting over all.
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0
    versions = library_versions()
    jobs = [(source, settings,
             os.path.join(cache_dir, f"{name.clip_id}-{cache_key(source, settings, versions)}.npz"), threads)
            for name, source in plan.clips]
    results = []
    pool = None
    if workers > 1 and len(jobs) > 1:
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                   initargs=(os.getpid(),))
    try:
        stream = pool.map(_preprocess_job, jobs) if pool else map(_preprocess_job, jobs)
        for result in progress_bar.bar(stream, len(jobs), "preprocessing", progress):
            if result["status"] == "machine":
                raise _machine_error(f"cannot write the cache {cache_dir!r} ({result['display']})",
                                     result["reason"], output_dir)
            results.append(result)
            record_failure(result, plan.failures, progress)
    except OSError as e:  # starting workers or ffmpeg: no file handles left
        if is_machine_error(e, output_dir):
            raise _machine_error("cannot start the preprocessing", e, output_dir) from e
        raise
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)

    # Pass 2: pad to the corpus mean, write one shard set per actor into staging, publish.
    done = converted(plan, results, inputs, output_dir)
    frames = audio_frames([r["frames"] for _, _, r in done])
    with machine_errors(output_dir), writer.staging(output_dir) as staged:
        shards = write_shards(staged, done, frames, examples_per_shard, progress)
        info = publish(staged, output_dir, plan, done, shards, frames, settings, vocal_channels, versions)
    reused = sum(r["status"] == "cached" for _, _, r in done)
    return {**info["summary"], "failures": plan.failures, "info": info, "reused": reused}


# The pieces below are shared with the Beam pipeline (``beam_convert``), which runs the same
# steps on a runner's workers: one source of truth for what a conversion writes.


@dataclasses.dataclass
class Plan:
    """What a conversion found before preprocessing anything.

    Attributes:
      clips: ``(ClipName, Source)`` to preprocess, sorted by source.
      failures: dicts (``file``, ``code``, ``reason``) of files skipped so far; grows.
      found: media files found plus zips that could not be opened (``summary.found``).
    """

    clips: list[tuple[filenames.ClipName, sources.Source]]
    failures: list[dict]
    found: int


def prepare(inputs: list[str], output_dir: str, vocal_channels, progress: bool, *, cache: bool = True) -> Plan:
    """Check the arguments and the output, discover and classify the sources, report the skipped ones.

    ``inputs`` and ``output_dir`` may be ``tf.io.gfile`` paths. Removes a killed run's staging.
    ``cache`` False (Beam, which caches nothing): no ``.cache/`` is made; the write check probes the staging directory.
    """
    unknown = set(vocal_channels) - set(VOCAL_CHANNELS)
    if unknown:
        raise ValueError(f"unknown vocal channel(s) {sorted(unknown)}; choose from {sorted(VOCAL_CHANNELS)}")
    _check_writable(output_dir, os.path.join(output_dir, CACHE_DIRNAME if cache else writer.STAGING_DIRNAME))
    storage.rmtree(os.path.join(output_dir, writer.STAGING_DIRNAME))
    found, problems = sources.discover(list(inputs))
    clips, failures = _classify(found, {VOCAL_CHANNELS[c] for c in vocal_channels})
    failures += [{"file": display, "code": "unreadable", "reason": reason} for display, reason in problems]
    for f in failures:
        if f["code"] not in _QUIET:
            _say(f"skipped {f['file']}: {f['reason']}", progress)
    return Plan(clips, failures, len(found) + len(problems))


def record_failure(result: dict, failures: list[dict], progress: bool) -> None:
    """Add a skipped clip's ``preprocess_source`` result to ``failures`` and say so (nothing for a converted one)."""
    if result["status"] in OK_STATUSES:
        return
    failures.append({k: result[k] for k in ("traceback",) if k in result}
                    | {"file": result["display"], "code": result["status"], "reason": result["reason"]})
    more = " (traceback in failures.jsonl)" if result["status"] == "internal" else ""
    _say(f"skipped {result['display']}: {result['reason']}{more}", progress)


def converted(plan: Plan, results: list[dict], inputs: list[str], output_dir: str) -> list[tuple]:
    """``(name, source, result)`` of the converted clips (``results`` in ``plan.clips`` order); sorts the failures.

    Raises:
      RuntimeError: none converted; ``failures.jsonl`` is written first, with every file's reason.
    """
    plan.failures.sort(key=lambda f: (f["file"], f["code"]))
    done = [(name, source, r) for (name, source), r in zip(plan.clips, results, strict=True)
            if r["status"] in OK_STATUSES]
    if not done:
        with machine_errors(output_dir):  # every file's reason, as the README promises, even when nothing converted
            writer.write_text(os.path.join(output_dir, schema.FAILURES_FILENAME), _failures_text(plan.failures))
        raise RuntimeError(f"no clip converted from {', '.join(inputs)} ({plan.found} media files found); "
                           f"every file's reason is in {os.path.join(output_dir, schema.FAILURES_FILENAME)}")
    return done


def audio_frames(frames: list[int]) -> int:
    """M, the MFCC frame count every clip is padded or cut to: the mean over the converted clips, rounded."""
    return int(round(float(np.mean(frames))))


@contextlib.contextmanager
def machine_errors(output_dir: str):
    """Turn an ``OSError`` of the machine while writing the output into a ``MachineError`` that says so."""
    try:
        yield
    except MachineError:
        raise
    except OSError as e:
        if is_machine_error(e, output_dir):
            raise _machine_error(f"cannot write the output {output_dir!r}", e, output_dir) from e
        raise


def publish(staged: str, output_dir: str, plan: Plan, done: list[tuple], shards: list[dict], frames: int,
            settings: Settings, vocal_channels, versions: dict[str, str]) -> dict:
    """Write ``failures.jsonl``, the tensorflow_datasets metadata and ``ravdess_info.json`` beside the
    staged shards and publish them all.

    Returns:
      The contents of ``ravdess_info.json``.
    """
    info = dataset_info(done, plan.failures, shards, frames, settings, vocal_channels,
                        found=plan.found, versions=versions)
    writer.publish(staged, output_dir, shards, {
        schema.FAILURES_FILENAME: _failures_text(plan.failures),
        **tfds_metadata.files(shards, frames),
        schema.INFO_FILENAME: json.dumps(info, indent=2, sort_keys=True) + "\n",
    })
    return info


def load_cached(cache_path: str) -> tuple[np.ndarray, np.ndarray]:
    """A cached clip's ``(mfcc, video)``: float32 ``(24, T)`` and uint8 ``(6, 64, 64, 3)``."""
    with np.load(cache_path, allow_pickle=False) as cached:
        return cached["audio"], cached["video"]


def write_shards(output_dir: str, done: list[tuple], frames: int, examples_per_shard: int,
                 progress: bool = False) -> list[dict]:
    """Write the shards of every actor in ``done`` (``(name, source, result)``, cached clips) into ``output_dir``.

    Returns:
      The shard list of ``ravdess_info.json``, in actor and shard order.
    """
    by_actor = collections.defaultdict(list)
    for name, source, r in done:
        by_actor[name.actor].append((name, source, functools.partial(load_cached, r["cache"])))
    shards = []
    for actor in progress_bar.bar(sorted(by_actor), len(by_actor), "writing shards", progress, unit="actor"):
        shards += write_actor(output_dir, actor, by_actor[actor], frames, examples_per_shard)
    return shards


def write_actor(output_dir: str, actor: int, clips: list[tuple], frames: int, examples_per_shard: int) -> list[dict]:
    """Write one actor's shards: its clips in ``clip_id`` order, each padded or cut to ``frames``.

    Args:
      clips: ``(name, source, arrays)``; ``arrays()`` gives ``(mfcc, video)``, called while the
        clip's shard is written (so only one clip's arrays need be in memory).

    Returns:
      The actor's shard dicts (``writer.write_actor_shards``).
    """
    clips = sorted(clips, key=lambda clip: clip[0].clip_id)
    records = (example(name, source, *arrays(), frames) for name, source, arrays in clips)
    return writer.write_actor_shards(output_dir, actor, records, len(clips), examples_per_shard)


def dataset_info(done: list[tuple], failures: list[dict], shards: list[dict], frames: int, settings: Settings,
                 vocal_channels, *, found: int, versions: dict[str, str]) -> dict:
    """The contents of ``ravdess_info.json`` (a pure function of its arguments).

    ``failures`` go in without their tracebacks (those stay in ``failures.jsonl``).
    """
    names = [name for name, _, _ in done]
    cut = [{"file": r["display"], "seconds": round(r["duration"], 3)}
           for _, _, r in sorted(done, key=lambda item: item[2]["display"])
           if settings.max_clip_seconds and r["duration"] > settings.max_clip_seconds]
    finer = sorted(r["display"] for _, _, r in done if r["finer_search"])
    summary = {
        "found": found,
        "converted": len(done),
        "skipped": dict(sorted(collections.Counter(f["code"] for f in failures).items())),
        "cut": len(cut),
        "finer_face_search": len(finer),
    }
    return {
        "name": "ravdess",
        "schema_version": schema.SCHEMA_VERSION,
        "version": __version__,
        "class_names": list(labels.CLASS_NAMES),
        "num_classes": labels.NUM_CLASSES,
        "audio_frames": frames,
        "audio_shape": list(schema.audio_shape(frames)),
        "video_shape": list(schema.VIDEO_SHAPE),
        "preprocessing": {**settings.to_dict(), "n_mfcc": schema.NUM_MFCC,
                          "vocal_channels": sorted(vocal_channels), "libraries": versions},
        "num_examples": len(done),
        "counts": {
            "per_actor": _count(n.actor for n in names),
            "per_label": _count(n.label() for n in names),
            "per_emotion": _count(n.emotion for n in names),
        },
        "shards": shards,
        "summary": summary,
        "cut": cut,
        "finer_face_search": finer,
        "failures": [{k: v for k, v in f.items() if k != "traceback"} for f in failures],
    }


def _count(values) -> dict[str, int]:
    counts = collections.Counter(values)
    return {str(k): counts[k] for k in sorted(counts)}


def format_summary(summary: dict, output_dir: str) -> str:
    """The closing lines: found / converted / cut / found by the finer face search / skipped by reason."""
    info = summary["info"]
    lines = [
        f"found {summary['found']} media files",
        f"converted {summary['converted']} clips of {len(info['counts']['per_actor'])} actors into "
        f"{len(info['shards'])} shards (audio {tuple(info['audio_shape'])}, video {tuple(info['video_shape'])})"
        f" -> {output_dir}" + (f" ({summary['reused']} reused from an earlier run)" if summary["reused"] else ""),
    ]
    if info["cut"]:
        shown = ", ".join(f"{c['file']} ({c['seconds']:.1f} s)" for c in info["cut"][:3])
        more = f" and {len(info['cut']) - 3} more" if len(info["cut"]) > 3 else ""
        lines.append(f"cut {len(info['cut'])} clips longer than {info['preprocessing']['max_clip_seconds']:g} s "
                     f"to their start: {shown}{more} (all listed in {schema.INFO_FILENAME})")
    if summary["finer_face_search"]:
        lines.append(f"{summary['finer_face_search']} clips had their face found only by the finer search "
                     f"(larger, upsampled; listed in {schema.INFO_FILENAME})")
    if summary["skipped"]:
        parts = ", ".join(f"{code} {n} ({REASONS[code]})" for code, n in summary["skipped"].items())
        lines.append(f"skipped {sum(summary['skipped'].values())}: {parts}; "
                     f"every file in {os.path.join(output_dir, schema.FAILURES_FILENAME)}")
    return "\n".join(lines)
