r"""Visual backbone x temporal pooling, side by side: size, CPU training-step time, and accuracy.

    python -m tools.bench_backbones                                  # size and step time only
    python -m tools.bench_backbones --data_dir=demo_output/tfrecords # + video-only accuracy (speaker split)

For each ``backbone:temporal`` in ``--combos`` it prints the parameters of the
fusion model (default filters), the seconds per training step of that fusion
model at batch ``--batch_size`` on random inputs of the real shapes, the ratio
to the first combination, and, with ``--data_dir``, the validation and test
accuracy of the video-only baseline (``--train_filters``, ``--epochs``): the
visual branch alone, which is what the choice changes. docs/training.md's choice of
default (``--visual_backbone``, ``--temporal``) cites this output.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_list("combos", ["vgg:max", "resnet:max", "c3d:max", "vgg:gru", "vgg:lstm", "mobilenet_v3_small:max"],
                  "backbone:temporal pairs; the first is the baseline of the ratios.")
flags.DEFINE_integer("batch_size", 32, "Batch size of the timed training steps.")
flags.DEFINE_integer("steps", 3, "Timed training steps (after 1 warm-up step).")
flags.DEFINE_integer("audio_frames", 97, "M of the random audio input.")
flags.DEFINE_string("data_dir", None, "Converted shards: also train the video-only baseline per combination.")
flags.DEFINE_list("train_filters", ["8", "16", "32"], "Backbone channels of the accuracy runs (CPU-sized).")
flags.DEFINE_integer("epochs", 12, "Epochs of the accuracy runs.")
flags.DEFINE_integer("train_batch_size", 16, "Batch size of the accuracy runs.")


def step_seconds(backbone: str, temporal: str) -> tuple[int, float]:
    """(parameters, seconds per training step) of the default-size fusion model."""
    from tensorflow import keras

    from ravdess_tfrecords import models

    model = models.build_model("fusion", audio_frames=FLAGS.audio_frames, visual_backbone=backbone, temporal=temporal)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    b = FLAGS.batch_size
    x = [rng.standard_normal((b, 24, FLAGS.audio_frames, 1)).astype(np.float32),
         rng.random((b, 6, 64, 64, 3)).astype(np.float32)]
    y = rng.integers(0, 7, b)
    model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        model.train_on_batch(x, y)
    return model.count_params(), (time.perf_counter() - start) / FLAGS.steps


def accuracy(backbone: str, temporal: str, work: str) -> tuple[float, float, float]:
    """(validation accuracy, test accuracy, seconds) of the video-only baseline on the speaker split."""
    from trainers import train_lib

    start = time.perf_counter()
    config = train_lib.TrainConfig(
        FLAGS.data_dir, os.path.join(work, f"{backbone}-{temporal}"), model="video", visual_backbone=backbone,
        temporal=temporal, filters=tuple(int(f) for f in FLAGS.train_filters), epochs=FLAGS.epochs,
        batch_size=FLAGS.train_batch_size, seed=0, export=False, verbose=0,
    )
    result = train_lib.train(config)
    return result["validation"]["accuracy"], result["test"]["accuracy"], time.perf_counter() - start


def main(argv: list[str]) -> None:
    del argv
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for combo in FLAGS.combos:
            backbone, temporal = combo.split(":")
            params, seconds = step_seconds(backbone, temporal)
            row = {"combo": combo, "params": params, "step": seconds}
            if FLAGS.data_dir:
                row["val"], row["test"], row["train_s"] = accuracy(backbone, temporal, work)
            rows.append(row)
            print(row, flush=True)
    base = rows[0]["step"]
    print(f"\nfusion model, default filters, batch {FLAGS.batch_size}, CPU ({os.cpu_count()} cores)"
          + (f"; video-only accuracy on {FLAGS.data_dir}, filters {','.join(FLAGS.train_filters)}, "
             f"{FLAGS.epochs} epochs" if FLAGS.data_dir else ""))
    header = "| backbone:temporal | parameters | s/step | x first |"
    header += " val acc | test acc | train s |" if FLAGS.data_dir else ""
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for r in rows:
        line = f"| {r['combo']} | {r['params']:,} | {r['step']:.2f} | {r['step'] / base:.2f} |"
        if FLAGS.data_dir:
            line += f" {r['val']:.3f} | {r['test']:.3f} | {r['train_s']:.0f} |"
        print(line)


if __name__ == "__main__":
    from ravdess_tfrecords import _cli

    _cli.quiet_tensorflow()  # TensorFlow's start-up lines on a machine without a GPU
    _cli.check_ranges({"batch_size": (1, None), "steps": (1, None), "audio_frames": (1, None), "epochs": (1, None),
                       "train_batch_size": (1, None)})
    _cli.run(main)
