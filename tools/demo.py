r"""``make demo``: the whole product on a synthetic RAVDESS-shaped corpus, no download.

    python -m tools.demo --output=demo_output --workers=2

Runs, each as the command a user would type (printed before it runs):

1. ``tools.make_synthetic_corpus``: all 24 actors, ``--clips_per_actor`` speech clips each;
2. ``ravdess_tfrecords.convert``: per-speaker TFRecord shards + ``ravdess_info.json`` (and tfds metadata);
3. ``ravdess_tfrecords.reformat``: the same examples as ArrayRecord shards, for readers without TensorFlow
   (``rt.data_source``: PyTorch, JAX, Grain);
4. ``tools.dataset_stats``: the size of each set of the speaker split, per class;
5. ``tools.plot_samples``: 3 samples (frames, MFCCs, emotion) as a PNG;
6. ``trainers.fit``: the fusion model on actors 1-17, validated on 18-22, tested on 23-24;
7. ``trainers.evaluate``: the saved model re-evaluated on the test actors;
8. ``trainers.predict``: one raw clip of a test actor, through the same preprocessing.

The Python snippets of ``docs/`` read these outputs (``demo_output/tfrecords``, ``demo_output/array_record``,
``demo_output/model``) and run as written from the directory that holds ``demo_output``.

Then it prints where every output went and how long each step took.
Everything goes under ``--output`` (replaced on each run). It needs the
``[convert]`` and ``[synthetic]`` extras (``make demo`` installs them); without
them, one ``error:`` line says what to install before anything runs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time

from absl import app, flags

from ravdess_tfrecords import conversion, filenames, labels, schema

FLAGS = flags.FLAGS

flags.DEFINE_string("output", "demo_output", "Directory for everything the demo writes (replaced).")
flags.DEFINE_integer("workers", os.cpu_count() or 1, "Processes for corpus synthesis and conversion.")
flags.DEFINE_integer("clips_per_actor", 12, "Synthetic speech clips per actor (RAVDESS has 60).")
flags.DEFINE_integer("epochs", 30, "Training epochs (early stopping may end sooner).")
flags.DEFINE_integer("batch_size", 16, "Training batch size.")
flags.DEFINE_list("filters", ["16", "32", "64", "128"], "Visual backbone channels (smaller than the default: CPU).")
flags.DEFINE_string("visual_backbone", "vgg", "Visual backbone (vgg, resnet, c3d).")
flags.DEFINE_string("temporal", "max", "Temporal pooling (max, gru, lstm).")
flags.DEFINE_boolean("reuse_corpus", False, "Keep an existing corpus and shards under --output (skip steps 1-2).")

TEST_ACTOR = 24  # of the speaker split's test actors (23, 24)


def _run(step: str, args: list[str], timings: dict[str, float]) -> None:
    """Run ``python -m ...``, echoing the command; its output streams through."""
    command = [sys.executable, "-m", *args]
    shown = " ".join(["python", "-m", *args])
    print(f"\n=== {step}\n$ {shown}", flush=True)
    start = time.perf_counter()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    proc = subprocess.run(command, env=env)
    timings[step] = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"demo step '{step}' failed (exit code {proc.returncode}): {shown}")
    print(f"--- {step}: {timings[step]:.0f} s", flush=True)


def _test_clip(corpus: str) -> str:
    folder = os.path.join(corpus, f"Actor_{TEST_ACTOR:02d}")
    clips = sorted(f for f in os.listdir(folder) if f.endswith(".mp4"))
    if not clips:
        raise SystemExit(f"no clip in {folder}")
    return os.path.join(folder, clips[0])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Steps 1, 2, 5 and 8 run the converter's stack: say so now, not after minutes.
    conversion.require_synthetic_extras("tools.demo")
    out = os.path.abspath(os.path.expanduser(FLAGS.output))
    corpus = os.path.join(out, "corpus")
    shards = os.path.join(out, "tfrecords")
    array_records = os.path.join(out, "array_record")
    model_dir = os.path.join(out, "model")
    samples = os.path.join(out, "samples.png")
    keep = {"corpus", "tfrecords"} if FLAGS.reuse_corpus and os.path.isdir(shards) else set()
    if os.path.isdir(out):
        for name in os.listdir(out):
            if name not in keep:
                path = os.path.join(out, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    os.makedirs(out, exist_ok=True)

    start = time.perf_counter()
    timings: dict[str, float] = {}
    workers = f"--workers={FLAGS.workers}"
    if not keep:
        _run("1. synthetic corpus", ["tools.make_synthetic_corpus", f"--output={corpus}",
                                     f"--clips_per_actor={FLAGS.clips_per_actor}", workers], timings)
        _run("2. convert to TFRecords", ["ravdess_tfrecords.convert", f"--input={corpus}", f"--output={shards}",
                                         workers], timings)
    _run("3. ArrayRecord copy for rt.data_source",
         ["ravdess_tfrecords.reformat", f"--data_dir={shards}", f"--output={array_records}"], timings)
    _run("4. dataset statistics", ["tools.dataset_stats", f"--data_dir={shards}"], timings)
    _run("5. plot 3 samples", ["tools.plot_samples", f"--data_dir={shards}", f"--output={samples}"], timings)
    _run("6. train the fusion model", [
        "trainers.fit", f"--data_dir={shards}", f"--model_dir={model_dir}", "--split=speaker", "--model=fusion",
        f"--visual_backbone={FLAGS.visual_backbone}", f"--temporal={FLAGS.temporal}",
        f"--filters={','.join(FLAGS.filters)}", f"--epochs={FLAGS.epochs}", f"--batch_size={FLAGS.batch_size}",
        "--seed=0",
    ], timings)
    _run("7. evaluate the saved model", ["trainers.evaluate", f"--model_dir={model_dir}"], timings)
    clip = _test_clip(corpus)
    name = filenames.parse(clip)
    print(f"\n(the clip's true emotion, from its file name: {name.emotion_name}, "
          f"class {labels.CLASS_NAMES[name.label()]})", flush=True)
    _run("8. predict a raw clip of a test actor", ["trainers.predict", f"--model_dir={model_dir}", clip], timings)
    total = time.perf_counter() - start

    print("\n=== where everything went")
    rows = [
        ("synthetic corpus (mp4 + truth.json)", corpus),
        ("TFRecord shards + ravdess_info.json + tfds metadata", shards),
        ("the same as ArrayRecord shards (rt.data_source)", array_records),
        ("3 samples: frames, MFCCs, emotions", samples),
        ("model directory", model_dir),
        ("  test metrics (accuracy, UAR, macro F1, per class)", os.path.join(model_dir, "metrics.json")),
        ("  confusion matrix", os.path.join(model_dir, "confusion_matrix.png")),
        ("  training curves", os.path.join(model_dir, "training_curves.png")),
        ("  TensorBoard logs", os.path.join(model_dir, "logs")),
        ("  best checkpoint", os.path.join(model_dir, "checkpoints", "best.weights.h5")),
        ("  Keras model", os.path.join(model_dir, "model.keras")),
        ("  exported SavedModel", os.path.join(model_dir, "saved_model")),
        ("  ONNX model ([onnx] extra)", os.path.join(model_dir, "model.onnx")),
        ("  preprocessing settings + class names", os.path.join(model_dir, schema.INFO_FILENAME)),
        ("re-evaluation", os.path.join(model_dir, "eval_speaker_test")),
        ("clip predicted", clip),
    ]
    width = max(len(label) for label, _ in rows)
    for label, path in rows:
        missing = "" if os.path.exists(path) else "  (missing!)"
        print(f"{label:<{width}}  {path}{missing}")
    print("\n=== time per step")
    for step, seconds in timings.items():
        print(f"{step:<40} {seconds:6.0f} s")
    print(f"{'total':<40} {total:6.0f} s ({total / 60:.1f} min)")
    print(f"\nNext: {tensorboard_command(os.path.join(model_dir, 'logs'))}")


def tensorboard_command(logdir: str) -> str:
    """The shell command that starts TensorBoard on ``logdir`` from the user's shell.

    ``tensorboard`` alone only if that is this environment's: a virtualenv's ``bin/`` (``make demo``'s
    ``.venv/bin``) is seldom on PATH, so else the full path of the one beside this Python, or ``-m``.
    """
    here = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    on_path = shutil.which("tensorboard")
    if os.access(here, os.X_OK):
        program = "tensorboard" if on_path and os.path.samefile(on_path, here) else shlex.quote(here)
    else:
        program = f"{shlex.quote(sys.executable)} -m tensorboard.main"
    return f"{program} --logdir={shlex.quote(logdir)}"


if __name__ == "__main__":
    from ravdess_tfrecords import _cli

    _cli.run(main)
