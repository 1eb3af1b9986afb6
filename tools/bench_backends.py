"""Training steps per second of a model behind its ``AugmentLayer`` on each Keras backend.

    python -m tools.bench_backends [--model=fusion] [--backends=tensorflow,jax,torch] [--batch_size=8] [--steps=5]

Each backend runs in its own process (Keras fixes it at import): ``build_model(--model)``
(VGG, max over time) behind ``with_augmentation``, compiled with Adam, fed random numpy batches
of the stored shapes (audio float32 ``(B, 24, M, 1)``, video uint8); ``train_on_batch`` two
warm-up steps (tracing, compiling), then the median of ``--steps`` timed steps. A backend that
is not installed is reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, statistics, sys, time
import numpy as np
import keras
from ravdess_tfrecords import models
from ravdess_tfrecords.reading import augment_layer

batch, frames, steps = (int(v) for v in sys.argv[1:4])
name = sys.argv[4]
keras.utils.set_random_seed(0)
model = augment_layer.with_augmentation(models.build_model(name, audio_frames=frames), seed=0)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
rng = np.random.default_rng(0)
x = {"audio": rng.standard_normal((batch, 24, frames, 1)).astype(np.float32),
     "video": rng.integers(0, 256, (batch, 6, 64, 64, 3), dtype=np.uint8)}
x = models.select_inputs(models.input_names(model), x["audio"], x["video"])
y = rng.integers(0, 7, batch)
for _ in range(2):
    model.train_on_batch(x, y)
times = []
for _ in range(steps):
    start = time.perf_counter()
    model.train_on_batch(x, y)
    times.append(time.perf_counter() - start)
print(json.dumps({"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fusion", choices=("fusion", "audio", "video"))
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--audio_frames", type=int, default=100)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    if min(args.batch_size, args.audio_frames, args.steps) < 1:
        parser.error("--batch_size, --audio_frames and --steps must be >= 1")
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run([sys.executable, "-c", CHILD, str(args.batch_size), str(args.audio_frames),
                               str(args.steps), args.model], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{backend}: failed ({(proc.stderr.strip().splitlines() or ['?'])[-1]})")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{args.model}, {backend}: {1 / r['median_s']:.2f} steps/s (median {r['median_s'] * 1000:.0f} ms, "
              f"{r['min_s'] * 1000:.0f}-{r['max_s'] * 1000:.0f} ms over {args.steps} steps, batch {args.batch_size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
