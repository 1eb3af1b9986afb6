"""The conversion as an Apache Beam pipeline: ``python -m ravdess_tfrecords.convert --runner=...``.

    python -m ravdess_tfrecords.convert --input=gs://BUCKET/ravdess --output=gs://BUCKET/ravdess-tfrecords \\
        --runner=DataflowRunner --project=PROJECT --region=REGION --temp_location=gs://BUCKET/tmp \\
        --extra_package=dist/ravdess_tfrecords-VERSION.tar.gz

The same steps and functions as the local pool (``convert``), so the shards (TFRecord or, with
``--file_format=array_record``, ArrayRecord), ``ravdess_info.json``, ``failures.jsonl`` and the tfds
metadata are byte-identical to a local run's with the same flags. The way tensorflow_datasets builds large datasets
(its ``BeamWriter``):

  launcher  ``convert.prepare``: check the output, discover and classify the
            sources (any ``tf.io.gfile`` path), report the skipped files.
  pipeline  one clip per element -> ``convert.preprocess_source`` on a worker
            (its arrays kept in memory, no cache file; a non-local source copied in first)
            -> M = ``convert.audio_frames`` of all clips (a side input)
            -> key by actor, GroupByKey -> ``convert.write_actor`` (clip_id
            order, each shard a temporary file, then renamed) into
            ``OUTPUT/.staging``, and one report of every clip's result and
            every shard into the staging directory.
  launcher  ``convert.converted`` and ``convert.publish``, the local run's own
            final step: ``failures.jsonl``, the tfds metadata and ``ravdess_info.json`` last.

A full disk or an unwritable output on a worker fails the pipeline (a runner
retries the work first); nothing published is touched. Nothing is cached: no
``.cache/``, and a rerun recomputes every clip. Apache Beam is the ``[beam]``
extra, and only this module imports it (``cli`` imports this module only with ``--runner``).
"""

from __future__ import annotations

import contextlib
import json
import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from ravdess_tfrecords import schema, storage
from ravdess_tfrecords.conversion import beam_quiet, convert, writer
from ravdess_tfrecords.conversion.errors import MachineError
from ravdess_tfrecords.conversion.preprocess import Settings

REPORT_FILENAME = "beam-report.json"


class _Preprocess(beam.DoFn):
    """``(index, name, source)`` -> the clip's result dict (main output) and, converted,
    its arrays ``(actor, (name, source, mfcc, video))`` (output ``arrays``)."""

    def __init__(self, settings: Settings, modality: str = "audio_video"):
        self._settings, self._modality = settings, modality

    def setup(self):
        self._versions = convert.library_versions()  # this worker's, which computed the arrays

    def process(self, element):
        index, name, source = element
        # No cache: the arrays stay in memory.
        result = convert.preprocess_source(source, self._settings, modality=self._modality)
        if result["status"] == "machine":  # this worker's disk: fail the bundle, the runner retries it
            raise MachineError(f"cannot preprocess {result['display']} on a worker: {result['reason']}")
        if "arrays" in result:
            mfcc, video = result.pop("arrays")
            yield beam.pvalue.TaggedOutput("arrays", (name.actor, (name, source, mfcc, video)))
        yield {**result, "index": index, "versions": self._versions}


def _frames(result: dict) -> list[int]:
    return [result["frames"]] if result["status"] in convert.OK_STATUSES else []


def _audio_frames(frames: list[int]) -> int:
    return convert.audio_frames(frames) if frames else 0  # nothing converted: no shard to write


def _write_actor(element, staged: str, frames: int, examples_per_shard: int, file_format: str) -> list[dict]:
    actor, clips = element
    clips = [(name, source, lambda mfcc=mfcc, video=video: (mfcc, video)) for name, source, mfcc, video in clips]
    return convert.write_actor(staged, actor, clips, frames, examples_per_shard, file_format)


def _write_report(_, staged: str, results: list[dict], shards: list[list[dict]], frames: int) -> None:
    report = {"results": sorted(results, key=lambda r: r["index"]), "frames": frames,
              "shards": sorted((s for actor in shards for s in actor), key=lambda s: s["file"])}
    writer.write_text(os.path.join(staged, REPORT_FILENAME), json.dumps(report, sort_keys=True))


def _runner(name: str):
    """The runner to use: DirectRunner runs on Beam's FnApiRunner (what DirectRunner itself falls back
    to), not on the PrismRunner it tries first, which downloads a binary."""
    if beam_quiet.is_local(name):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()
    return name


def build(pipeline: beam.Pipeline, plan: convert.Plan, staged: str, settings: Settings,
          examples_per_shard: int) -> None:
    """Add the conversion of ``plan.clips`` to ``pipeline``: shards and a report into ``staged``."""
    clips = [(index, name, source) for index, (name, source) in enumerate(plan.clips)]
    results, arrays = (
        pipeline
        | "Clips" >> beam.Create(clips, reshuffle=True)
        | "Preprocess" >> beam.ParDo(_Preprocess(settings, plan.modality)).with_outputs("arrays", main="results"))
    frames = (results
              | "Frames" >> beam.FlatMap(_frames)
              | "AllFrames" >> beam.combiners.ToList()
              | "Mean" >> beam.Map(_audio_frames))
    shards = (arrays
              | "ByActor" >> beam.GroupByKey()
              | "WriteShards" >> beam.Map(_write_actor, staged, beam.pvalue.AsSingleton(frames), examples_per_shard,
                                         plan.file_format))
    _ = (pipeline
         | "One" >> beam.Create([None])
         | "Report" >> beam.Map(_write_report, staged, beam.pvalue.AsList(results), beam.pvalue.AsList(shards),
                                beam.pvalue.AsSingleton(frames)))


def unknown_options(args: list[str]) -> list[str]:
    """The arguments among ``args`` that no Beam pipeline option class knows (a typo, a flag of another program).

    Parsed by the parser ``PipelineOptions.get_all_options`` builds from every options class, which
    would drop the unknown ones with only a logged warning.

    Raises:
      ValueError: a known option with a bad value (``--direct_num_workers=two``).
    """
    unknown = []

    def parse(parser) -> None:
        def error(message: str):
            raise ValueError(f"Beam pipeline options: {message}")

        parser.error = error  # argparse would print its whole usage and exit
        unknown.extend(parser.parse_known_args(args)[1])

    PipelineOptions(args).get_all_options(add_extra_args_fn=parse, retain_unknown_options=True)
    return unknown


def _beam_error(error: Exception) -> str:
    """Beam's message for a failed worker step, down to its first line that says what failed."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "Error" in line or "error" in line), lines[-1] if lines
                else type(error).__name__)


def convert_with_beam(inputs: list[str], output_dir: str, *, runner: str, pipeline_args: list[str],
                      settings: Settings | None = None, vocal_channels=("speech",), examples_per_shard: int = 32,
                      progress: bool = True, quiet: bool = False, modality: str = "auto",
                      file_format: str = schema.DEFAULT_FILE_FORMAT) -> dict:
    """``convert.convert`` as a Beam pipeline on ``runner``; ``pipeline_args`` are Beam pipeline options.

    ``quiet``: Beam's INFO log and noise hidden (``beam_quiet``), its workers' too on a local runner.

    Returns and raises what ``convert.convert`` does (``reused`` is 0: a Beam run has no cache);
    a pipeline that fails otherwise raises ``RuntimeError`` with the runner's reason.
    """
    settings = settings or Settings()
    convert.check_run_arguments(examples_per_shard=examples_per_shard)  # before any work
    if quiet:
        beam_quiet.quiet_logging(runner)
    plan = convert.prepare(inputs, output_dir, vocal_channels, progress, cache=False, modality=modality,
                           file_format=file_format)
    options = PipelineOptions(pipeline_args)
    quiet_workers = beam_quiet.filtered_stderr() if quiet and beam_quiet.is_local(runner) else contextlib.nullcontext()
    with convert.machine_errors(output_dir), writer.staging(output_dir) as staged:
        try:
            with quiet_workers, beam.Pipeline(runner=_runner(runner), options=options) as pipeline:
                build(pipeline, plan, staged, settings, examples_per_shard)
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 -- the runner wraps a worker's error in its own
            cause = e
            while cause.__cause__ is not None or cause.__context__ is not None:
                cause = cause.__cause__ or cause.__context__
            if isinstance(cause, OSError):
                raise cause from e
            raise RuntimeError(f"the Beam pipeline on {runner} failed: {_beam_error(e)}") from e
        with storage.open_file(os.path.join(staged, REPORT_FILENAME), "r") as f:
            report = json.load(f)
        results = report["results"]
        for result in results:
            convert.record_failure(result, plan.failures, progress)
        versions = {json.dumps(r["versions"], sort_keys=True) for r in results}
        if len(versions) > 1:
            raise RuntimeError(f"the workers run different library versions: {sorted(versions)}")
        done = convert.converted(plan, results, inputs, output_dir)
        frames = convert.audio_frames([r["frames"] for _, _, r in done])
        assert frames == report["frames"], (frames, report["frames"])  # noqa: S101 -- one function, one M
        shards = sorted(report["shards"], key=lambda s: (s["actor"], s["file"]))
        info = convert.publish(staged, output_dir, plan, done, shards, frames, settings, vocal_channels,
                               json.loads(versions.pop()))
    return {**info["summary"], "failures": plan.failures, "info": info, "reused": 0}
