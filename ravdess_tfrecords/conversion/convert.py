"""Convert RAVDESS clips to per-speaker TFRecord (or ArrayRecord) shards: the local process pool.

    python -m ravdess_tfrecords.convert --input=/data/ravdess --output=/data/ravdess-tfrecords

One dataset holds one modality (``schema.MODALITIES``): the audio-video clips
(modality 01: audio and face crops) or RAVDESS's audio-only recordings
(modality 03: audio only, no face step), chosen by ``modality`` or, with
``"auto"``, by what the input holds (``choose_modality``).

Pass 1 preprocesses every clip in worker processes and caches each
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
Clips are preprocessed in worker processes (one even with ``workers=1``), one
clip at a time each: a worker that dies (a segfault in a native library, the
out-of-memory killer) costs only its clip, skipped as ``crashed`` with the
signal or exit code, and is replaced. ``OUTPUT/.cache/crashes.json`` counts
each clip's crashes, saved however pass 1 ends (Ctrl-C and machine errors too):
one that crashed in two runs is not tried again.
The machine does stop it (a full disk, no file handles, an output that cannot
be written: ``errors.MachineError``), leaving the last published output intact.
Zero converted clips is exit code 1, and so is a machine error.

Workers stay in the converter's process group and ignore SIGINT (Ctrl-C lets
each finish and cache its clip), and die with the converter however it ends.

Test hook: ``RAVDESS_CONVERT_TEST_CRASH=NAME[,NAME...]`` makes the worker that
preprocesses a clip of that file name SIGKILL itself, a real process death (as
the out-of-memory killer would cause), for the tests of ``crashed``.

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
from collections.abc import Callable
from multiprocessing import connection, get_all_start_methods, get_context

import numpy as np

from ravdess_tfrecords import __version__, _cli, filenames, labels, schema, storage
from ravdess_tfrecords.conversion import audio, ffmpeg, sources, tfds_metadata, writer
from ravdess_tfrecords.conversion import progress as progress_bar
from ravdess_tfrecords.conversion.errors import MACHINE_ERRNOS, REASONS, ClipError, MachineError, is_machine_error
from ravdess_tfrecords.conversion.preprocess import Settings, preprocess_audio, preprocess_clip
from ravdess_tfrecords.errors import UserError

CACHE_DIRNAME = ".cache"
VOCAL_CHANNELS = {name: code for code, name in filenames.VOCAL_CHANNELS.items()}
# Skips by design, summarized by count instead of one line per file.
_QUIET = ("other_modality", "filtered")
MODALITY_CHOICES = ("auto", *schema.MODALITIES)
OK_STATUSES = ("converted", "cached")
CRASHES_FILENAME = "crashes.json"  # in .cache/: {cache file name: {"file", "crashes", "how"}}
MAX_CRASHES = 2  # a clip whose worker died in this many runs is not tried again
TEST_CRASH_ENV = "RAVDESS_CONVERT_TEST_CRASH"  # test hook (module docstring)
# The ranges of the run's numeric arguments (``_cli.range_problem``), as of the settings' (``SETTING_RANGES``).
RUN_RANGES = {"workers": (1, None), "examples_per_shard": (1, None)}
WORKER_PRELOAD = "ravdess_tfrecords.conversion.worker_preload"  # what the forkserver loads for every worker


def library_versions() -> dict[str, str]:
    """Versions of what computes the cached results: librosa, numpy, dlib and the ffmpeg binary."""
    import dlib  # writing half only

    return {"dlib": str(dlib.__version__), "ffmpeg": ffmpeg.version(),
            "librosa": importlib.metadata.version("librosa"), "numpy": np.__version__}


def cache_key(source: sources.Source, settings: Settings, versions: dict[str, str],
              modality: str = schema.DEFAULT_MODALITY) -> str:
    """Changes whenever the settings, the modality, the source's content, the schema, a library's version or the
    MFCCs' BLAS threads (a cache of a version that left them to the machine is recomputed) may have."""
    blob = json.dumps([schema.SCHEMA_VERSION, source.basename, source.fingerprint, settings.to_dict(), versions,
                       modality, audio.MFCC_BLAS_THREADS], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _init_worker(converter_pid: int) -> None:
    """Workers stay in the converter's process group, so a signal to the group (``timeout -s KILL``,
    a job scheduler) reaches them, but ignore SIGINT: Ctrl-C stops only the main process, which
    lets each worker finish (and cache) its clip. And a worker dies with the converter: with its parent,
    which is the converter (spawned) or the forkserver, which exits when the converter ends however it ends
    (its pipe from the converter closes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ffmpeg.die_with_parent(converter_pid)


def worker_context():
    """The pool's ``multiprocessing`` context: a forkserver that imports ``WORKER_PRELOAD`` where the platform
    has one (a single-threaded server: forking from it is safe even inside a process that runs TensorFlow's
    threads), else spawn. Both start workers without the converter's state."""
    if "forkserver" not in get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload([WORKER_PRELOAD])  # once per process: a running forkserver keeps its own
    return context


def preprocess_source(source: sources.Source, settings: Settings, cache_path: str | None = None,
                      threads: int = 0, modality: str = schema.DEFAULT_MODALITY) -> dict:
    """Preprocess one clip into its cache file (or find it cached): a function of (clip, settings, modality).

    ``modality`` ``audio``: ``preprocess_audio`` (no face step; ``video`` None), else ``preprocess_clip``.

    ``cache_path`` None (a Beam worker): nothing is cached or read back; a converted clip's
    ``(mfcc, video)`` come in memory, under ``arrays``.

    Never raises for a clip's problem. Returns a dict with ``status``: ``converted`` or
    ``cached`` (with ``frames``, ``duration``, ``finer_search``), a ``REASONS`` code (with
    ``reason``; ``internal`` also with ``traceback``), or ``machine`` (with ``reason``):
    the machine failed writing the cache (or a temporary copy of the clip), and the run must stop.
    """
    result = {"display": source.display, "name": source.name} | ({"cache": cache_path} if cache_path else {})
    cache_dir = os.path.dirname(cache_path) if cache_path else None
    try:
        if cache_path is None or not os.path.exists(cache_path):
            try:
                with sources.local_path(source, cache_dir) as path:
                    _test_crash_hook(source)
                    clip = (preprocess_audio(path, settings) if modality == "audio"
                            else preprocess_clip(path, settings, threads=threads))
            except ClipError as e:
                return {**result, "status": e.code, "reason": e.message}
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # a corrupt zip member
                return {**result, "status": "unreadable", "reason": f"cannot read it ({type(e).__name__}: {e})"}
            if cache_path is None:
                result["arrays"] = (clip.audio, clip.video)
            else:
                with writer.atomic_path(cache_path) as tmp:
                    faces = {} if clip.video is None else {"video": clip.video, "boxes": clip.boxes}
                    with open(tmp, "wb") as f:
                        np.savez(f, audio=clip.audio, interval=np.asarray(clip.interval), **faces,
                                 duration=np.float64(clip.duration), finer_search=np.bool_(clip.finer_search))
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


def _test_crash_hook(source: sources.Source) -> None:
    """The test hook of the module docstring: a real SIGKILL of this process on a named clip."""
    names = os.environ.get(TEST_CRASH_ENV)
    if names and source.basename in names.split(","):
        os.kill(os.getpid(), signal.SIGKILL)


def _preprocess_job(job: tuple) -> dict:
    """``preprocess_source`` of one job tuple."""
    return preprocess_source(*job)


def _worker_main(conn, converter_pid: int) -> None:
    """A pool worker: say it started, then preprocess the jobs that come through ``conn`` one at a
    time, until ``None`` or EOF."""
    with contextlib.suppress(EOFError, OSError):  # the converter closed its end: it is stopping
        _init_worker(converter_pid)
        conn.send(_READY)
        while (job := conn.recv()) is not None:
            conn.send(_preprocess_job(job))


_READY = "ready"


def _death(exitcode: int | None) -> str:
    """How a worker process ended, in words: its signal or its exit code."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name} (signal {-exitcode})"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


class _Pool:
    """Worker processes (``worker_context``), one clip at a time each.

    ``run`` yields ``(index, result)`` as clips finish. A worker that dies with its clip (a native
    crash, the out-of-memory killer) gives that clip a ``crashed`` result naming the signal or exit
    code, and a fresh worker takes the next clip: no other clip is lost. ``close`` lets each
    worker finish its clip (Ctrl-C) and waits for them all.
    """

    def __init__(self, size: int):
        self.size, self.context, self.workers = size, worker_context(), []

    def _start(self) -> tuple:
        mine, theirs = self.context.Pipe()
        process = self.context.Process(target=_worker_main, args=(theirs, os.getpid()), daemon=True,
                                       name="ravdess-convert-worker")
        process.start()
        theirs.close()
        self.workers.append((process, mine))
        return process, mine

    def run(self, jobs: list[tuple]):
        pending = collections.deque(enumerate(jobs))
        idle, busy, started = [], {}, set()  # busy: connection -> (process, index, job)
        while pending or busy:
            while pending and len(busy) < self.size:
                process, conn = idle.pop() if idle else self._start()
                index, job = pending.popleft()
                try:
                    conn.send(job)
                except OSError:  # it died before this clip (idle, or starting): the clip goes to another
                    pending.appendleft((index, job))
                    self._lost(process, conn, conn in started)
                    continue
                busy[conn] = (process, index, job)
            for conn in connection.wait(list(busy)):
                process, index, job = busy.pop(conn)
                try:
                    result = conn.recv()
                except (EOFError, OSError):  # the worker died
                    self._lost(process, conn, conn in started)
                    source, how = job[0], _death(process.exitcode)
                    result = {"display": source.display, "name": source.name, "cache": job[2],
                              "status": "crashed", "how": how,
                              "reason": f"its worker process died on it, {how}: a crash in a native library, "
                                        "or the out-of-memory killer; the other clips went on"}
                else:
                    if result == _READY:
                        started.add(conn)
                        busy[conn] = (process, index, job)
                        continue
                    idle.append((process, conn))
                yield index, result

    def _lost(self, process, conn, started: bool) -> None:
        """Forget a dead worker. One that died before it said it started could not start: the machine's
        (no file handles, no memory) or the installation's fault, never a clip's, so the run stops."""
        process.join()
        conn.close()
        self.workers.remove((process, conn))
        if not started:
            raise RuntimeError(f"a worker process could not start ({_death(process.exitcode)}; "
                               "its error is printed above)")

    def close(self) -> None:
        for _, conn in self.workers:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        for process, _ in self.workers:
            process.join()
        self.workers = []


def _load_crashes(cache_dir: str) -> dict:
    try:
        with open(os.path.join(cache_dir, CRASHES_FILENAME), encoding="utf-8") as f:
            crashes = json.load(f)
        return crashes if isinstance(crashes, dict) else {}
    except (OSError, ValueError):
        return {}


def _not_retried(source: sources.Source, cache_path: str, record: dict, cache_dir: str) -> dict:
    return {"display": source.display, "name": source.name, "cache": cache_path, "status": "crashed",
            "not_retried": True,
            "reason": f"its worker process died on it in {record['crashes']} runs (last {record['how']}); "
                      f"not tried again: delete {os.path.join(cache_dir, CRASHES_FILENAME)} to retry it"}


def _say(message: str, progress: bool) -> None:
    if progress:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def _parse_names(found: list[sources.Source]) -> list[tuple[sources.Source, filenames.ClipName | ValueError]]:
    out = []
    for source in found:
        try:
            out.append((source, filenames.parse(source.basename)))
        except ValueError as e:
            out.append((source, e))
    return out


def check_run_arguments(**values: object) -> None:
    """Raise ``UserError`` for the first of ``values`` (``workers``, ``examples_per_shard``) outside ``RUN_RANGES``."""
    problem = _cli.out_of_range(values, RUN_RANGES)
    if problem:
        raise UserError(problem)


def _check_modality_choice(modality: str) -> None:
    if modality not in MODALITY_CHOICES:
        raise UserError(f"unknown modality {modality!r}; choose from {', '.join(MODALITY_CHOICES)}")


def choose_modality(requested: str, codes: list[int]) -> tuple[str, str | None]:
    """The modality to convert, and a line to print when the input holds more than one (else None).

    Args:
      requested: ``auto`` or a key of ``schema.MODALITIES``.
      codes: the RAVDESS modality code of every file found with a RAVDESS name.

    ``auto`` takes the audio-video clips when there are any (the product's input), else the
    audio-only recordings when there are any, else ``audio_video`` (then nothing converts and
    the run says why, file by file).
    """
    _check_modality_choice(requested)
    counts = collections.Counter(codes)
    chosen = requested
    if requested == "auto":
        chosen = next((m for m, code in schema.MODALITIES.items() if counts[code]), schema.DEFAULT_MODALITY)
    if len([c for c in counts if counts[c]]) < 2:
        return chosen, None
    found = " and ".join(f"{counts[c]} {filenames.MODALITIES[c]} ({c:02d})" for c in sorted(counts))
    others = [m for m, code in schema.MODALITIES.items() if m != chosen and counts[code]]
    hint = f" (--modality={others[0]} takes the {filenames.MODALITIES[schema.MODALITIES[others[0]]]} ones)" \
        if others else ""
    how = "by --modality" if requested != "auto" else "one modality per output directory"
    return chosen, (f"found {found} files: converting the {counts[schema.MODALITIES[chosen]]} "
                    f"{filenames.MODALITIES[schema.MODALITIES[chosen]]} ones ({how}){hint}")


def _classify(named: list[tuple], channels: set[int], modality: str):
    """Split sources into clips to preprocess and skipped ones (by name alone)."""
    clips, skipped, seen = [], [], {}
    code = schema.MODALITIES[modality]
    for source, name in named:
        if isinstance(name, ValueError):
            skipped.append({"file": source.name, "code": "bad_name", "reason": str(name)})
            continue
        if name.modality != code:
            skipped.append({"file": source.name, "code": "other_modality",
                            "reason": f"modality {name.modality:02d} ({filenames.MODALITIES[name.modality]}); "
                                      f"this conversion takes {modality} ({code:02d}) files"})
        elif name.vocal_channel not in channels:
            skipped.append({"file": source.name, "code": "filtered",
                            "reason": f"vocal channel {name.vocal_channel_name} not selected"})
        elif name.clip_id in seen:
            first = seen[name.clip_id]
            where = f" (this copy: {source.display})" if source.display != source.name else ""
            skipped.append({"file": source.name, "code": "duplicate",
                            "reason": f"clip {name.clip_id} already taken from {first}{where}"})
        else:
            seen[name.clip_id] = source.display
            clips.append((name, source))
    return clips, skipped


def example(name: filenames.ClipName, source: sources.Source, mfcc: np.ndarray, video: np.ndarray | None,
            frames: int) -> bytes:
    """One serialized ``tf.train.Example``: MFCCs ``(24, T)`` padded or cut to ``frames``, video (None: an
    audio-only example), labels."""
    faces = {} if video is None else {"video": video}
    return schema.serialize({
        "audio": audio.model_input(mfcc, frames),
        **faces,
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
    }, frames, schema.DEFAULT_MODALITY if video is not None else "audio")


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
            vocal_channels=("speech",), examples_per_shard: int = 32, progress: bool = True,
            modality: str = "auto", file_format: str = schema.DEFAULT_FILE_FORMAT,
            before_tensorflow: Callable[[], object] | None = None) -> dict:
    """Convert every clip of one modality under ``inputs`` into shards under ``output_dir``.

    ``modality``: ``audio_video`` (modality-01 clips), ``audio`` (modality-03 recordings) or
    ``auto`` (``choose_modality``: audio-video when the input holds any).
    ``file_format``: ``tfrecord`` or ``array_record`` (``schema.FILE_FORMATS``): the same examples either way.
    ``before_tensorflow``: called once where pass 2 first needs TensorFlow, after pass 1 converted a clip
    (the command line imports it there without its start-up lines).

    Returns:
      The ``summary`` of ``ravdess_info.json`` (found, converted, skipped by reason, cut,
      finer_face_search), plus ``failures`` (one dict per skipped file), ``info`` (the
      whole metadata) and ``reused`` (clips taken from the cache).

    Raises:
      ValueError (``UserError``): ``workers`` or ``examples_per_shard`` below 1 (``RUN_RANGES``);
        an unknown vocal channel; an ``output_dir`` that is not local (the pool
        caches on this machine's disk: a Beam runner writes to any ``tf.io.gfile`` path).
      FileNotFoundError: a missing input.
      MachineError (an OSError): the output or its cache cannot be written (full disk,
        too many open files, no permission); the published output is left as it was.
      RuntimeError: no clip could be converted (``failures.jsonl`` says why, per file).
    """
    check_run_arguments(workers=workers, examples_per_shard=examples_per_shard)  # before any work
    inputs, output_dir = [storage.expand(path) for path in inputs], storage.expand(output_dir)
    if not storage.is_local(output_dir):
        raise UserError(f"--output={output_dir} is not on this machine's disk, where the local process pool "
                         "caches and writes: give a local folder (and copy it), or run on Apache Beam "
                         "(--runner=DirectRunner, or a cluster's runner), which writes to any tf.io.gfile path")
    with _machine_stops(output_dir):
        return _convert(inputs, output_dir, settings or Settings(), workers, vocal_channels, examples_per_shard,
                        progress, modality, file_format, before_tensorflow or (lambda: None))


@contextlib.contextmanager
def _machine_stops(output_dir: str):
    """An ``OSError`` of the machine anywhere (no file handles for ffmpeg's pipes, a full disk) is a
    ``MachineError`` that says so, not a bare errno."""
    try:
        yield
    except MachineError:
        raise
    except OSError as e:
        if e.errno in MACHINE_ERRNOS:
            raise _machine_error("the machine stopped the conversion", e, output_dir) from e
        raise


def _convert(inputs: list[str], output_dir: str, settings: Settings, workers: int, vocal_channels,
             examples_per_shard: int, progress: bool, modality: str, file_format: str,
             before_tensorflow: Callable[[], object]) -> dict:
    plan = prepare(inputs, output_dir, vocal_channels, progress, modality=modality, file_format=file_format)
    cache_dir = os.path.join(output_dir, CACHE_DIRNAME)
    _remove_stale(cache_dir)  # left by a killed run

    # Pass 1: preprocess (parallel, cached).
    # Several workers: each decodes on its share of the cores rather than all of them fighting over all.
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0
    versions = library_versions()
    jobs = [(source, settings,
             os.path.join(cache_dir, f"{name.clip_id}-{cache_key(source, settings, versions, plan.modality)}.npz"),
             threads, plan.modality)
            for name, source in plan.clips]
    crashes = _load_crashes(cache_dir)
    results: list[dict | None] = [None] * len(jobs)
    to_run = []
    for index, job in enumerate(jobs):
        record = crashes.get(os.path.basename(job[2]))
        if os.path.exists(job[2]):
            results[index] = _preprocess_job(job)  # cached: read here, no worker needed
        elif record and record.get("crashes", 0) >= MAX_CRASHES:
            results[index] = _not_retried(job[0], job[2], record, cache_dir)
        else:
            to_run.append(index)
    for index in range(len(jobs)):
        if results[index] is not None:
            record_failure(results[index], plan.failures, progress)
    # Every clip runs in a worker process, even with workers=1: a worker's native crash costs one clip.
    pool = _Pool(min(workers, len(to_run))) if to_run else None
    finished = False
    try:
        stream = pool.run([jobs[i] for i in to_run]) if pool else iter(())
        for k, result in progress_bar.bar(stream, len(to_run), "preprocessing", progress):
            if result["status"] == "machine":
                raise _machine_error(f"cannot write the cache {cache_dir!r} ({result['display']})",
                                     result["reason"], output_dir)
            results[to_run[k]] = result
            record_failure(result, plan.failures, progress)
    except OSError as e:  # starting workers or ffmpeg: no file handles left
        if is_machine_error(e, output_dir):
            raise _machine_error("cannot start the preprocessing", e, output_dir) from e
        raise
    else:
        finished = True
    finally:
        if pool:
            pool.close()
        _remove_stale(cache_dir)  # a crashed worker's temporary files
        # Every way out (Ctrl-C, a machine error) keeps this run's crashes; on a failed one the failure is
        # what is reported, not a second one of writing the record.
        with contextlib.nullcontext() if finished else contextlib.suppress(OSError):
            _save_crashes(cache_dir, crashes, results, output_dir)

    # Pass 2: pad to the corpus mean, write one shard set per actor into staging, publish.
    done = converted(plan, results, inputs, output_dir)
    frames = audio_frames([r["frames"] for _, _, r in done])
    before_tensorflow()  # the examples are tf.train.Example
    with machine_errors(output_dir), writer.staging(output_dir) as staged:
        shards = write_shards(staged, done, frames, examples_per_shard, progress, plan.file_format)
        info = publish(staged, output_dir, plan, done, shards, frames, settings, vocal_channels, versions)
    reused = sum(r["status"] == "cached" for _, _, r in done)
    not_retried = sum(bool(r.get("not_retried")) for r in results)
    return {**info["summary"], "failures": plan.failures, "info": info, "reused": reused,
            "not_retried": not_retried, "crash_record": os.path.join(cache_dir, CRASHES_FILENAME)}


def _remove_stale(cache_dir: str) -> None:
    """Temporary files of a killed run or a crashed worker."""
    for pattern in (".*.tmp-*", "ravdess-member-*"):
        for stale in glob.glob(os.path.join(cache_dir, pattern)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)


def _save_crashes(cache_dir: str, crashes: dict, results: list[dict | None], output_dir: str) -> None:
    """Count this run's crashes into ``.cache/crashes.json`` (atomically); forget the clips that converted.
    ``results``: None for a clip not finished (a stopped run)."""
    updated = dict(crashes)
    for result in results:
        key = os.path.basename(result["cache"]) if result and "cache" in result else None
        if key is None:
            continue
        if result["status"] == "crashed" and not result.get("not_retried"):
            updated[key] = {"file": result["name"], "how": result["how"],
                            "crashes": crashes.get(key, {}).get("crashes", 0) + 1}
        elif result["status"] in OK_STATUSES:
            updated.pop(key, None)
    if updated != crashes:
        with machine_errors(output_dir):
            path = os.path.join(cache_dir, CRASHES_FILENAME)
            if updated:
                writer.write_text(path, json.dumps(updated, indent=1, sort_keys=True) + "\n")
            else:
                os.unlink(path)


# The pieces below are shared with the Beam pipeline (``beam_convert``), which runs the same
# steps on a runner's workers: one source of truth for what a conversion writes.


@dataclasses.dataclass
class Plan:
    """What a conversion found before preprocessing anything.

    Attributes:
      clips: ``(ClipName, Source)`` to preprocess, sorted by source.
      modality: what the output holds (``schema.MODALITIES``).
      failures: dicts (``file``, ``code``, ``reason``) of files skipped so far; grows.
      found: media files found plus zips that could not be opened (``summary.found``).
      file_format: how the shards are stored (``schema.FILE_FORMATS``: ``tfrecord`` or ``array_record``).
    """

    clips: list[tuple[filenames.ClipName, sources.Source]]
    failures: list[dict]
    found: int
    modality: str = schema.DEFAULT_MODALITY
    file_format: str = schema.DEFAULT_FILE_FORMAT


def prepare(inputs: list[str], output_dir: str, vocal_channels, progress: bool, *, cache: bool = True,
            modality: str = "auto", file_format: str = schema.DEFAULT_FILE_FORMAT) -> Plan:
    """Check the arguments and the output, discover and classify the sources, choose the modality
    (``choose_modality``), report the skipped ones.

    ``inputs`` and ``output_dir`` may be ``tf.io.gfile`` paths. Removes a killed run's staging.
    An input with no media file at all is a ``UserError`` before anything is written.
    ``cache`` False (Beam, which caches nothing): no ``.cache/`` is made; the write check probes the staging directory.
    """
    unknown = set(vocal_channels) - set(VOCAL_CHANNELS)
    if unknown:
        raise UserError(f"unknown vocal channel(s) {sorted(unknown)}; choose from {sorted(VOCAL_CHANNELS)}")
    _check_modality_choice(modality)  # before anything is searched or written
    schema.check_file_format(file_format)
    found, problems = sources.discover(list(inputs))
    if not found and not problems:  # before the write check, which would leave an empty OUTPUT/.cache/
        raise _nothing_to_convert(inputs)
    _check_writable(output_dir, os.path.join(output_dir, CACHE_DIRNAME if cache else writer.STAGING_DIRNAME))
    storage.rmtree(os.path.join(output_dir, writer.STAGING_DIRNAME))
    named = _parse_names(found)
    modality, mixed = choose_modality(modality, [n.modality for _, n in named if not isinstance(n, ValueError)])
    if mixed:
        _say(mixed, progress)
    clips, failures = _classify(named, {VOCAL_CHANNELS[c] for c in vocal_channels}, modality)
    failures += [{"file": display, "code": "unreadable", "reason": reason} for display, reason in problems]
    for f in failures:
        if f["code"] not in _QUIET:
            _say(f"skipped {f['file']}: {f['reason']}", progress)
    return Plan(clips, failures, len(found) + len(problems), modality, file_format)


def _nothing_to_convert(inputs: list[str]) -> UserError:
    """The error of an input with no media file at all: what was searched."""
    folders = sources.count_folders(list(inputs))
    return UserError(f"nothing to convert: no {'/'.join(sources.MEDIA_EXTENSIONS)} or .zip files under "
                     f"{', '.join(inputs)} (searched {folders} folder{'' if folders == 1 else 's'})")


def record_failure(result: dict, failures: list[dict], progress: bool) -> None:
    """Add a skipped clip's ``preprocess_source`` result to ``failures`` and say so (nothing for a converted one)."""
    if result["status"] in OK_STATUSES:
        return
    failures.append({k: result[k] for k in ("traceback",) if k in result}
                    | {"file": result["name"], "code": result["status"], "reason": result["reason"]})
    more = " (traceback in failures.jsonl)" if result["status"] == "internal" else ""
    _say(f"skipped {result['display']}: {result['reason']}{more}", progress)


def converted(plan: Plan, results: list[dict], inputs: list[str], output_dir: str) -> list[tuple]:
    """``(name, source, result)`` of the converted clips (``results`` in ``plan.clips`` order); sorts the failures.

    Raises:
      RuntimeError: none converted; ``failures.jsonl`` is written first, with every file's reason
        (no media file found at all: the message says what was searched, and nothing is written).
    """
    plan.failures.sort(key=lambda f: (f["file"], f["code"]))
    done = [(name, source, r) for (name, source), r in zip(plan.clips, results, strict=True)
            if r["status"] in OK_STATUSES]
    if not plan.found:  # nothing to give a reason for: say what was searched, write no empty failures.jsonl
        raise _nothing_to_convert(inputs)
    if not done:
        with machine_errors(output_dir):  # every file's reason (docs/converting.md), even when nothing converted
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
                        found=plan.found, versions=versions, modality=plan.modality, file_format=plan.file_format)
    writer.publish(staged, output_dir, shards, {
        schema.FAILURES_FILENAME: _failures_text(plan.failures),
        **tfds_metadata.files(shards, frames, plan.modality, plan.file_format),
        schema.INFO_FILENAME: json.dumps(info, indent=2, sort_keys=True) + "\n",
    })
    return info


def load_cached(cache_path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A cached clip's ``(mfcc, video)``: float32 ``(24, T)`` and uint8 ``(6, 64, 64, 3)`` (None: audio only)."""
    with np.load(cache_path, allow_pickle=False) as cached:
        return cached["audio"], (cached["video"] if "video" in cached.files else None)


def write_shards(output_dir: str, done: list[tuple], frames: int, examples_per_shard: int,
                 progress: bool = False, file_format: str = schema.DEFAULT_FILE_FORMAT) -> list[dict]:
    """Write the shards of every actor in ``done`` (``(name, source, result)``, cached clips) into ``output_dir``.

    Returns:
      The shard list of ``ravdess_info.json``, in actor and shard order.
    """
    by_actor = collections.defaultdict(list)
    for name, source, r in done:
        by_actor[name.actor].append((name, source, functools.partial(load_cached, r["cache"])))
    shards = []
    for actor in progress_bar.bar(sorted(by_actor), len(by_actor), "writing shards", progress, unit="actor"):
        shards += write_actor(output_dir, actor, by_actor[actor], frames, examples_per_shard, file_format)
    return shards


def write_actor(output_dir: str, actor: int, clips: list[tuple], frames: int, examples_per_shard: int,
                file_format: str = schema.DEFAULT_FILE_FORMAT) -> list[dict]:
    """Write one actor's shards: its clips in ``clip_id`` order, each padded or cut to ``frames``.

    Args:
      clips: ``(name, source, arrays)``; ``arrays()`` gives ``(mfcc, video)``, called while the
        clip's shard is written (so only one clip's arrays need be in memory).

    Returns:
      The actor's shard dicts (``writer.write_actor_shards``).
    """
    clips = sorted(clips, key=lambda clip: clip[0].clip_id)
    records = (example(name, source, *arrays(), frames) for name, source, arrays in clips)
    return writer.write_actor_shards(output_dir, actor, records, len(clips), examples_per_shard, file_format)


def dataset_info(done: list[tuple], failures: list[dict], shards: list[dict], frames: int, settings: Settings,
                 vocal_channels, *, found: int, versions: dict[str, str],
                 modality: str = schema.DEFAULT_MODALITY, file_format: str = schema.DEFAULT_FILE_FORMAT) -> dict:
    """The contents of ``ravdess_info.json`` (a pure function of its arguments).

    ``failures`` go in without their tracebacks (those stay in ``failures.jsonl``).
    """
    names = [name for name, _, _ in done]
    cut = [{"file": r["name"], "seconds": round(r["duration"], 3)}
           for _, _, r in sorted(done, key=lambda item: item[2]["name"])
           if settings.max_clip_seconds and r["duration"] > settings.max_clip_seconds]
    finer = sorted(r["name"] for _, _, r in done if r["finer_search"])
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
        "modality": modality,
        "file_format": file_format,
        "audio_shape": list(schema.audio_shape(frames)),
        "video_shape": list(schema.VIDEO_SHAPE) if modality == "audio_video" else None,
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


def _shapes(info: dict) -> str:
    if info.get("video_shape") is None:
        return f"audio {tuple(info['audio_shape'])}, audio only"
    return f"audio {tuple(info['audio_shape'])}, video {tuple(info['video_shape'])}"


def format_summary(summary: dict, output_dir: str) -> str:
    """The closing lines: found / converted / cut / found by the finer face search / skipped by reason."""
    info = summary["info"]
    lines = [
        f"found {summary['found']} media files",
        f"converted {summary['converted']} clips of {len(info['counts']['per_actor'])} actors into "
        f"{len(info['shards'])} shards ({_shapes(info)})"
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
    if summary.get("not_retried"):
        lines.append(f"{summary['not_retried']} clips were not tried again: their worker process died on them in "
                     f"{MAX_CRASHES} runs (listed as crashed in {schema.FAILURES_FILENAME}); delete "
                     f"{summary['crash_record']} to retry them")
    return "\n".join(lines)
