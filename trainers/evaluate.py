r"""Re-evaluate a saved model on a split: accuracy, UAR, macro F1, per-class recall, confusion matrix.

    python -m trainers.evaluate --model_dir=runs/fusion                      # its own test split
    python -m trainers.evaluate --model_dir=runs/fusion --data_dir=other --split=speaker --subset=validation

Split, fold and data directory default to those the model was trained with
(``config.json`` in the model directory). Writes ``metrics.json`` and
``confusion_matrix.png`` into ``--output_dir`` (default ``MODEL_DIR/eval_SPLIT_SUBSET``,
e.g. ``eval_speaker_test``). A split whose chosen actors include some the model was
trained on is refused (exit 2) unless ``--allow_train_overlap``.
"""

from __future__ import annotations

# Nothing here imports TensorFlow: the flags are parsed and checked first, so a bad one fails in a second.
from absl import app, flags

from ravdess_tfrecords import _cli
from ravdess_tfrecords.reading import splits
from trainers import metrics as metrics_lib
from trainers import model_dir as model_dir_lib

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "A model directory written by trainers.fit.")
flags.DEFINE_string("data_dir", None, "Converted shards (default: the ones the model was trained on).")
flags.DEFINE_enum("split", None, list(splits.NAMED_SCHEMES),
                  "Split scheme (default: the one the model was trained with).")
flags.DEFINE_integer("folds", None, "K for --split=kfold (default: the model's, else 6).")
flags.DEFINE_integer("fold", None, "Test fold of a fold scheme, 0-based (--fold=0 is cross-validation's fold_1): "
                     "--split's, or without --split the one the model was trained with (default: the model's "
                     "fold, else 0).")
flags.DEFINE_string("subset", "test", "Which set: train, validation, test, a union like validation+test, or all.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_string("output_dir", None, "Where metrics.json and confusion_matrix.png go (default: "
                    "MODEL_DIR/eval_SPLIT_SUBSET, e.g. eval_speaker_test).")
flags.DEFINE_boolean("allow_train_overlap", False, "Evaluate on another split even if its chosen actors include some "
                     "the model was trained on (speaker leakage: not a test of unseen speakers).")

flags.DEFINE_boolean("verbose", False, _cli.VERBOSE_HELP)
_cli.check_ranges({"batch_size": (1, None), "fold": (0, None), "folds": (2, None)})


@_cli.user_errors
def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    _cli.require("model_dir")
    model_dir_lib.require_saved_if_local(FLAGS.model_dir)  # before TensorFlow loads
    _cli.quiet_tensorflow()  # the flags are good: now TensorFlow (without its start-up lines)
    from trainers.evaluation import evaluate_saved

    metrics = evaluate_saved(
        FLAGS.model_dir,
        data_dir=FLAGS.data_dir,
        subset=FLAGS.subset,
        split=FLAGS.split,
        folds=FLAGS.folds,
        fold=FLAGS.fold,
        batch_size=FLAGS.batch_size,
        output_dir=FLAGS.output_dir,
        allow_train_overlap=FLAGS.allow_train_overlap,
    )
    print(metrics_lib.format_metrics(metrics, f"{FLAGS.subset} (actors {metrics['actors']})"))
    print(f"  written to {metrics['output_dir']}")
    return 0


if __name__ == "__main__":
    _cli.run(main)
