"""Input-pipeline speed, measured side by side in one run over the same shards.

    python -m tools.bench_pipeline                       # random-content shards in a temp dir
    python -m tools.bench_pipeline --data_dir=tfrecords  # a converted corpus

Prints examples per second of
  (a) bare ``TFRecordDataset`` iteration (batched, no parsing): the limit;
  (b) ``ravdess_tfrecords.load`` in training mode without augmentation;
  (c) the same with augmentation (flip, crop, colour, SpecAugment masks);
  (c') (c) with ``cache=False``: every epoch reads the shards (by default a
      split this small is cached in memory after its first epoch);
  (d) the seed notebook's way: a Python generator over numpy arrays (already in
      memory, not timed) with per-sample numpy augmentation, wrapped in
      ``tf.data.Dataset.from_generator``;
the ratios (c)/(a) (target >= 0.5) and (c)/(d) (target >= 10); the
augmentation maths alone (the pipeline's parallel ``map`` of
``augment.augment_batch`` over one parsed batch in memory), the ceiling of (c)
on this CPU whatever reading costs; and the
fusion model's training-step throughput on this CPU beside (c), which shows
whether the pipeline or the model is the bottleneck.

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
from absl import app, flags

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


def write_random_shards(out_dir: str, actors: int, clips: int, audio_frames: int) -> None:
    """Shards + dataset_info.json in the converter's format, content random."""
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


def examples_per_second(ds, limit: int | None = None) -> float:
    """One timed pass over ``ds`` (batches; the first leaf has the batch dimension)."""
    import tensorflow as tf

    n = 0
    start = time.perf_counter()
    for batch in ds:
        n += int(tf.shape(tf.nest.flatten(batch)[0])[0])
        if limit and n >= limit:
            break
    return n / (time.perf_counter() - start)


def best_of(datasets: dict, rounds: int, limits: dict) -> dict:
    """Warm each dataset up, then time them in interleaved rounds; keep each one's best.

    The best of several rounds estimates the speed without the noise of other
    processes on a shared machine (as ``timeit`` does); interleaving gives every
    candidate the same conditions.
    """
    for key, ds in datasets.items():
        examples_per_second(ds, limit=limits.get(key))  # traces, compiles, fills the cache
    best = dict.fromkeys(datasets, 0.0)
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
        return models.build_model("fusion", audio_frames=audio_frames, visual_backbone=FLAGS.visual_backbone)
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

    from ravdess_tfrecords import augment, pipeline

    serialized = next(iter(tf.data.TFRecordDataset(files).batch(batch_size)))
    features = pipeline.parse_batch(serialized, audio_frames, {"audio_frames"})
    seeds = tf.data.Dataset.random(seed=0).batch(2)
    ds = tf.data.Dataset.zip((tf.data.Dataset.from_tensors(features).repeat(batches), seeds))
    ds = ds.map(lambda f, seed: augment.augment_batch(f, seed), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=False)
    return ds.prefetch(tf.data.AUTOTUNE)


def train_step_throughput(batch, audio_frames: int, steps: int) -> float:
    model = fusion_model(audio_frames)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    (audio, video), label = batch
    for _ in range(2):
        model.train_on_batch([audio, video], label)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch([audio, video], label)
    return steps * int(label.shape[0]) / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    import ravdess_tfrecords as rt

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        data_dir = FLAGS.data_dir
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
        from ravdess_tfrecords import pipeline

        cached = pipeline.autocache(files, n, n)
        print(f"(b) and (c) cache the split in memory after their first epoch: {'yes' if cached else 'no'} "
              f"(at most {pipeline.AUTOCACHE_MAX_BYTES >> 20} MiB of shards)")

        plain = builder.as_dataset(FLAGS.split, batch_size=256, training=False)
        arrays = [(a.numpy(), (v.numpy() * 255).round().astype(np.uint8), y.numpy()) for (a, v), y in plain]
        audio, video, label = (np.concatenate(x) for x in zip(*arrays, strict=True))
        datasets = {
            "a": tf.data.TFRecordDataset(files).batch(b).prefetch(tf.data.AUTOTUNE),
            "b": builder.as_dataset(FLAGS.split, batch_size=b, training=True, augment=False),
            "c": builder.as_dataset(FLAGS.split, batch_size=b, training=True),
            "c'": builder.as_dataset(FLAGS.split, batch_size=b, training=True, cache=False),
            "d": generator_dataset(audio, video, label, b),
            "augment": augment_only_dataset(files, m, b, n // b),
        }
        results = best_of(datasets, FLAGS.rounds, {"d": FLAGS.generator_examples})
        results["model"] = train_step_throughput(next(iter(datasets["c"])), m, FLAGS.train_steps)

    rows = [
        ("a", "bare TFRecordDataset iteration (the limit)"),
        ("b", "pipeline, no augmentation"),
        ("c", "pipeline, augmentation"),
        ("c'", "pipeline, augmentation, cache=False"),
        ("d", "seed notebook: generator + numpy augmentation"),
        ("augment", "augmentation maths alone (ceiling of (c))"),
        ("model", f"fusion model ({FLAGS.visual_backbone}) train step, CPU"),
    ]
    print(f"\n{'':<51} {'examples/s':>11} {'vs (a)':>8} {'vs (c)':>8}")
    for key, what in rows:
        r = results[key]
        label = f"({key})" if len(key) <= 2 else ""
        print(f"{label:<4} {what:<46} {r:>11.0f} {r / results['a']:>7.2f}x {r / results['c']:>7.2f}x")
    ca, cd = results["c"] / results["a"], results["c"] / results["d"]
    print(f"\n(c)/(a) = {ca:.2f}  target >= 0.5: {'MET' if ca >= 0.5 else 'NOT MET'}")
    print(f"(c)/(d) = {cd:.1f}  target >= 10:  {'MET' if cd >= 10 else 'NOT MET'}")
    bottleneck = "the model" if results["model"] < results["c"] else "the input pipeline"
    print(f"training on this CPU is bound by {bottleneck}: pipeline (c) {results['c']:.0f}/s vs "
          f"model {results['model']:.0f}/s")


if __name__ == "__main__":
    app.run(main)
