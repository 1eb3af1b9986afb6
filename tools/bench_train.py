r"""Training-step speed of the fusion model: float32, XLA, bfloat16, bfloat16 + XLA, side by side.

    python -m tools.bench_train                                   # 3 repeats of 10 steps per batch size
    python -m tools.bench_train --batch_sizes=32,256 --repeats=5  # steadier numbers, and the big batch on a CPU

For each batch size in ``--batch_sizes`` and each variant in ``--variants`` it
builds the default fusion model the way ``trainers.fit`` does
(``trainers.model.build_and_compile`` with ``--mixed_precision`` /
``--jit_compile`` set), runs training steps on random inputs of the real
shapes (audio ``(B, 24, M, 1)`` float32, video ``(B, 6, 64, 64, 3)`` float32
in [0, 1]), and prints examples per second and the ratio to float32 without
XLA. Each variant's first ``--warmup_steps`` steps (tracing, XLA compilation,
autotuning) are not timed; then ``--repeats`` runs of ``--steps`` steps each,
interleaved across the variants (``schedule``), give the median and the
min-max spread, of the rate and of the ratio (taken within each repeat): two
timed steps once gave bfloat16 0.16x and 1.24x float32 on the same GPU. It
runs on whatever TensorFlow places the model on: the first GPU when it sees
one, else the CPU. By default it times batches of 32 and 256 on a GPU, and 32
only on a CPU, where a batch-256 step of the full model takes 7-18 s on 2 cores
(``--batch_sizes=32,256`` times both there too; ``--steps`` and ``--repeats``
trade time for steadiness). docs/training.md's "Training recipe" table cites this output.
"""

from __future__ import annotations

import os
import time

import numpy as np
from absl import flags

from tools.bench_repeats import schedule, table_rows

FLAGS = flags.FLAGS
# variant -> (--mixed_precision, --jit_compile)
VARIANTS = {"float32": ("none", "false"), "xla": ("none", "true"),
            "bfloat16": ("bfloat16", "false"), "bfloat16+xla": ("bfloat16", "true"),
            "float16": ("float16", "false"), "float16+xla": ("float16", "true")}

flags.DEFINE_list("batch_sizes", None, "Batch sizes to time (default: 32,256 with a GPU; 32 on a CPU).")
flags.DEFINE_list("variants", ["float32", "xla", "bfloat16", "bfloat16+xla"],
                  f"Variants, from {', '.join(VARIANTS)}; ratios are to float32 (timed when listed, else 1).")
flags.DEFINE_integer("steps", 10, "Timed training steps per repeat, variant and batch size.")
flags.DEFINE_integer("warmup_steps", 3, "Untimed steps per variant first (tracing, XLA compilation, autotuning).")
flags.DEFINE_integer("repeats", 3, "Timed repeats per variant, interleaved across the variants (median and spread).")
flags.DEFINE_integer("audio_frames", 200, "M of the random audio input (the real corpus: about 200).")
flags.DEFINE_list("filters", ["32", "64", "128", "256"], "Channels of the visual backbone (fit's default).")


def build(mixed_precision: str, jit_compile: str, batch_size: int, audio_frames: int = 200,
          filters: tuple[int, ...] = (32, 64, 128, 256)) -> tuple:
    """The fusion model compiled as ``trainers.fit`` does, and one random batch: ``(model, x, y)``.

    ``x``: audio float32 ``(B, 24, M, 1)``, video float32 ``(B, 6, 64, 64, 3)`` in [0, 1]; ``y``: int64 ``(B,)``.
    """
    from tensorflow import keras

    from trainers.config import TrainConfig
    from trainers.model import build_and_compile

    keras.utils.set_random_seed(0)
    config = TrainConfig("unused", "unused", filters=tuple(filters), mixed_precision=mixed_precision,
                         jit_compile=jit_compile, augment_on="host")
    model = build_and_compile(config, audio_frames)  # the policy is set for the build only
    rng = np.random.default_rng(0)
    x = [rng.standard_normal((batch_size, 24, audio_frames, 1)).astype(np.float32),
         rng.random((batch_size, 6, 64, 64, 3)).astype(np.float32)]
    return model, x, rng.integers(0, config.num_classes, batch_size)


def timed_rate(model, x, y, steps: int) -> float:
    """Examples per second of ``steps`` training steps of ``model`` on the batch ``(x, y)``."""
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)  # returns numpy logs: the step has finished on the device
    return steps * len(y) / (time.perf_counter() - start)


def examples_per_second(mixed_precision: str, jit_compile: str, batch_size: int, steps: int,
                        audio_frames: int = 200, filters: tuple[int, ...] = (32, 64, 128, 256),
                        warmup_steps: int = 1) -> float:
    """Training examples per second of the fusion model over ``steps`` steps after ``warmup_steps`` untimed ones.

    Args:
      mixed_precision, jit_compile: ``TrainConfig``'s settings (``"none"``/``"bfloat16"``/``"float16"``;
        ``"true"``/``"false"``/``"auto"``).
      batch_size: examples per step; steps: timed steps (>= 1).
      audio_frames, filters: the model's M and backbone channels.
    """
    from tensorflow import keras

    model, x, y = build(mixed_precision, jit_compile, batch_size, audio_frames, filters)
    for _ in range(warmup_steps):
        model.train_on_batch(x, y)
    rate = timed_rate(model, x, y, steps)
    keras.backend.clear_session()  # free the model before the next variant
    return rate


def measure(variants: list[str], batch_size: int, steps: int, repeats: int, warmup_steps: int,
            audio_frames: int, filters: tuple[int, ...]) -> dict[str, list[float]]:
    """``{variant: [examples/s per repeat]}``: every variant built and warmed up once, then timed
    ``repeats`` times in ``schedule`` order."""
    from tensorflow import keras

    built = {}
    for variant in variants:
        built[variant] = build(*VARIANTS[variant], batch_size, audio_frames, filters)
        for _ in range(warmup_steps):
            built[variant][0].train_on_batch(*built[variant][1:])
    rates = {variant: [] for variant in variants}
    for variant in schedule(variants, repeats):
        rates[variant].append(timed_rate(*built[variant], steps))
    built.clear()
    keras.backend.clear_session()  # free this batch size's models
    return rates


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
        print("no GPU: timing batch 32 only (--batch_sizes=32,256 adds the big batch: 7-18 s a step on 2 cores)")
    tables = {}
    for batch in (int(b) for b in batch_sizes):
        tables[batch] = rates = measure(FLAGS.variants, batch, FLAGS.steps, FLAGS.repeats, FLAGS.warmup_steps,
                                        FLAGS.audio_frames, filters)
        for variant, median, low, high, *_ in table_rows(rates):
            print(f"batch {batch} {variant}: {median:.1f} examples/s (median of {FLAGS.repeats}, "
                  f"{low:.1f}-{high:.1f})", flush=True)
    print(f"\nfusion model (vgg:max, filters {','.join(FLAGS.filters)}), audio (B, 24, {FLAGS.audio_frames}, 1), "
          f"video (B, 6, 64, 64, 3); {device_name()}; {FLAGS.repeats} repeats (interleaved) of {FLAGS.steps} "
          f"timed steps after {FLAGS.warmup_steps} warm-up steps; median (min-max)")
    print("| batch | variant | examples/s | x float32 |")
    print("| --- | --- | --- | --- |")
    for batch, rates in tables.items():
        for variant, median, low, high, ratio, ratio_low, ratio_high in table_rows(rates):
            times = f"{ratio:.2f} ({ratio_low:.2f}-{ratio_high:.2f})" if ratio is not None else "-"
            print(f"| {batch} | {variant} | {median:.1f} ({low:.1f}-{high:.1f}) | {times} |")


if __name__ == "__main__":
    from ravdess_tfrecords import _cli

    _cli.quiet_tensorflow()  # TensorFlow's start-up lines on a machine without a GPU
    _cli.check_ranges({"steps": (1, None), "warmup_steps": (0, None), "repeats": (1, None),
                       "audio_frames": (1, None)})
    _cli.run(main)
