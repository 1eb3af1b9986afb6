r"""Train an emotion model on converted RAVDESS shards.

    python -m trainers.fit --data_dir=tfrecords --model_dir=runs/fusion --split=speaker
    python -m trainers.fit --data_dir=tfrecords --model_dir=runs/luna5 --split=luna5      # every fold + table
    python -m trainers.fit --data_dir=tfrecords --model_dir=runs/audio --model=audio      # unimodal baseline
    TF_CONFIG=... python -m trainers.fit ... --strategy=multi_worker                      # on every worker

Started again with the same flags, a killed run resumes from its last epoch
(``BackupAndRestore``); completed folds of a cross-validation are not retrained.
Everything it writes is listed in ``trainers/model_dir.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys

# Nothing here imports TensorFlow: the flags are parsed and checked first (TrainConfig included), so a bad one
# fails in a second; main imports the training code once they are good.
from absl import app, flags

from ravdess_tfrecords import _cli, model_choices
from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.reading import augment_choices, splits
from trainers import cluster
from trainers import config as config_lib
from trainers.config import TrainConfig

FLAGS = flags.FLAGS

RESUME_HINT = ": run the same command again to resume from the last finished epoch"

flags.DEFINE_string("data_dir", None, "Converted shards: the converter's --output.")
flags.DEFINE_string("model_dir", None, "Where checkpoints, logs, metrics and the exported model go.")
flags.DEFINE_enum("split", "speaker", list(splits.NAMED_SCHEMES),
                  "Speaker-independent split scheme (ravdess_tfrecords.reading.splits).")
flags.DEFINE_integer("folds", None, "K for --split=kfold (default 6).")
flags.DEFINE_integer("fold", None, "Train this test fold only, 0-based (--fold=0 is cross-validation's fold_1); "
                     "unset with a fold scheme: every fold, in fold_1..fold_K, plus a table.")
flags.DEFINE_list("train_actors", None, "Explicit actor lists (all three together) instead of --split.")
flags.DEFINE_list("validation_actors", None, "Validation actors for explicit lists.")
flags.DEFINE_list("test_actors", None, "Test actors for explicit lists.")
flags.DEFINE_enum("num_classes", "7", ["7", "8"], "7: neutral and calm merged; 8: kept apart.")
flags.DEFINE_enum("model", "fusion", list(model_choices.MODELS), "Fusion model or a unimodal baseline.")
flags.DEFINE_enum("visual_backbone", "vgg", list(model_choices.BACKBONES),
                  "Visual backbone: vgg, resnet (frame-wise), c3d (3D convolutions), or a keras.applications "
                  "net that can start from ImageNet (mobilenet_v3_small, mobilenet_v3_large; --filters unused).")
flags.DEFINE_enum("temporal", "max", list(model_choices.TEMPORALS), "Temporal pooling of the frame features.")
flags.DEFINE_enum("audio_pooling", "last", list(model_choices.AUDIO_POOLINGS),
                  "How the audio branch reads its second BLSTM: last (its final states, the seed's) or mean "
                  "(the mean of its outputs over time).")
flags.DEFINE_boolean("mask_padding", False,
                     "The audio BLSTMs skip all-zero frames (the converter's pre-padding, time-masked frames).")
flags.DEFINE_enum("audio_input_norm", "none", list(model_choices.AUDIO_INPUT_NORMS),
                  "Normalization of the MFCC vectors in front of the audio BLSTMs: none, or batch (each "
                  "coefficient batch-normalized over the batch's frames).")
flags.DEFINE_list("filters", ["32", "64", "128", "256"], "Channels per block of the visual backbone.")
flags.DEFINE_integer("epochs", 60, "Maximum epochs (early stopping may end sooner).")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("seed", 0, "keras.utils.set_random_seed and the input pipeline's seed.")
flags.DEFINE_list("augment", list(augment_choices.AUGMENTATIONS),
                  "Training augmentations switched on; --augment= turns all off.")
flags.DEFINE_enum("augment_on", "auto", ["auto", *augment_choices.AUGMENT_ON],
                  "Where training augmentation runs: host (the tf.data pipeline), device (a layer in front of "
                  "the model, in the training step; the pipeline ships uint8 video) or auto (device when "
                  "TensorFlow sees a GPU, else host).")
flags.DEFINE_boolean("one_hot", False, "One-hot labels and categorical cross-entropy (else sparse).")
flags.DEFINE_enum("monitor", "val_accuracy", ["val_accuracy", "val_loss"],
                  "Validation quantity for the best checkpoint and early stopping.")
flags.DEFINE_integer("patience", 15, "Early-stopping patience in epochs.")
flags.DEFINE_integer("lr_patience", 5, "Epochs without val_loss improvement before the learning rate halves.")
flags.DEFINE_list("vocal_channels", None, "Keep only these vocal channels (speech, song); default all stored.")
flags.DEFINE_enum("cache", "auto", list(config_lib.CACHE_MODES),
                  "Cache the decoded examples in memory after the first epoch: auto (when the split's shards are "
                  "under the autocache budget, 256 MiB, and the shuffle buffer holds the whole split), always, never.")
flags.DEFINE_boolean("export", True,
                     "Also export the model for serving: a SavedModel, and model.onnx with the [onnx] extra.")
flags.DEFINE_enum("strategy", "auto", list(config_lib.STRATEGIES),
                  "one_device: the first GPU, else the CPU; mirrored: tf.distribute.MirroredStrategy over every "
                  "local GPU (--batch_size is the global batch, split over the replicas); multi_worker: "
                  "MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (every worker runs the same command; "
                  "only the chief writes --model_dir); auto: mirrored with two or more GPUs, else one_device.")
flags.DEFINE_enum("distribution_strategy", None, [*config_lib.ALIASES, *config_lib.STRATEGIES],
                  "Old name of --strategy; its values default (= one_device) and mirrored still work.")
flags.DEFINE_string("data_service", None,
                    "grpc://HOST:PORT of a tf.data service dispatcher (python -m tools.data_service): the training "
                    "input pipeline (read, parse, augment, batch) runs on its workers; validation and test stay local.")
flags.DEFINE_float("worker_timeout", cluster.DEFAULT_WORKER_TIMEOUT_S,
                   "--strategy=multi_worker: seconds to wait for the other tasks in TF_CONFIG to start (it says "
                   "which it waits for), then give up with an error; 0: wait for ever.")
flags.DEFINE_float("data_service_timeout", cluster.DEFAULT_DATA_SERVICE_TIMEOUT_S,
                   "--data_service: seconds to wait for the dispatcher to answer with a worker registered, then give "
                   "up with an error; "
                   "0: wait for ever.")
flags.DEFINE_boolean("shuffle_labels", False,
                     "Sanity control: shuffle training labels within each batch; test accuracy must fall to chance.")
flags.DEFINE_enum("mixed_precision", "none", list(config_lib.PRECISION_POLICIES),
                  "Keras mixed-precision policy: none (float32), bfloat16 (GPUs from Ampere on, TPUs) or float16 "
                  "(older GPUs; with loss scaling). The softmax output and the loss stay float32.")
flags.DEFINE_enum("jit_compile", "auto", list(config_lib.JIT_COMPILE),
                  "XLA-compile the training step: auto (when TensorFlow sees a GPU), true, false.")
flags.DEFINE_integer("steps_per_execution", 1, "Training steps per tf.function call (fewer host round trips).")
flags.DEFINE_enum("class_weight", "none", list(config_lib.CLASS_WEIGHTS),
                  "balanced: weight the loss of class c by n / (k * count_c) over the training split's counts.")
flags.DEFINE_enum("optimizer", "adam", list(config_lib.OPTIMIZERS),
                  "adam, or adamw (decoupled --weight_decay; biases and norm layers not decayed).")
flags.DEFINE_float("weight_decay", config_lib.DEFAULT_WEIGHT_DECAY, "AdamW's decoupled weight decay.")
flags.DEFINE_enum("lr_schedule", "plateau", list(config_lib.LR_SCHEDULES),
                  "plateau: halve the learning rate when val_loss stalls (--lr_patience); cosine: per epoch, linear "
                  "warm-up over --warmup_epochs, then cosine decay to the minimum learning rate at --epochs.")
flags.DEFINE_integer("warmup_epochs", 0, "--lr_schedule=cosine: epochs of linear warm-up.")
flags.DEFINE_float("mixup", 0.0, "mixup of the training batches, lam ~ Beta(a, a) with this a (0.2-0.4 is "
                   "usual; > 0 implies one-hot labels); 0: off.")
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing of the cross-entropy (> 0 implies one-hot labels).")
flags.DEFINE_string("visual_weights", "none",
                    "Where the visual backbone starts: none (random), imagenet (mobilenet_v3_*; Keras downloads "
                    "the weights once), or the path of a Keras weights file of the backbone (.weights.h5, .h5).")
flags.DEFINE_integer("freeze_epochs", 0,
                     "Keep the pretrained visual backbone frozen for the first N epochs, then train all layers.")
flags.DEFINE_enum("progress", "auto", list(config_lib.PROGRESS),
                  "What model.fit prints: one line per epoch, a progress bar, or nothing; auto: a bar when "
                  "stdout is a terminal, else one line per epoch.")
flags.DEFINE_boolean("verbose", False, _cli.VERBOSE_HELP)
# TrainConfig's field -> the flag that sets it, where the names differ.
FIELD_FLAGS = {"early_stopping_patience": "patience"}
_cli.check_ranges({FIELD_FLAGS.get(name, name): limits for name, limits in config_lib.RANGES.items()})


def _integers(name: str, what: str = "an integer") -> tuple[int, ...]:
    ids = []
    for value in FLAGS[name].value:
        try:
            ids.append(int(value))
        except ValueError:
            raise UserError(f"--{name}: {value!r} is not {what}") from None
    return tuple(ids)


def _actor_ids(name: str) -> tuple[int, ...]:
    return _integers(name, "an actor number (1-24)")


def _strategy() -> str:
    """--strategy, or its old name --distribution_strategy; both given must agree."""
    if FLAGS.distribution_strategy is None:
        return FLAGS.strategy
    old = config_lib.canonical(FLAGS.distribution_strategy)
    if FLAGS["strategy"].present and config_lib.canonical(FLAGS.strategy) != old:
        raise UserError(f"--strategy={FLAGS.strategy} and --distribution_strategy={FLAGS.distribution_strategy} "
                         "disagree; pass --strategy only")
    return old


def config_from_flags() -> TrainConfig:
    """The flags as a ``TrainConfig``, without TensorFlow: ``--augment_on=auto`` is left to ``resolve_augment_on``.

    Raises:
      ValueError: a missing directory flag, incomplete or conflicting actor lists, a bad setting.
    """
    _cli.require("data_dir", "model_dir")
    names = ("train", "validation", "test")
    explicit = [FLAGS[f"{name}_actors"].value for name in names]
    actors = None
    split = FLAGS.split
    if any(explicit):
        if not all(explicit):
            raise UserError("--train_actors, --validation_actors and --test_actors go together")
        if FLAGS["split"].present:
            raise UserError("pass either --split or explicit actor lists, not both")
        actors = {name: _actor_ids(f"{name}_actors") for name in names}
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
        audio_pooling=FLAGS.audio_pooling,
        mask_padding=FLAGS.mask_padding,
        audio_input_norm=FLAGS.audio_input_norm,
        filters=_integers("filters"),
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        seed=FLAGS.seed,
        augment=tuple(FLAGS.augment),
        augment_on="host" if FLAGS.augment_on == "auto" else FLAGS.augment_on,  # auto: see resolve_augment_on
        one_hot=FLAGS.one_hot,
        monitor=FLAGS.monitor,
        early_stopping_patience=FLAGS.patience,
        lr_patience=FLAGS.lr_patience,
        vocal_channels=tuple(FLAGS.vocal_channels) if FLAGS.vocal_channels else None,
        cache=FLAGS.cache,
        shuffle_labels=FLAGS.shuffle_labels,
        export=FLAGS.export,
        strategy=_strategy(),
        data_service=FLAGS.data_service,
        worker_timeout=FLAGS.worker_timeout,
        data_service_timeout=FLAGS.data_service_timeout,
        verbose=config_lib.progress_verbosity(FLAGS.progress, sys.stdout.isatty()),
        mixed_precision=FLAGS.mixed_precision,
        jit_compile=FLAGS.jit_compile,
        steps_per_execution=FLAGS.steps_per_execution,
        class_weight=FLAGS.class_weight,
        optimizer=FLAGS.optimizer,
        weight_decay=FLAGS.weight_decay,
        lr_schedule=FLAGS.lr_schedule,
        warmup_epochs=FLAGS.warmup_epochs,
        label_smoothing=FLAGS.label_smoothing,
        mixup=FLAGS.mixup,
        visual_weights=FLAGS.visual_weights,
        freeze_epochs=FLAGS.freeze_epochs,
    )


def resolve_augment_on(config: TrainConfig) -> TrainConfig:
    """``config`` with ``--augment_on=auto`` decided: device when TensorFlow sees a GPU, else host
    (``augment.default_augment_on``; imports TensorFlow)."""
    if FLAGS.augment_on != "auto":
        return config
    from ravdess_tfrecords.reading import augment

    return dataclasses.replace(config, augment_on=augment.default_augment_on())


@_cli.user_errors
def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = config_from_flags()
    config_lib.preflight(config, augment_on_known=FLAGS.augment_on != "auto")
    _cli.quiet_tensorflow()  # the flags are good: now TensorFlow (without its start-up lines)
    from trainers import cv

    config = resolve_augment_on(config)
    # Ctrl-C and SIGTERM stop the run at once, also while TensorFlow blocks (a collective, the tf.data service).
    cluster.stop_on_signals(RESUME_HINT)
    if not FLAGS.verbose:  # INFO lines off; on a worker other than the chief, warnings too (only the chief reports)
        chief = config.strategy != "multi_worker" or _cli.is_chief_task(cluster.tf_config())
        if chief:
            _cli.quiet_logs(logging.WARNING)
        else:
            _cli.errors_only()
    try:
        cv.run(config)
        if config.strategy == "multi_worker" and _cli.is_chief_task(cluster.tf_config()):
            # The other workers leave first: the chief's coordination service must outlive their shutdown.
            cluster.wait_for_peers_to_leave(cluster.tf_config(), config.worker_timeout)
    except KeyboardInterrupt:  # stop_on_signals did not install (not the main thread)
        print(f"\ninterrupted{RESUME_HINT}", flush=True)
        return 130
    except Exception as e:  # noqa: BLE001 - only a lost peer is reported here; anything else goes on up
        import tensorflow as tf

        if config.strategy != "multi_worker" or not isinstance(e, tf.errors.UnavailableError) or FLAGS.verbose:
            raise
        _cli.print_error(cluster.lost_peer_message(e))  # a runtime failure, but its traceback says nothing more
        return 1
    return 0


if __name__ == "__main__":
    _cli.run(main)
