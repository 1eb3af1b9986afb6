"""On-graph augmentation: per-clip parameters shared by all 6 frames, masks that only zero values."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ravdess_tfrecords.reading import augment
from ravdess_tfrecords.reading.augment import AugmentConfig

B, F, S, M = 16, 6, 64, 40
SEED = tf.constant([7, 11], tf.int64)


@pytest.fixture(scope="module")
def video():
    """uint8 (B, 6, 64, 64, 3), a different random image in every frame."""
    return np.random.default_rng(0).integers(0, 256, (B, F, S, S, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def still_video(video):
    """uint8 (B, 6, 64, 64, 3): each clip's 6 frames identical (one still image per clip)."""
    return np.repeat(video[:, :1], F, axis=1)


@pytest.fixture(scope="module")
def audio():
    """float32 (B, 24, M, 1), non-zero everywhere."""
    a = np.random.default_rng(1).standard_normal((B, 24, M, 1)).astype(np.float32)
    a[a == 0] = 1.0
    return a


def test_flip_flips_all_six_frames_of_a_clip_or_none(video):
    out = augment.augment_video(tf.constant(video), SEED, AugmentConfig.only("flip")).numpy()
    assert out.dtype == np.float32 and out.shape == video.shape
    plain = video.astype(np.float32) / 255.0
    mirrored = plain[:, :, :, ::-1]
    flipped = []
    for i in range(B):
        # XLA scales by 1/255 as a multiplication: equal to the last bit, give or take one.
        per_frame = [np.allclose(out[i, f], mirrored[i, f], rtol=0, atol=1e-7) for f in range(F)]
        same = [np.allclose(out[i, f], plain[i, f], rtol=0, atol=1e-7) for f in range(F)]
        assert all(per_frame) or all(same), f"clip {i}: frames disagree {per_frame}"
        flipped.append(all(per_frame))
    assert 0 < sum(flipped) < B  # both outcomes occur in 16 clips with this seed


def test_crop_and_colour_are_the_same_for_every_frame_of_a_clip(still_video):
    out = augment.augment_video(tf.constant(still_video), SEED, AugmentConfig()).numpy()
    assert out.dtype == np.float32 and out.shape == still_video.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    # Identical input frames stay identical: one set of parameters per clip.
    np.testing.assert_array_equal(out, np.repeat(out[:, :1], F, axis=1))
    # ...but clips differ from their input, and not all by the same transform.
    plain = still_video.astype(np.float32) / 255.0
    changes = np.abs(out - plain).mean(axis=(1, 2, 3, 4))
    assert (changes > 0.01).all()
    assert np.ptp(changes) > 0.005


def test_crop_zooms_in(still_video):
    """A crop resized back keeps fewer distinct source pixels: its image is smoother."""
    out = augment.flip_and_crop(
        tf.constant(still_video), SEED, flip=False, crop=True, min_crop_scale=0.5
    ).numpy()
    assert out.shape == still_video.shape
    rough_in = np.abs(np.diff(still_video.astype(np.float32), axis=3)).mean()
    rough_out = np.abs(np.diff(out, axis=3)).mean()
    assert rough_out < 0.95 * rough_in


def test_colour_jitter_stays_in_range_and_changes_brightness(video):
    x = tf.constant(video.astype(np.float32) / 255.0)
    out = augment.color_jitter(x, SEED, brightness=0.3, contrast=0.0, saturation=0.0).numpy()
    assert 0.0 <= out.min() and out.max() <= 1.0
    shift = (out - x.numpy()).mean(axis=(1, 2, 3, 4))
    assert np.abs(shift).max() > 0.05
    # Grey stays grey under saturation changes.
    grey = tf.constant(np.full((2, F, 8, 8, 3), 0.5, np.float32))
    out = augment.color_jitter(grey, SEED, brightness=0.0, contrast=0.5, saturation=0.9).numpy()
    np.testing.assert_allclose(out, 0.5, atol=1e-6)


def test_same_seed_same_output_other_seed_other_output(video, audio):
    config = AugmentConfig()
    feats = {"video": tf.constant(video), "audio": tf.constant(audio)}
    a = augment.augment_batch(feats, SEED, config)
    b = augment.augment_batch(feats, SEED, config)
    c = augment.augment_batch(feats, tf.constant([7, 12], tf.int64), config)
    for key in ("video", "audio"):
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
        assert not np.array_equal(a[key].numpy(), c[key].numpy())


def test_masks_only_zero_values_in_whole_columns_and_rows(audio):
    x = tf.constant(audio)
    t = augment.time_mask(x, SEED, max_width=8, count=2).numpy()
    changed = t != audio
    assert changed.any()
    assert (t[changed] == 0).all()  # masking only writes zeros
    # A time mask zeroes every coefficient of a frame: changed frames are full columns.
    cols = changed.any(axis=1)  # (B, M, 1)
    np.testing.assert_array_equal(changed, np.broadcast_to(cols[:, None], changed.shape))
    assert cols.sum(axis=(1, 2)).max() <= 16
    f = augment.freq_mask(x, SEED, max_width=4, count=1).numpy()
    changed = f != audio
    assert changed.any() and (f[changed] == 0).all()
    rows = changed.any(axis=2)  # (B, 24, 1)
    np.testing.assert_array_equal(changed, np.broadcast_to(rows[:, :, None], changed.shape))
    assert rows.sum(axis=(1, 2)).max() <= 4


def test_time_masks_stay_inside_the_real_frames(audio):
    lengths = np.full([B], 12, np.int64)
    padded = audio.copy()
    padded[:, :, : M - 12] = 0.0  # pre-padding, as stored
    out = augment.time_mask(tf.constant(padded), SEED, max_width=8, count=3, lengths=lengths).numpy()
    masked_frames = (out != padded).any(axis=(1, 3))  # (B, M)
    assert masked_frames.any()
    assert not masked_frames[:, : M - 12].any()


def test_disabled_augmentations_are_identity(video, audio):
    none = AugmentConfig.none()
    assert not none.enabled
    out = augment.augment_batch({"video": tf.constant(video), "audio": tf.constant(audio)}, SEED, none)
    np.testing.assert_allclose(out["video"].numpy(), video.astype(np.float32) / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(out["audio"].numpy(), audio)


def test_config_validation():
    with pytest.raises(ValueError, match="min_crop_scale"):
        AugmentConfig(min_crop_scale=0.0)
    with pytest.raises(ValueError, match="unknown augmentations"):
        AugmentConfig.only("rotate")


@pytest.mark.parametrize("jit", [False, True])
def test_fused_colour_math_equals_the_step_by_step_definition(video, jit):
    """brightness -> contrast about each frame's channel means -> saturation about BT.601 grey."""
    rng = np.random.default_rng(2)
    delta, c, s = (rng.uniform(lo, hi, (B, 1, 1, 1, 1)).astype(np.float32)
                   for lo, hi in ((-0.1, 0.1), (0.8, 1.2), (0.8, 1.2)))
    x = video.astype(np.float32) / 255.0
    x1 = x + delta
    mean = x1.mean(axis=(2, 3), keepdims=True)
    x2 = (x1 - mean) * c + mean
    grey = (x2 * np.array([0.299, 0.587, 0.114], np.float32)).sum(-1, keepdims=True)
    want = np.clip(grey + (x2 - grey) * s, 0.0, 1.0)
    means = augment._frame_means_xla if jit else augment._frame_means
    fn = augment._color_math_xla if jit else augment._color_math
    x255 = tf.constant(video.astype(np.float32))
    got = fn(x255, means(x255, 255.0), delta, c, s, 255.0).numpy()
    np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_separable_crop_samples_where_crop_and_resize_does(video, jit, dtype):
    """The two-pass bilinear crop equals tf.image.crop_and_resize on the same boxes, flipped ones included.

    uint8 frames are rounded between the passes: at most half a grey level off.
    """
    rng = np.random.default_rng(3)
    scale = rng.uniform(0.5, 1.0, B).astype(np.float32)
    y0, x0 = (rng.uniform(0.0, 1.0, B).astype(np.float32) * (1.0 - scale) for _ in range(2))
    flipped = np.arange(B) % 2 == 1
    x1, x2 = np.where(flipped, x0 + scale, x0), np.where(flipped, x0, x0 + scale)
    boxes = np.repeat(np.stack([y0, x1, y0 + scale, x2], axis=1), F, axis=0)
    frames = video.reshape(B * F, S, S, 3).astype(dtype)
    want = tf.image.crop_and_resize(frames, boxes, np.arange(B * F), (S, S)).numpy().reshape(video.shape)

    rows = augment.crop_samples(tf.constant(y0), tf.constant(scale), S)
    cols = augment.crop_samples(tf.constant(x0), tf.constant(scale), S, tf.constant(flipped))
    columns = augment._resample_columns_xla if jit else augment._resample_columns
    rows_pass = augment._resample_rows_xla if jit else augment._resample_rows
    got = rows_pass(columns(tf.constant(video.astype(dtype)), *cols), *rows, 1.0).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=0.51 if dtype == np.uint8 else 0.01)


@pytest.mark.parametrize("jit", [False, True])
def test_to_unit_is_numpys_division_bit_for_bit(jit):
    every = np.arange(256, dtype=np.uint8).reshape(2, 2, 4, 4, 4)
    out = augment.to_unit(tf.constant(every), jit_compile=jit).numpy()
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, every.astype(np.float32) / 255.0)


def test_colour_alone_changes_values_but_moves_no_pixel(video):
    out = augment.augment_video(tf.constant(video), SEED, AugmentConfig.only("color")).numpy()
    plain = video.astype(np.float32) / 255.0
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - plain).mean(axis=(1, 2, 3, 4)).min() > 0.005
    # Random-noise frames: any flip or crop would leave almost no correlation.
    for i in range(B):
        assert np.corrcoef(out[i].ravel(), plain[i].ravel())[0, 1] > 0.95


def test_mixup_blends_inputs_and_labels_with_the_same_weights():
    import tensorflow as tf

    from ravdess_tfrecords.reading import augment

    rng = np.random.default_rng(0)
    audio = tf.constant(rng.normal(0, 1, (8, 24, 5, 1)), tf.float32)
    video = tf.constant(rng.integers(0, 256, (8, 6, 4, 4, 3)), tf.uint8)
    labels = tf.one_hot(tf.range(8), 8)  # a class of its own per example: the labels tell the partner
    seed = tf.constant([3, 4], tf.int64)
    (a, v), y = augment.mixup((audio, video), labels, seed, 0.4)
    assert a.shape == audio.shape and v.dtype == tf.uint8 and y.shape == labels.shape
    np.testing.assert_allclose(tf.reduce_sum(y, 1), 1, atol=1e-6)
    y = y.numpy()
    # Each row is lam * own + (1 - lam) * partner's: the labels give lam and the partner; the inputs must agree.
    for i in range(8):
        lam = y[i, i]
        others = [j for j in range(8) if j != i and y[i, j] > 0]
        j = others[0] if others else i
        assert 0 <= lam <= 1 and len(others) <= 1
        np.testing.assert_allclose(a[i], lam * audio[i] + (1 - lam) * audio[j], atol=1e-5)
        expected = np.round(lam * video[i].numpy() + (1 - lam) * video[j].numpy().astype(np.float32))
        assert np.abs(v[i].numpy().astype(np.float32) - expected).max() <= 1
    (a2, _), y2 = augment.mixup((audio, video), labels, seed, 0.4)
    np.testing.assert_array_equal(a2, a)  # stateless: the same seed, the same batch
    assert not np.allclose(y, labels)  # something was mixed
