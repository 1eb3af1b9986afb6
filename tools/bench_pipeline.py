"""Input-pipeline speed, measured side by side in one run over the same shards.

    python -m tools.bench_pipeline                       # random-content shards in a temp dir
    python -m tools.bench_pipeline --data_dir=tfrecords  # a converted corpus

Prints examples per second, and the host CPU time each example cost, of
  (a) bare ``TFRecordDataset`` iteration (batched, no parsing): the limit;
  (b) ``ravdess_tfrecords.load`` in training mode, host mode, without augmentation;
  (c) host mode with augmentation (flip, crop, colour, SpecAugment masks);
  (c') (c) with ``cache=False``: every epoch reads and parses the shards (by
      default a split this small is cached, decoded, after its first epoch);
  (e) device mode (``augment_on="device"``): read, parse, batch, uint8 video,
      decoded cache; the model's ``AugmentLayer`` does the rest;
  (e') (e) with ``cache=False``;
  (d) the seed notebook's way: a Python generator over numpy arrays (already in
      memory, not timed) with per-sample numpy augmentation, wrapped in
      ``tf.data.Dataset.from_generator``;
the augmentation maths alone (the pipeline's parallel ``map`` of
``augment.augment_batch`` over one parsed batch in memory), the ceiling of (c)
on this CPU; and the fusion model's training step on this CPU, with and
without the ``AugmentLayer`` in front, beside the layer alone.

Targets: (e)/(a) >= 0.5; (c) >= 1.5x the previous round's ~1,700 examples/s
(``--host_baseline``); (c)/(d) >= 10. Each rate is also given as the host
cores it would take to feed one H100 at ``--feed_rate`` examples/s (the fusion
model's training step there, batch 256): the CPU seconds (user + system, all
threads) per example, times that rate.

Each timed pass is one epoch of the split, as Keras reads it (a new iterator
per epoch, so a full shuffle buffer refills each time); the first, untimed
pass compiles the XLA kernels and fills the cache.

Without ``--data_dir`` it writes ``--actors`` x ``--clips_per_actor`` examples
of random content in the converter's exact format (``schema.serialize``):
throughput does not depend on the pixel values.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Converted shards (default: write random-content shards to a temp dir).")
flags.DEFINE_string("split", "train", "Which split's shards to read (speaker scheme).")
flags.DEFINE_integer("batch_size", 32, "Batch size for every measurement.")
flags.DEFINE_integer("rounds", 5, "Timed passes over the split per measurement; the best one counts.")
flags.DEFINE_integer("generator_examples", 1024, "Examples timed for (d), the slow one (short runs are noisy).")
flags.DEFINE_integer("train_steps", 8, "Timed training steps of the fusion model (after 2 warm-up steps).")
flags.DEFINE_integer("actors", 24, "Random shards: actors.")
flags.DEFINE_integer("clips_per_actor", 60, "Random shards: examples per actor (RAVDESS speech has 60).")
flags.DEFINE_integer("audio_frames", 97, "Random shards: M, the padded MFCC frame count.")
flags.DEFINE_string("visual_backbone", "vgg", "Backbone of the fusion model timed.")
flags.DEFINE_list("filters", None, "Filters of the timed model's VGG blocks (e.g. 8,16: a quick run); unset: the "
                  "model's own.")
flags.register_validator("filters", lambda v: v is None or all(f.isdigit() and int(f) > 0 for f in v),
                         message="--filters takes positive integers, e.g. 8,16")
flags.DEFINE_float("feed_rate", 8000.0, "Examples/s one H100 trains the fusion model on (batch 256, Keras fp32).")
flags.DEFINE_float("host_baseline", 1700.0, "The previous round's (c), examples/s: the 1.5x target's base.")


def write_random_shards(out_dir: str, actors: int, clips: int, audio_frames: int) -> None:
    """Shards + ravdess_info.json in the converter's format, content random."""
    import tensorflow as tf

    from ravdess_tfrecords import labels, schema

    rng = np.random.default_rng(0)
    shards = []
    for actor in range(1, actors + 1):
        name = schema.shard_name(actor, 0, 1)
        with tf.io.TFRecordWriter(os.path.join(out_dir, name)) as writer:
            for i in range(clips):
                emotion = 1 + i % 8
                clip_id = f"01-01-{emotion:02d}-01-01-{1 + i % 2:02d}-{actor:02d}"
                writer.write(schema.serialize({
                    "audio": rng.standard_normal(schema.audio_shape(audio_frames)).astype(np.float32),
                    "video": rng.integers(0, 256, schema.VIDEO_SHAPE, dtype=np.uint8),
                    "label": labels.label_from_emotion(emotion), "emotion": emotion,
                    "audio_frames": audio_frames, "actor": actor, "gender": "male" if actor % 2 else "female",
                    "intensity": 1, "statement": 1, "repetition": 1 + i % 2, "vocal_channel": "speech",
                    "clip_id": clip_id, "source": clip_id + ".mp4",
                }, audio_frames))
        shards.append({"file": name, "actor": actor, "num_examples": clips, "sha256": ""})
    info = {
        "name": "ravdess", "schema_version": schema.SCHEMA_VERSION, "version": "bench",
        "class_names": list(labels.CLASS_NAMES), "num_classes": labels.NUM_CLASSES,
        "audio_frames": audio_frames, "audio_shape": list(schema.audio_shape(audio_frames)),
        "video_shape": list(schema.VIDEO_SHAPE), "preprocessing": {"vocal_channels": ["speech"]},
        "num_examples": actors * clips, "counts": {}, "shards": shards,
    }
    with open(os.path.join(out_dir, schema.INFO_FILENAME), "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def examples_per_second(ds, limit: int | None = None) -> tuple[float, float]:
    """One timed pass over ``ds`` (batches; the first leaf has the batch dimension).

    Returns:
      ``(examples per second, CPU seconds per example)``; the CPU time is the
      whole process's, every thread's, so it counts the cores the pass kept busy.
    """
    import tensorflow as tf

    n = 0
    start, cpu = time.perf_counter(), _cpu_seconds()
    for batch in ds:
        n += int(tf.shape(tf.nest.flatten(batch)[0])[0])
        if limit and n >= limit:
            break
    return n / (time.perf_counter() - start), (_cpu_seconds() - cpu) / n


def best_of(datasets: dict, rounds: int, limits: dict) -> dict:
    """Warm each dataset up, then time them in interleaved rounds; keep each one's best.

    The best of several rounds estimates the speed without the noise of other
    processes on a shared machine (as ``timeit`` does); interleaving gives every
    candidate the same conditions.

    Returns:
      ``{key: (examples per second, CPU seconds per example)}`` of each one's fastest pass.
    """
    for key, ds in datasets.items():
        examples_per_second(ds, limit=limits.get(key))  # traces, compiles, fills the cache
    best = dict.fromkeys(datasets, (0.0, 0.0))
    for _ in range(rounds):
        for key, ds in datasets.items():
            best[key] = max(best[key], examples_per_second(ds, limit=limits.get(key)))
    return best


def _lerp(v: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``v`` at fractional pixel ``coords`` along ``axis``."""
    lo = np.floor(coords).astype(int)
    hi = np.minimum(lo + 1, v.shape[axis] - 1)
    w = (coords - lo).reshape([-1 if a == axis else 1 for a in range(v.ndim)])
    a, b = np.take(v, lo, axis=axis), np.take(v, hi, axis=axis)
    return a + (b - a) * w


def numpy_augment(audio: np.ndarray, video: np.ndarray, rng: np.random.Generator):
    """The per-sample numpy way, the same augmentation as (c): flip, bilinear crop/zoom,
    brightness / contrast / saturation, time and frequency masks, scaling to [0, 1]."""
    v = video.astype(np.float32) / 255.0  # (6, 64, 64, 3)
    if rng.random() < 0.5:
        v = v[:, :, ::-1]
    side = v.shape[1]
    scale = rng.uniform(0.8, 1.0)
    y0, x0 = rng.uniform(0.0, 1.0 - scale, size=2) * (side - 1)
    steps = np.arange(side) * scale
    v = _lerp(_lerp(v, y0 + steps, axis=1), x0 + steps, axis=2)
    v = v + rng.uniform(-0.1, 0.1)
    mean = v.mean(axis=(1, 2), keepdims=True)
    v = (v - mean) * rng.uniform(0.8, 1.2) + mean
    grey = (v * np.array([0.299, 0.587, 0.114], np.float32)).sum(-1, keepdims=True)
    v = np.clip(grey + (v - grey) * rng.uniform(0.8, 1.2), 0.0, 1.0).astype(np.float32)
    a = audio.copy()
    for _ in range(2):
        w = rng.integers(0, 11)
        t0 = rng.integers(0, a.shape[1] - w + 1)
        a[:, t0 : t0 + w] = 0.0
    w = rng.integers(0, 5)
    f0 = rng.integers(0, a.shape[0] - w + 1)
    a[f0 : f0 + w] = 0.0
    return a, v


def generator_dataset(audio: np.ndarray, video: np.ndarray, label: np.ndarray, batch_size: int):
    import tensorflow as tf

    def gen():
        rng = np.random.default_rng(0)
        for i in rng.permutation(len(label)):
            a, v = numpy_augment(audio[i], video[i], rng)
            yield (a, v), label[i]

    spec = (
        (tf.TensorSpec(audio.shape[1:], tf.float32), tf.TensorSpec(video.shape[1:], tf.float32)),
        tf.TensorSpec([], tf.int64),
    )
    return tf.data.Dataset.from_generator(gen, output_signature=spec).batch(batch_size).prefetch(2)


def fusion_model(audio_frames: int):
    try:
        from ravdess_tfrecords import models
    except ImportError:
        models = None
    if models is not None:
        sizes = {"filters": tuple(int(f) for f in FLAGS.filters)} if FLAGS.filters else {}
        return models.build_model("fusion", audio_frames=audio_frames, visual_backbone=FLAGS.visual_backbone,
                                  **sizes)
    from tensorflow import keras  # a small stand-in until ravdess_tfrecords.models exists

    layers = keras.layers
    a_in = keras.Input((24, audio_frames, 1), name="audio")
    v_in = keras.Input((6, 64, 64, 3), name="video")
    a = layers.Reshape((audio_frames, 24))(layers.Permute((2, 1, 3))(a_in))
    a = layers.Bidirectional(layers.LSTM(64, return_sequences=True))(a)
    a = layers.Dense(128, activation="relu")(layers.Bidirectional(layers.LSTM(64))(layers.Dropout(0.5)(a)))
    frame = keras.Sequential([layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
                              layers.Conv2D(64, 3, activation="relu"), layers.GlobalAveragePooling2D()])
    v = layers.Dense(128, activation="relu")(layers.GlobalMaxPooling1D()(layers.TimeDistributed(frame)(v_in)))
    out = layers.Dense(7, activation="softmax")(layers.Dense(256, activation="relu")(layers.Concatenate()([a, v])))
    return keras.Model([a_in, v_in], out)


def augment_only_dataset(files, audio_frames: int, batch_size: int, batches: int):
    """One parsed batch in memory, augmented ``batches`` times by the pipeline's parallel ``map``.

    The same map as (c), minus reading, shuffling and parsing: the ceiling of (c) on this CPU.
    """
    import tensorflow as tf

    from ravdess_tfrecords.reading import augment, pipeline

    serialized = next(iter(tf.data.TFRecordDataset(files).batch(batch_size)))
    features = pipeline.parse_batch(serialized, audio_frames, {"audio_frames"})
    seeds = tf.data.Dataset.random(seed=0).batch(2)
    ds = tf.data.Dataset.zip((tf.data.Dataset.from_tensors(features).repeat(batches), seeds))
    ds = ds.map(lambda f, seed: augment.augment_batch(f, seed), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=False)
    return ds.prefetch(tf.data.AUTOTUNE)


def _ms_per_call(fn, calls: int) -> float:
    for _ in range(2):
        fn()  # traces and compiles
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def train_step_costs(device_batch, audio_frames: int, steps: int) -> dict:
    """ms per CPU training step of the fusion model: bare on a host-mode batch, behind the
    ``AugmentLayer`` on the same batch in device mode (uint8 video), and the layer alone."""
    import tensorflow as tf

    from ravdess_tfrecords.reading import augment

    (audio, video), label = device_batch
    unit = augment.to_unit(video)
    model = fusion_model(audio_frames)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    wrapped = augment.with_augmentation(fusion_model(audio_frames), seed=0)
    wrapped.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    layer = augment.AugmentLayer(seed=0)
    layer_step = tf.function(lambda a, v: layer({"audio": a, "video": v}, training=True))
    return {
        "step": _ms_per_call(lambda: model.train_on_batch([audio, unit], label), steps),
        "step+layer": _ms_per_call(lambda: wrapped.train_on_batch([audio, video], label), steps),
        "layer": _ms_per_call(lambda: layer_step(audio, video)["video"].numpy(), 10 * steps),
    }


def main(argv: list[str]) -> None:
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    import ravdess_tfrecords as rt

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        data_dir = os.path.expanduser(FLAGS.data_dir) if FLAGS.data_dir else None
        if data_dir is None:
            data_dir = tmp
            print(f"writing {FLAGS.actors} x {FLAGS.clips_per_actor} random-content examples to {tmp} ...")
            write_random_shards(tmp, FLAGS.actors, FLAGS.clips_per_actor, FLAGS.audio_frames)
        builder = rt.Builder(data_dir)
        files = builder.files(FLAGS.split)
        n = builder.num_examples(FLAGS.split)
        m = builder.info.audio_frames
        b = FLAGS.batch_size
        print(f"{data_dir}: split {FLAGS.split!r}: {n} examples in {len(files)} shards, audio (24, {m}, 1), "
              f"batch {b}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), TensorFlow {tf.__version__}")
        from ravdess_tfrecords.reading import pipeline

        cached = pipeline.autocache(files, n, n)
        print(f"(b), (c) and (e) cache the decoded split after their first epoch: {'yes' if cached else 'no'} "
              f"(at most {pipeline.AUTOCACHE_MAX_BYTES >> 20} MiB of shards)")

        plain = builder.as_dataset(FLAGS.split, batch_size=256, training=False)
        arrays = [(a.numpy(), (v.numpy() * 255).round().astype(np.uint8), y.numpy()) for (a, v), y in plain]
        audio, video, label = (np.concatenate(x) for x in zip(*arrays, strict=True))
        datasets = {
            "a": tf.data.TFRecordDataset(files).batch(b).prefetch(tf.data.AUTOTUNE),
            "b": builder.as_dataset(FLAGS.split, batch_size=b, training=True, augment=False),
            "c": builder.as_dataset(FLAGS.split, batch_size=b, training=True),
            "c'": builder.as_dataset(FLAGS.split, batch_size=b, training=True, cache=False),
            "e": builder.as_dataset(FLAGS.split, batch_size=b, training=True, augment_on="device"),
            "e'": builder.as_dataset(FLAGS.split, batch_size=b, training=True, augment_on="device", cache=False),
            "d": generator_dataset(audio, video, label, b),
            "augment": augment_only_dataset(files, m, b, n // b),
        }
        results = best_of(datasets, FLAGS.rounds, {"d": FLAGS.generator_examples})
        steps = train_step_costs(next(iter(datasets["e"])), m, FLAGS.train_steps)

    rows = [
        ("a", "bare TFRecordDataset iteration (the limit)"),
        ("b", "host mode, no augmentation"),
        ("c", "host mode, augmentation"),
        ("c'", "host mode, augmentation, cache=False"),
        ("e", "device mode: read, parse, batch, uint8 (layer augments)"),
        ("e'", "device mode, cache=False"),
        ("d", "seed notebook: generator + numpy augmentation"),
        ("augment", "augmentation maths alone (ceiling of (c))"),
    ]
    feed = FLAGS.feed_rate
    print(f"\n{'':<62} {'examples/s':>10} {'vs (a)':>7} {'CPU us/ex':>9} {'cores for ' + f'{feed:.0f}/s':>15}")
    for key, what in rows:
        rate, cpu = results[key]
        tag = f"({key})" if len(key) <= 2 else ""
        print(f"{tag:<4} {what:<57} {rate:>10.0f} {rate / results['a'][0]:>6.2f}x {cpu * 1e6:>9.0f} "
              f"{feed * cpu:>15.1f}")
    model = FLAGS.visual_backbone + (f", filters {','.join(FLAGS.filters)}" if FLAGS.filters else "")
    print(f"\nfusion model ({model}) training step on this CPU, batch {b}: {steps['step']:.0f} ms; "
          f"behind the AugmentLayer (device mode): {steps['step+layer']:.0f} ms; "
          f"the layer alone (training=True): {steps['layer']:.1f} ms")

    a, c, e, d = (results[k][0] for k in ("a", "c", "e", "d"))
    cores = os.cpu_count()
    checks = [
        (f"(e)/(a) = {e / a:.2f}", "target >= 0.5", e / a >= 0.5),
        (f"(c) = {c:.0f}/s = {c / FLAGS.host_baseline:.2f}x {FLAGS.host_baseline:.0f}/s "
         f"({c / cores:.0f}/s per core of {cores})", "target >= 1.5x", c >= 1.5 * FLAGS.host_baseline),
        (f"(c)/(d) = {c / d:.1f}", "target >= 10", c / d >= 10),
    ]
    print()
    for what, target, met in checks:
        print(f"{what:<58} {target:<15} {'MET' if met else 'NOT MET'}")
    print(f"\nhost cores to feed one H100 at {feed:.0f} examples/s (CPU time per example x {feed:.0f}): "
          f"host mode {feed * results['c'][1]:.1f}, device mode {feed * results['e'][1]:.1f}")


if __name__ == "__main__":
    from ravdess_tfrecords import _cli

    _cli.quiet_tensorflow()  # TensorFlow's start-up lines on a machine without a GPU
    _cli.check_ranges({"batch_size": (1, None), "rounds": (1, None), "generator_examples": (1, None),
                       "train_steps": (1, None), "actors": (1, 24), "clips_per_actor": (1, None),
                       "audio_frames": (1, None), "feed_rate": (1.0, None), "host_baseline": (1.0, None)})
    _cli.run(main)
