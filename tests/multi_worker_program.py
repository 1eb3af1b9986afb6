"""Test helper run as a script by ``tests/test_multi_worker.py``, once per worker (TF_CONFIG set by the test).

    python tests/multi_worker_program.py fit WEIGHTS.npy -- <trainers.fit flags>
        trainers.fit, with each worker's weights saved to WEIGHTS.npy when the run saves its model.
    python tests/multi_worker_program.py block
        trainers.strategy's multi-worker strategy under trainers.cluster.stop_on_signals; worker 0
        prints "reducing" and blocks in an all-reduce that worker 1 (printing "idle", then sleeping) never joins.
    python tests/multi_worker_program.py canary FIXES
        a tiny tuple-input model fitted for two steps under MultiWorkerMirroredStrategy with only
        the Keras fixes named in FIXES (comma-separated, may be empty) applied; prints "fit ok".
"""

from __future__ import annotations

import sys


def fit(weights_path: str, flags: list[str]) -> None:
    from ravdess_tfrecords import _cli

    _cli.quiet_tensorflow([sys.argv[0], *flags])  # as python -m trainers.fit does, before TensorFlow loads
    import numpy as np
    from absl import app

    from trainers import fit as fit_main
    from trainers import loop

    save_model = loop.save_model

    def save_and_record(model, *args, **kwargs):
        np.save(weights_path, np.concatenate([np.ravel(w) for w in model.get_weights()]))
        return save_model(model, *args, **kwargs)

    loop.save_model = save_and_record
    sys.argv = [fit_main.__file__, *flags]
    app.run(fit_main.main)


def block() -> None:
    import json
    import os
    import time

    from trainers import cluster, strategy

    cluster.stop_on_signals(": bye")
    mwms = strategy.distribution_strategy("multi_worker", worker_timeout=120)
    if json.loads(os.environ["TF_CONFIG"])["task"]["index"]:
        print("idle", flush=True)
        time.sleep(120)
        return
    import tensorflow as tf

    print("reducing", flush=True)
    mwms.reduce("SUM", tf.constant(1.0), axis=None)


def canary(fixes: str) -> None:
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other op
    from tensorflow import keras

    from trainers import keras_multi_worker

    keras_multi_worker.patch(only=tuple(f for f in fixes.split(",") if f))
    with strategy.scope():
        a, b = keras.Input((3,)), keras.Input((2,))
        out = keras.layers.Dense(2, activation="softmax")(keras.layers.Concatenate()([a, b]))
        model = keras.Model([a, b], out)
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = (tf.ones((16, 3)), tf.ones((16, 2)))
    ds = tf.data.Dataset.from_tensor_slices((x, tf.zeros(16, tf.int64))).batch(8).repeat()
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)
    print("fit ok", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "fit":
        fit(sys.argv[2], sys.argv[sys.argv.index("--") + 1:])
    elif sys.argv[1] == "block":
        block()
    else:
        canary(sys.argv[2] if len(sys.argv) > 2 else "")
