r"""Predict the emotion of raw audio-video clips with a trained model.

    python -m trainers.predict --model_dir=runs/fusion clip.mp4 [more.mp4 ...]
    python -m trainers.predict --model_dir=runs/fusion --json clips/*.mp4

Each clip goes through exactly the converter's preprocessing, with the settings
saved in the model directory (see ``trainers/predict_lib.py``). One line per
clip, ``clip.mp4: angry 0.81 (happy 0.10, sad 0.05)``; a clip that fails says
why and the others still run. The exit code is non-zero only if every clip failed.

The preprocessing needs the ``[convert]`` extra; without it, one ``error:`` line
says what to install (exit status 2).
"""

from __future__ import annotations

import json

# Nothing here imports TensorFlow: the flags are parsed and checked first, so a bad one fails in a second.
from absl import app, flags

from ravdess_tfrecords import _cli, conversion
from trainers import model_dir as model_dir_lib

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "A model directory written by trainers.fit.")
flags.DEFINE_boolean("json", False, "Print one JSON document (a list, one object per clip) instead of lines.")
flags.DEFINE_integer("top_k", 3, "Emotions shown per clip in the text output.")

flags.DEFINE_boolean("verbose", False, _cli.VERBOSE_HELP)
_cli.check_ranges({"top_k": (1, None)})


@_cli.user_errors
def main(argv: list[str]) -> int:
    clips = argv[1:]
    if not clips:
        raise app.UsageError("name at least one clip: python -m trainers.predict --model_dir=DIR clip.mp4 ...")
    _cli.require("model_dir")
    model_dir_lib.require_saved_if_local(FLAGS.model_dir)  # before TensorFlow loads
    conversion.require_extra("trainers.predict")  # the converter's preprocessing, before importing it
    _cli.quiet_tensorflow()  # the flags are good: now TensorFlow (without its start-up lines)
    from trainers import predict_lib

    predictor = predict_lib.load(FLAGS.model_dir)
    results = predict_lib.predict_clips(predictor, clips)
    if FLAGS.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print(predict_lib.format_result(result, FLAGS.top_k))
    return 1 if all("error" in r for r in results) else 0


if __name__ == "__main__":
    _cli.run(main)
