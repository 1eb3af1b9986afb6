"""Write a synthetic RAVDESS-shaped corpus (``Actor_NN/MM-VV-EE-II-SS-RR-AA.mp4`` + ``truth.json``).

    python -m tools.make_synthetic_corpus --output=/tmp/synthetic-ravdess
    python -m tools.make_synthetic_corpus --output=/tmp/full --full_size --actors=1,2 --clips_per_actor=4

See ``ravdess_tfrecords.conversion.synthetic`` for what the clips hold. Needs the
``[convert]`` and ``[synthetic]`` extras; without them, one ``error:`` line says so.
"""

from __future__ import annotations

import os
import time

from absl import flags

from ravdess_tfrecords import conversion

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "Directory to write the corpus to.", required=True)
flags.DEFINE_list("actors", [str(a) for a in range(1, 25)], "Actor ids (1..24).")
flags.DEFINE_integer("clips_per_actor", None, "Clips per actor and vocal channel (default: all, 60 speech).")
flags.DEFINE_list("vocal_channels", ["speech"], "speech, song or both.")
flags.DEFINE_integer("width", 480, "Frame width (small default; RAVDESS is 1280).")
flags.DEFINE_integer("height", 270, "Frame height (RAVDESS is 720).")
flags.DEFINE_boolean("full_size", False, "1280x720 at 29.97 fps, like RAVDESS (for benchmarks).")
flags.DEFINE_integer("seed", 0, "Random seed of durations, silences and placement.")
flags.DEFINE_integer("workers", os.cpu_count() or 1, "Worker processes.")


def main(argv: list[str]) -> None:
    del argv
    conversion.require_synthetic_extras("tools.make_synthetic_corpus")
    from ravdess_tfrecords.conversion import synthetic

    width, height = (1280, 720) if FLAGS.full_size else (FLAGS.width, FLAGS.height)
    start = time.perf_counter()
    output = os.path.expanduser(FLAGS.output)
    truth = synthetic.make_corpus(
        output, actors=[int(a) for a in FLAGS.actors], clips_per_actor=FLAGS.clips_per_actor,
        vocal_channels=FLAGS.vocal_channels, width=width, height=height, seed=FLAGS.seed,
        workers=FLAGS.workers, progress=True,
    )
    print(f"wrote {len(truth)} clips ({width}x{height}) to {output} in {time.perf_counter() - start:.0f} s; "
          f"ground truth in {os.path.join(output, synthetic.TRUTH_FILENAME)}")


if __name__ == "__main__":
    from ravdess_tfrecords import _cli

    _cli.run(main)
