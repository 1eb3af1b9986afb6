r"""Train an emotion model on converted RAVDESS shards.

    python -m trainers.fit --data_dir=tfrecords --model_dir=runs/fusion --split=speaker
    python -m trainers.fit --data_dir=tfrecords --model_dir=runs/luna5 --split=luna5      # every fold + table
    python -m trainers.fit --data_dir=tfrecords --model_dir=runs/audio --model=audio      # unimodal baseline

Started again with the same flags, a killed run resumes from its last epoch
(``BackupAndRestore``); completed folds of a cross-validation are not retrained.
Everything it writes is listed in ``trainers/model_dir.py``.
"""

from __future__ import annotations

from absl import app, flags

from trainers import cv
from trainers.callbacks import TrainingInterrupted
from trainers.config import TrainConfig

FLAGS = flags.FLAGS

flags.DEFINE_string("data_dir", None, "Converted shards: the converter's --output.", required=True)
flags.DEFINE_string("model_dir", None, "Where checkpoints, logs, metrics and the exported model go.", required=True)
flags.DEFINE_enum("split", "speaker", ["speaker", "kfold", "luna5", "sixfold"],
                  "Speaker-independent split scheme (ravdess_tfrecords.splits).")
flags.DEFINE_integer("folds", None, "K for --split=kfold (default 6).")
flags.DEFINE_integer("fold", None, "Train this test fold only; unset with a fold scheme: every fold plus a table.")
flags.DEFINE_list("train_actors", None, "Explicit actor lists (all three together) instead of --split.")
flags.DEFINE_list("validation_actors", None, "Validation actors for explicit lists.")
flags.DEFINE_list("test_actors", None, "Test actors for explicit lists.")
flags.DEFINE_enum("num_classes", "7", ["7", "8"], "7: neutral and calm merged; 8: kept apart.")
flags.DEFINE_enum("model", "fusion", ["fusion", "audio", "video"], "Fusion model or a unimodal baseline.")
flags.DEFINE_enum("visual_backbone", "vgg", ["vgg", "resnet", "c3d"], "Frame-wise visual backbone.")
flags.DEFINE_enum("temporal", "max", ["max", "gru", "lstm"], "Temporal pooling of the frame features.")
flags.DEFINE_list("filters", ["32", "64", "128", "256"], "Channels per block of the visual backbone.")
flags.DEFINE_integer("epochs", 60, "Maximum epochs (early stopping may end sooner).")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("seed", 0, "keras.utils.set_random_seed and the input pipeline's seed.")
flags.DEFINE_list("augment", ["flip", "crop", "color", "time_mask", "freq_mask"],
                  "Training augmentations switched on; --augment= turns all off.")
flags.DEFINE_boolean("one_hot", False, "One-hot labels and categorical cross-entropy (else sparse).")
flags.DEFINE_enum("monitor", "val_accuracy", ["val_accuracy", "val_loss"],
                  "Validation quantity for the best checkpoint and early stopping.")
flags.DEFINE_integer("patience", 15, "Early-stopping patience in epochs.")
flags.DEFINE_integer("lr_patience", 5, "Epochs without val_loss improvement before the learning rate halves.")
flags.DEFINE_list("vocal_channels", None, "Keep only these vocal channels (speech, song); default all stored.")
flags.DEFINE_boolean("cache", True, "Cache the serialized records in memory after the first epoch.")
flags.DEFINE_boolean("export", True, "Also export a SavedModel for serving (model.export).")
flags.DEFINE_enum("distribution_strategy", "default", ["default", "mirrored"],
                  "default: one device; mirrored: tf.distribute.MirroredStrategy over every local GPU "
                  "(--batch_size is then the global batch).")
flags.DEFINE_boolean("shuffle_labels", False,
                     "Sanity control: shuffle training labels within each batch; test accuracy must fall to chance.")
flags.DEFINE_integer("interrupt_after_epoch", 0,
                     "Testing: stop as if killed after this many epochs (the backup is kept); 0: never.")
flags.DEFINE_integer("verbose", 2, "Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch.")


def config_from_flags() -> TrainConfig:
    """The flags as a ``TrainConfig``."""
    explicit = [FLAGS.train_actors, FLAGS.validation_actors, FLAGS.test_actors]
    actors = None
    split = FLAGS.split
    if any(explicit):
        if not all(explicit):
            raise app.UsageError("--train_actors, --validation_actors and --test_actors go together")
        if FLAGS["split"].present:
            raise app.UsageError("pass either --split or explicit actor lists, not both")
        names = ("train", "validation", "test")
        actors = {name: tuple(int(a) for a in ids) for name, ids in zip(names, explicit, strict=True)}
        split = "actors"
    return TrainConfig(
        data_dir=FLAGS.data_dir,
        model_dir=FLAGS.model_dir,
        split=split,
        folds=FLAGS.folds,
        fold=FLAGS.fold,
        actors=actors,
        num_classes=int(FLAGS.num_classes),
        model=FLAGS.model,
        visual_backbone=FLAGS.visual_backbone,
        temporal=FLAGS.temporal,
        filters=tuple(int(f) for f in FLAGS.filters),
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        seed=FLAGS.seed,
        augment=tuple(FLAGS.augment),
        one_hot=FLAGS.one_hot,
        monitor=FLAGS.monitor,
        early_stopping_patience=FLAGS.patience,
        lr_patience=FLAGS.lr_patience,
        vocal_channels=tuple(FLAGS.vocal_channels) if FLAGS.vocal_channels else None,
        cache=FLAGS.cache,
        shuffle_labels=FLAGS.shuffle_labels,
        export=FLAGS.export,
        distribution_strategy=FLAGS.distribution_strategy,
        interrupt_after_epoch=FLAGS.interrupt_after_epoch,
        verbose=FLAGS.verbose,
    )


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = config_from_flags()
    try:
        cv.run(config)
    except TrainingInterrupted as e:
        print(f"{e}; run the same command again to resume", flush=True)
        return 3
    return 0


if __name__ == "__main__":
    app.run(main)
