"""Augmentation on the accelerator: ``AugmentLayer`` in the model, ``load(..., augment_on="device")``.

The layer must do the host pipeline's maths (same parameters, same output) with draws of the same
distribution, be identity + scaling at inference, and leave no trace in what is saved.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from fake_shards import write_shards
from tensorflow import keras

import ravdess_tfrecords as rt
from ravdess_tfrecords import models
from ravdess_tfrecords.reading import augment, augment_ops, pipeline
from ravdess_tfrecords.reading.augment import AugmentConfig, AugmentLayer

M = 20
SEED = 17


@pytest.fixture(scope="module")
def builder(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("shards"))
    write_shards(path, audio_frames=M, song=True)
    return rt.Builder(path)


@pytest.fixture(scope="module")
def base_model():
    keras.utils.set_random_seed(0)
    return models.build_model("fusion", audio_frames=M, filters=(4, 8))


def _batch(builder, split="test", batch_size=8):
    (audio, video), label = next(iter(builder.as_dataset(split, batch_size=batch_size, augment_on="device")))
    return audio.numpy(), video.numpy(), label.numpy()


def test_the_layer_does_the_host_modes_maths_for_the_same_parameters():
    """``augment_ops`` (keras.ops, the layer's) and ``augment`` (TensorFlow, the host's) draw from their own
    streams; given the same per-clip parameters their crop, flip and colour agree to float rounding."""
    rng = np.random.default_rng(0)
    b, s = 8, 64
    video = rng.random((b, 6, s, s, 3), dtype=np.float32)
    scale = rng.uniform(0.8, 1.0, b).astype(np.float32)
    y0, x0 = (rng.random(b, dtype=np.float32) * (1 - scale) for _ in range(2))
    flipped = rng.random(b) < 0.5
    factors = [rng.uniform(lo, hi, b).astype(np.float32) for lo, hi in ((-0.1, 0.1), (0.8, 1.2), (0.8, 1.2))]

    rows, cols = augment.crop_samples(y0, scale, s), augment.crop_samples(x0, scale, s, flipped)
    host = augment._resample_rows(augment._resample_columns(video, *cols), *rows, 1.0)
    layer = augment_ops.resample(video, augment_ops.sampling_matrix(y0, scale, s),
                                 augment_ops.sampling_matrix(x0, scale, s, flipped))
    np.testing.assert_allclose(np.asarray(layer), host.numpy(), rtol=0, atol=2e-6)

    per_clip = [f.reshape(-1, 1, 1, 1, 1) for f in factors]
    host = augment._color_math(video, augment._frame_means(video, 1.0), *per_clip, 1.0)
    np.testing.assert_allclose(np.asarray(augment_ops.color_math(video, *factors)), host.numpy(), rtol=0, atol=2e-6)


def test_the_layer_augments_a_device_mode_batch(builder):
    """Training: video moved (one transform per clip, all 6 frames alike), masks zero real frames only;
    the next call draws anew; one seed reproduces it."""
    audio, video, _ = _batch(builder, "train", batch_size=16)
    still = np.repeat(video[:, :1], 6, axis=1)  # each clip's frames identical
    layer = AugmentLayer(AugmentConfig(), seed=SEED)
    out = {k: v.numpy() for k, v in layer({"audio": audio, "video": still}, training=True).items()}
    assert out["video"].dtype == np.float32 and 0.0 <= out["video"].min() and out["video"].max() <= 1.0
    np.testing.assert_array_equal(out["video"], np.repeat(out["video"][:, :1], 6, axis=1))
    assert (np.abs(out["video"] - still / 255.0).mean(axis=(1, 2, 3, 4)) > 0.01).all()
    masked = out["audio"] != audio
    assert masked.any() and (out["audio"][masked] == 0).all()
    real = augment.real_frames(audio).numpy()
    np.testing.assert_array_equal(np.asarray(augment_ops.real_frames(audio)), real)
    for i, n in enumerate(real):  # no time mask reaches into the padding (it is zeros, so it stays)
        np.testing.assert_array_equal(out["audio"][i, :, : M - n], audio[i, :, : M - n])

    again = layer({"audio": audio, "video": still}, training=True)
    assert not np.array_equal(again["video"].numpy(), out["video"])
    replay = AugmentLayer(AugmentConfig(), seed=SEED)({"audio": audio, "video": still}, training=True)
    np.testing.assert_array_equal(replay["video"].numpy(), out["video"])


def test_both_modes_draw_parameters_from_the_same_distribution():
    """Host seeds come from ``Dataset.random`` into ``augment``, the layer's from a ``SeedGenerator`` into
    ``augment_ops``: the flip rate is ~0.5 from either."""
    ramp = (np.arange(64) * 4).astype(np.uint8)  # left to right 0..252: a flipped frame starts bright
    video = tf.constant(np.tile(ramp[None, None, None, :, None], (64, 1, 64, 1, 3)))
    config = AugmentConfig.only("flip")
    host = [augment.augment_video(video, s, config).numpy()[:, 0, 0, 0, 0] > 0.5
            for s in pipeline.augment_seeds(3).take(8)]
    generator = keras.random.SeedGenerator(3)
    device = [augment_ops.augment_video(video, generator, config).numpy()[:, 0, 0, 0, 0] > 0.5 for _ in range(8)]
    assert 0.4 < np.mean(host) < 0.6 and 0.4 < np.mean(device) < 0.6


def test_real_frames_are_the_stored_frame_counts(builder):
    ds = builder.as_dataset("all", batch_size=64, with_metadata=True)
    for (audio, _), _, meta in ds:
        np.testing.assert_array_equal(augment.real_frames(audio).numpy(), np.minimum(meta["audio_frames"], M))


def test_inference_is_scaling_only_and_matches_the_bare_model(builder, base_model):
    audio, video, _ = _batch(builder)
    layer = AugmentLayer(AugmentConfig(), seed=0)
    out = layer({"audio": audio, "video": video}, training=False)
    np.testing.assert_array_equal(out["video"].numpy(), video.astype(np.float32) / 255.0)  # bit-exact
    np.testing.assert_array_equal(out["audio"].numpy(), audio)

    wrapped = augment.with_augmentation(base_model, seed=0)
    assert [t.dtype for t in wrapped.inputs] == ["float32", "uint8"]
    assert models.input_names(wrapped) == models.input_names(base_model)
    np.testing.assert_array_equal(
        wrapped.predict([audio, video], verbose=0),
        base_model.predict([audio, video.astype(np.float32) / 255.0], verbose=0),
    )
    assert augment.without_augmentation(wrapped) is base_model
    assert augment.without_augmentation(base_model) is base_model


def test_unimodal_baselines_can_be_wrapped(builder):
    audio, video, _ = _batch(builder)
    for name, x in (("audio", audio), ("video", video)):
        base = models.build_model(name, audio_frames=M, filters=(4, 8))
        wrapped = augment.with_augmentation(base, seed=0)
        assert models.input_names(wrapped) == (name,)
        want = base.predict(x if name == "audio" else x.astype(np.float32) / 255.0, verbose=0)
        np.testing.assert_array_equal(wrapped.predict(x, verbose=0), want)


def _small_model() -> keras.Model:
    """A fast stand-in for the fusion model with its input names and shapes (XLA compiles it in seconds)."""
    a_in = keras.Input((24, M, 1), name="audio")
    v_in = keras.Input((6, 64, 64, 3), name="video")
    x = keras.layers.Concatenate()([keras.layers.Flatten()(a_in), keras.layers.GlobalAveragePooling3D()(v_in)])
    return keras.Model([a_in, v_in], keras.layers.Dense(7, activation="softmax")(x), name="small")


def test_training_the_wrapped_model_in_device_mode_under_xla(builder):
    """fit() the way a GPU runs it (an XLA-compiled train step): weights move, one seed drawn per step."""
    keras.utils.set_random_seed(1)
    base = _small_model()
    wrapped = augment.with_augmentation(base, seed=5)
    wrapped.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=True)
    before = [w.copy() for w in base.get_weights()]
    train = builder.as_dataset("train", batch_size=16, seed=0, augment_on="device")
    wrapped.fit(train.take(2), epochs=1, verbose=0, shuffle=False)
    assert any(not np.array_equal(b, a) for b, a in zip(before, base.get_weights(), strict=True))
    one = AugmentLayer(seed=5)
    one(dict(zip(("audio", "video"), next(iter(train))[0], strict=True)), training=True)
    draws = one.seed_generator.state.numpy()[1]  # per call: the same number whatever the batch
    assert draws > 0
    np.testing.assert_array_equal(wrapped.get_layer("augment").seed_generator.state.numpy(), [5, 2 * draws])


def test_saved_keras_and_saved_model_carry_no_augmentation(builder, base_model, tmp_path):
    audio, video, _ = _batch(builder)
    wrapped = augment.with_augmentation(base_model, AugmentConfig(crop=False, time_mask_width=6), seed=9)
    want = wrapped.predict([audio, video], verbose=0)

    # The layer is serializable: a wrapped model round-trips through .keras unchanged.
    path = str(tmp_path / "wrapped.keras")
    wrapped.save(path)
    reloaded = keras.models.load_model(path)
    layer = reloaded.get_layer("augment")
    assert isinstance(layer, AugmentLayer) and layer.config == AugmentConfig(crop=False, time_mask_width=6)
    assert layer.seed == 9
    np.testing.assert_array_equal(reloaded.predict([audio, video], verbose=0), want)

    # What a trainer saves and exports: the model without the layer, video float32 in [0, 1].
    bare = augment.without_augmentation(reloaded)
    assert not any(isinstance(x, AugmentLayer) for x in bare.layers)
    bare_path = str(tmp_path / "bare.keras")
    bare.save(bare_path)
    unit = video.astype(np.float32) / 255.0
    np.testing.assert_array_equal(keras.models.load_model(bare_path).predict([audio, unit], verbose=0), want)
    export = str(tmp_path / "saved_model")
    bare.export(export, verbose=False)
    loaded = tf.saved_model.load(export)
    specs = tf.nest.flatten(loaded.signatures["serving_default"].structured_input_signature)
    assert sorted(s.dtype.name for s in specs) == ["float32", "float32"]
    np.testing.assert_allclose(loaded.serve([audio, unit]).numpy(), want, rtol=0, atol=1e-6)


def test_layer_config_round_trips():
    layer = AugmentLayer(AugmentConfig.only("flip", "freq_mask"), seed=4, name="aug")
    clone = AugmentLayer.from_config(layer.get_config())
    assert clone.config == layer.config and clone.seed == 4 and clone.name == "aug"
