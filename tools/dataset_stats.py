"""Print the size of each set and its per-class counts, for any split scheme.

    python -m tools.dataset_stats --data_dir=tfrecords
    python -m tools.dataset_stats --data_dir=tfrecords --scheme=luna5 --all_folds
    python -m tools.dataset_stats --data_dir=tfrecords --scheme=kfold --folds=4 --fold=1 --num_classes=8

Reads the labels once (a cheap parse of the scalar fields only), then counts
every split of every requested fold from that.
"""

from __future__ import annotations

import collections
import os

from absl import flags

from ravdess_tfrecords.reading import splits

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Converted shards (the converter's --output).", required=True)
flags.DEFINE_enum("scheme", "speaker", list(splits.NAMED_SCHEMES), "Split scheme.")
flags.DEFINE_integer("folds", None, "K for --scheme=kfold (default 6).")
flags.DEFINE_integer("fold", 0, "Which fold is the test fold.")
flags.DEFINE_bool("all_folds", False, "Print every fold of the scheme.")
flags.DEFINE_enum("num_classes", "7", ["7", "8"], "7: neutral and calm merged; 8: kept apart.")
flags.DEFINE_list("vocal_channels", None, "Count only these vocal channels (speech, song).")


def actor_ranges(actors) -> str:
    """``(1, 2, 3, 5, 7, 8)`` -> ``"1-3,5,7-8"``."""
    out, run = [], []
    for a in sorted(actors):
        if run and a == run[-1] + 1:
            run.append(a)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [a]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def scan(builder, num_classes: int, vocal_channels=None) -> collections.Counter:
    """``Counter[(actor, label)]`` over every stored example (scalar fields only)."""
    import tensorflow as tf

    from ravdess_tfrecords.reading.builder import require_tfrecord

    require_tfrecord(builder.info)  # TFRecordDataset below
    spec = {k: tf.io.FixedLenFeature([], tf.int64) for k in ("actor", "label", "emotion")}
    spec["vocal_channel"] = tf.io.FixedLenFeature([], tf.string)
    files = builder.files("all")
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE).batch(1024)
    ds = ds.map(lambda s: tf.io.parse_example(s, spec), num_parallel_calls=tf.data.AUTOTUNE)
    counts: collections.Counter = collections.Counter()
    for batch in ds.as_numpy_iterator():
        labels = batch["label"] if num_classes == 7 else batch["emotion"] - 1
        for actor, label, channel in zip(batch["actor"], labels, batch["vocal_channel"], strict=True):
            if vocal_channels is None or channel.decode() in vocal_channels:
                counts[int(actor), int(label)] += 1
    return counts


def table(split_map, counts, class_names) -> str:
    width = max(len(n) for n in class_names)
    aw = max([6] + [len(actor_ranges(a)) for a in split_map.values()])
    head = f"{'split':<11} {'actors':<{aw}} {'examples':>8}  " + " ".join(f"{n:>{width}}" for n in class_names)
    lines = [head, "-" * len(head)]
    total = collections.Counter()
    for split, actors in split_map.items():
        per = [sum(counts[a, k] for a in actors) for k in range(len(class_names))]
        total.update(dict(enumerate(per)))
        lines.append(f"{split:<11} {actor_ranges(actors):<{aw}} {sum(per):>8}  "
                     + " ".join(f"{n:>{width}}" for n in per))
    per = [total[k] for k in range(len(class_names))]
    lines.append(f"{'total':<11} {'':<{aw}} {sum(per):>8}  " + " ".join(f"{n:>{width}}" for n in per))
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import ravdess_tfrecords as rt
    from ravdess_tfrecords import labels
    from ravdess_tfrecords.reading import splits

    builder = rt.Builder(FLAGS.data_dir)  # it expands ~
    info = builder.info
    num_classes = int(FLAGS.num_classes)
    print(f"{FLAGS.data_dir}: {info.num_examples} examples, actors {actor_ranges(info.actors)}, "
          f"audio {info.audio_shape}, " + (f"video {info.video_shape}" if info.has_video else "audio only")
          + f", schema {info.schema_version}")
    if info.summary:
        print(f"conversion: {info.summary}")
    counts = scan(builder, num_classes, FLAGS.vocal_channels)
    folds = range(splits.num_folds(FLAGS.scheme, FLAGS.folds)) if FLAGS.all_folds else [FLAGS.fold]
    for fold in folds:
        kwargs = {"folds": FLAGS.folds} if FLAGS.scheme == "kfold" else {}
        if FLAGS.scheme != "speaker":
            kwargs["fold"] = fold
        split_map = builder.split_actors(FLAGS.scheme, **kwargs)
        title = FLAGS.scheme if FLAGS.scheme == "speaker" else f"{FLAGS.scheme} fold {fold}"
        print(f"\n{title}:")
        print(table(split_map, counts, labels.class_names(num_classes)))


if __name__ == "__main__":
    from ravdess_tfrecords import _cli

    _cli.quiet_tensorflow()  # TensorFlow's start-up lines on a machine without a GPU
    _cli.run(main)
