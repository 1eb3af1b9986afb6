"""The converter's command line: its flags, and the choice between the local pool and Apache Beam.

    python -m ravdess_tfrecords.convert --input=/data/ravdess --output=/data/ravdess-tfrecords
    python -m ravdess_tfrecords.convert ... --runner=DataflowRunner [Beam pipeline options]

The choice is made here so the imports run one way: ``beam_convert`` imports
``convert``, and ``convert`` imports neither; apache_beam is imported only with
``--runner``. An argument that is neither a flag of the converter nor (with
``--runner``) one of Beam's pipeline options is one ``error:`` line and exit
status 2, before anything is written; so is a number outside its range
(``RUN_RANGES``, ``preprocess.SETTING_RANGES``), checked when the flags are parsed.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import app, flags

from ravdess_tfrecords import _cli, conversion, schema, storage
from ravdess_tfrecords.conversion import beam_quiet
from ravdess_tfrecords.conversion.audio import STANDARDIZE
from ravdess_tfrecords.conversion.convert import MODALITY_CHOICES, RUN_RANGES, convert, format_summary
from ravdess_tfrecords.conversion.errors import MachineError
from ravdess_tfrecords.conversion.preprocess import SETTING_RANGES, Settings

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """The CLI's flags, defined by the entry point only: importing this module defines none,
    so a program with its own ``--output`` or ``--workers`` can import it."""
    flags.DEFINE_list("input", None, "RAVDESS folders, Actor_NN folders or zip files (comma-separated).")
    flags.DEFINE_string("output", None, "Directory for the shards, ravdess_info.json, failures.jsonl, tfds metadata.")
    flags.DEFINE_integer("workers", os.cpu_count() or 1, "Worker processes for pass 1.")
    flags.DEFINE_list("vocal_channels", ["speech"], "Which vocal channels to keep: speech, song or both.")
    flags.DEFINE_enum("modality", "auto", list(MODALITY_CHOICES),
                      "What the output holds (one modality per directory): audio_video (modality-01 clips: audio "
                      "and faces), audio (RAVDESS's audio-only modality-03 .wav recordings: no face step), or auto "
                      "(audio_video when the input holds any such clip, else audio).")
    flags.DEFINE_integer("examples_per_shard", 32, "At most this many examples per shard.")
    flags.DEFINE_enum("file_format", schema.DEFAULT_FILE_FORMAT, list(schema.FILE_FORMATS),
                      "How the shards are stored: tfrecord (read by tf.data) or array_record (random access: "
                      "ravdess_tfrecords.data_source, tfds.data_source, Grain, PyTorch); the same examples.")
    flags.DEFINE_boolean("progress", True, "Show a progress bar.")
    flags.DEFINE_boolean("verbose", False, _cli.VERBOSE_HELP + " With --runner: also Beam's INFO log.")
    flags.DEFINE_string("runner", None, "Convert as an Apache Beam pipeline on this runner (DirectRunner, "
                        "DataflowRunner, FlinkRunner, SparkRunner, PortableRunner); other --flags are then Beam "
                        "pipeline options. Unset: a local process pool (--workers). Needs the [beam] extra.")
    # One flag per preprocessing setting, defaults from the Settings dataclass (one source of truth).
    types = {int: flags.DEFINE_integer, float: flags.DEFINE_float, bool: flags.DEFINE_boolean}
    for field in dataclasses.fields(Settings):
        if field.name == "standardize":
            flags.DEFINE_enum(field.name, field.default, list(STANDARDIZE),
                              "Preprocessing: MFCC standardization per sample: coefficient (each coefficient over "
                              "the clip's frames) or sample (one mean and variance over all of them).")
            continue
        types[type(field.default)](field.name, field.default, f"Preprocessing: {field.name} (see Settings).")
    # A number outside its range is one error line when the flags are parsed, before any work.
    _cli.check_ranges({**RUN_RANGES, **SETTING_RANGES})


def _refuse(args: list[str], what: str) -> int:
    print(f"error: unexpected arguments: {' '.join(args)} ({what}; see --help)", file=sys.stderr, flush=True)
    return _cli.USER_ERROR_STATUS


def main(argv: list[str]) -> int:
    beam = None
    if FLAGS.runner:  # only now: without --runner nothing imports apache_beam
        conversion.require_extra("--runner", ("beam",), ("apache_beam",))
        if not FLAGS.verbose:
            beam_quiet.quiet_logging(FLAGS.runner)  # before the import, which logs
        from ravdess_tfrecords.conversion import beam_convert as beam

        try:
            unknown = beam.unknown_options(argv[1:])
        except ValueError as e:  # a Beam option's value
            print(f"error: {e}", file=sys.stderr, flush=True)
            return _cli.USER_ERROR_STATUS
        if unknown:
            return _refuse(unknown, "neither a flag of the converter nor a Beam pipeline option")
    elif len(argv) > 1:
        return _refuse(argv[1:], "not a flag of the converter")
    if not FLAGS.input or not FLAGS.output:
        raise app.UsageError("--input and --output are required")
    # Only now, the arguments checked (a bad one is refused at once, not after the seconds this takes):
    # nothing before imports TensorFlow, whose start-up chatter would hide the summary. A local run
    # imports it where pass 2 first needs it: one that ends in pass 1 (nothing converted, Ctrl-C, a
    # machine error) never pays its start-up; Beam's pipeline needs it at once.
    _cli.quiet_tensorflow(now=bool(beam))
    # "--input=~/x" reaches us with its "~": the shell expands it after "=" only in assignments.
    inputs, output = [storage.expand(path) for path in FLAGS.input], storage.expand(FLAGS.output)
    settings = Settings(**{f.name: getattr(FLAGS, f.name) for f in dataclasses.fields(Settings)})
    kwargs = dict(settings=settings, vocal_channels=FLAGS.vocal_channels,
                  examples_per_shard=FLAGS.examples_per_shard, progress=FLAGS.progress, modality=FLAGS.modality,
                  file_format=FLAGS.file_format)
    try:
        if beam:
            summary = beam.convert_with_beam(inputs, output, runner=FLAGS.runner,
                                             pipeline_args=argv[1:], quiet=not FLAGS.verbose, **kwargs)
        else:
            summary = convert(inputs, output, workers=FLAGS.workers, before_tensorflow=_cli.quiet_tensorflow,
                              **kwargs)
    except (MachineError, RuntimeError) as e:  # the run failed: exit 1 (user errors propagate to _cli.run: 2)
        _cli.print_error(e)
        return 1
    except KeyboardInterrupt:
        again = ("a Beam run keeps nothing: run the same command again to start over" if beam
                 else "finished clips are cached; run the same command again to resume")
        print(f"\ninterrupted: {again}", file=sys.stderr)
        return 130
    print(format_summary(summary, output))
    return 0


def run() -> None:
    """Console-script entry point (``ravdess-convert``)."""
    _cli.define_main_flags(_define_flags)
    # Unknown flags stay in argv: with --runner they are Beam's pipeline options (main judges them).
    _cli.run(_cli.user_errors(main), known_only=True)


if __name__ == "__main__":
    run()
