"""Models and ``AugmentLayer`` on other Keras backends, and per-replica augmentation under ``tf.distribute``.

Keras fixes its backend at import, so each backend runs in its own subprocess (``KERAS_BACKEND``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import helpers
import numpy as np
import pytest

FILTERS = (4, 8)


def _run(code: str, backend: str, *args: str) -> subprocess.CompletedProcess:
    env = helpers.repo_env(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=helpers.REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# Trains the fusion model behind an AugmentLayer a few steps from the shards' TF-free data source
# (rt.data_source, Grain), then writes its weights, the whole wrapped model (.keras) and its probabilities
# on one batch. The batches are those of ``load(..., augment_on="device")``: uint8 video, unaugmented.
TRAIN = """
import sys


class NoTensorFlow:  # as in a venv without it: Keras itself probes for it (Bidirectional's config)
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError("no tensorflow in this test")


sys.meta_path.insert(0, NoTensorFlow())
import numpy as np
import grain
import keras
import ravdess_tfrecords as rt
from ravdess_tfrecords import models
from ravdess_tfrecords.reading import augment_layer

out, data_dir = sys.argv[1], sys.argv[2]
assert keras.backend.backend() == "jax"
src = rt.data_source(data_dir, "train")
m = src.info.audio_frames
ds = (grain.MapDataset.source(src).shuffle(seed=0)
      .map(lambda e: ((e["audio"], e["video"]), e["label"])).batch(4, drop_remainder=True))

def batches():
    while True:
        yield from (ds[i] for i in range(len(ds)))

keras.utils.set_random_seed(0)
base = models.build_model("fusion", audio_frames=m, filters=(4, 8))
model = augment_layer.with_augmentation(base, seed=1)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
before = [w.copy() for w in base.get_weights()]
model.fit(batches(), steps_per_epoch=3, epochs=1, verbose=0)
assert any(not np.array_equal(b, a) for b, a in zip(before, base.get_weights()))
(audio, video), _ = ds[1]
assert "tensorflow" not in sys.modules  # the data source, the models and the layer need none
np.savez(out + "/batch.npz", audio=audio, video=video, probs=model.predict([audio, video], verbose=0))
base.save_weights(out + "/fusion.weights.h5")
model.save(out + "/augmented.keras")
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax (the [test] extra brings jax[cpu])")
def test_fusion_trained_under_jax_gives_the_same_probabilities_under_tensorflow(array_record_dir, tmp_path):
    import keras

    import ravdess_tfrecords as rt
    from ravdess_tfrecords import models
    from ravdess_tfrecords.reading import augment

    _run(TRAIN, "jax", str(tmp_path), array_record_dir)
    m = rt.data_source(array_record_dir, "train").info.audio_frames
    assert keras.backend.backend() == "tensorflow"
    saved = np.load(tmp_path / "batch.npz")
    audio, video, want = saved["audio"], saved["video"], saved["probs"]
    assert want.shape == (4, 7) and np.allclose(want.sum(axis=1), 1.0, atol=1e-5)

    # The weights in a fresh TensorFlow-backend build of the same model.
    base = models.build_model("fusion", audio_frames=m, filters=FILTERS)
    base.load_weights(str(tmp_path / "fusion.weights.h5"))
    np.testing.assert_allclose(base.predict([audio, video.astype(np.float32) / 255.0], verbose=0), want,
                               rtol=0, atol=1e-5)
    # The whole wrapped model, AugmentLayer and its registered name included, reloads across backends.
    reloaded = keras.models.load_model(str(tmp_path / "augmented.keras"))
    assert isinstance(reloaded.get_layer("augment"), augment.AugmentLayer)
    np.testing.assert_allclose(reloaded.predict([audio, video], verbose=0), want, rtol=0, atol=1e-5)


MIRRORED = """
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from ravdess_tfrecords.reading.augment import AugmentConfig, AugmentLayer

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    layer = AugmentLayer(AugmentConfig(), seed=3)
rng = np.random.default_rng(0)
batch = {"audio": rng.standard_normal((4, 24, 20, 1)).astype(np.float32),
         "video": rng.integers(0, 256, (4, 6, 64, 64, 3), dtype=np.uint8)}

@tf.function
def step():  # every replica gets the same batch: only the draws can tell them apart
    return strategy.run(lambda: layer(batch, training=True))

for name, tensors in zip(("first", "second"), (step(), step())):
    for key in ("video", "audio"):
        a, b = (t.numpy() for t in strategy.experimental_local_results(tensors[key]))
        print(name, key, "same" if np.array_equal(a, b) else "different")
"""


def test_replicas_of_a_mirrored_strategy_draw_their_own_augmentation():
    """2 logical CPUs: the same batch on both replicas comes out augmented differently, step after step."""
    lines = _run(MIRRORED, "tensorflow").stdout.splitlines()
    assert [line for line in lines if line.startswith(("first", "second"))] == [
        "first video different", "first audio different", "second video different", "second audio different"]
