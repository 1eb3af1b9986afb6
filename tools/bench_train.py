r"""Training-step speed of the fusion model: float32, XLA, bfloat16, bfloat16 + XLA, side by side.

    python -m tools.bench_train                                   # 2 timed steps per batch size
    python -m tools.bench_train --batch_sizes=32,256 --steps=10   # steadier numbers, and the big batch on a CPU

For each batch size in ``--batch_sizes`` and each variant in ``--variants`` it
builds the default fusion model the way ``trainers.fit`` does
(``trainers.model.build_and_compile`` with ``--mixed_precision`` /
``--jit_compile`` set), runs training steps on random inputs of the real
shapes (audio ``(B, 24, M, 1)`` float32, video ``(B, 6, 64, 64, 3)`` float32
in [0, 1]), and prints examples per second and the ratio to float32 without
XLA. The first step (tracing, XLA compilation) is a warm-up and not timed. It
runs on whatever TensorFlow places the model on: the first GPU when it sees
one, else the CPU. By default it times batches of 32 and 256 on a GPU, and 32
only on a CPU, where a batch-256 step of the full model takes 7-18 s on 2 cores
and the whole run would take ~6.5 minutes instead of ~2.5 (``--batch_sizes=32,256``
times both there too). The README's "Training recipe" table cites this output.
"""

from __future__ import annotations

import os
import time

import numpy as np
from absl import flags

FLAGS = flags.FLAGS
# variant -> (--mixed_precision, --jit_compile)
VARIANTS = {"float32": ("none", "false"), "xla": ("none", "true"),
            "bfloat16": ("bfloat16", "false"), "bfloat16+xla": ("bfloat16", "true"),
            "float16": ("float16", "false"), "float16+xla": ("float16", "true")}

flags.DEFINE_list("batch_sizes", None, "Batch sizes to time (default: 32,256 with a GPU; 32 on a CPU).")
flags.DEFINE_list("variants", ["float32", "xla", "bfloat16", "bfloat16+xla"],
                  f"Variants, from {', '.join(VARIANTS)}; ratios are to float32 (timed when listed, else 1).")
flags.DEFINE_integer("steps", 2, "Timed training steps per variant and batch size (after 1 warm-up step).")
flags.DEFINE_integer("audio_frames", 200, "M of the random audio input (the real corpus: about 200).")
flags.DEFINE_list("filters", ["32", "64", "128", "256"], "Channels of the visual backbone (fit's default).")


def examples_per_second(mixed_precision: str, jit_compile: str, batch_size: int, steps: int,
                        audio_frames: int = 200, filters: tuple[int, ...] = (32, 64, 128, 256)) -> float:
    """Training examples per second of the fusion model over ``steps`` steps after one warm-up step.

    Args:
      mixed_precision, jit_compile: ``TrainConfig``'s settings (``"none"``/``"bfloat16"``/``"float16"``;
        ``"true"``/``"false"``/``"auto"``).
      batch_size: examples per step; steps: timed steps (>= 1).
      audio_frames, filters: the model's M and backbone channels.
    """
    from tensorflow import keras

    from trainers.config import TrainConfig
    from trainers.model import build_and_compile

    keras.utils.set_random_seed(0)
    config = TrainConfig("unused", "unused", filters=tuple(filters), mixed_precision=mixed_precision,
                         jit_compile=jit_compile, augment_on="host")
    model = build_and_compile(config, audio_frames)
    rng = np.random.default_rng(0)
    x = [rng.standard_normal((batch_size, 24, audio_frames, 1)).astype(np.float32),
         rng.random((batch_size, 6, 64, 64, 3)).astype(np.float32)]
    y = rng.integers(0, config.num_classes, batch_size)
    model.train_on_batch(x, y)  # warm-up: tracing and (with XLA) compilation
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)  # returns numpy logs: the step has finished on the device
    seconds = time.perf_counter() - start
    keras.backend.clear_session()  # free the model before the next variant
    return steps * batch_size / seconds


def device_name() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return f"CPU ({os.cpu_count()} cores)"


def default_batch_sizes() -> list[str]:
    """32 and 256 where TensorFlow sees a GPU; 32 alone on a CPU (the big batch is slow there, see above)."""
    import tensorflow as tf

    return ["32", "256"] if tf.config.list_physical_devices("GPU") else ["32"]


def main(argv: list[str]) -> None:
    del argv
    unknown = [v for v in FLAGS.variants if v not in VARIANTS]
    if unknown:
        from ravdess_tfrecords.errors import UserError

        raise UserError(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    import tensorflow as tf

    # One model per variant means one new train function each: TensorFlow's retracing warning says so, and
    # is expected here.
    tf.get_logger().setLevel("ERROR")
    filters = tuple(int(f) for f in FLAGS.filters)
    batch_sizes = FLAGS.batch_sizes or default_batch_sizes()
    if not FLAGS.batch_sizes and batch_sizes == ["32"]:
        print("no GPU: timing batch 32 only (--batch_sizes=32,256 adds the big batch, ~4 more minutes on 2 cores)")
    rows = []
    for batch in (int(b) for b in batch_sizes):
        for variant in FLAGS.variants:
            rate = examples_per_second(*VARIANTS[variant], batch, FLAGS.steps, FLAGS.audio_frames, filters)
            rows.append((batch, variant, rate))
            print(f"batch {batch} {variant}: {rate:.1f} examples/s", flush=True)
    print(f"\nfusion model (vgg:max, filters {','.join(FLAGS.filters)}), audio (B, 24, {FLAGS.audio_frames}, 1), "
          f"video (B, 6, 64, 64, 3); {device_name()}; {FLAGS.steps} timed steps after 1 warm-up")
    print("| batch | variant | examples/s | x float32 |")
    print("| --- | --- | --- | --- |")
    for batch, variant, rate in rows:
        base = next((r for b, v, r in rows if b == batch and v == "float32"), None)
        ratio = f"{rate / base:.2f}" if base else "-"
        print(f"| {batch} | {variant} | {rate:.1f} | {ratio} |")


if __name__ == "__main__":
    from ravdess_tfrecords import _cli

    _cli.quiet_tensorflow()  # TensorFlow's start-up lines on a machine without a GPU
    _cli.run(main)
