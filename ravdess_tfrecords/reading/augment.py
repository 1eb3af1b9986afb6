"""On-graph training augmentation of whole batches: TensorFlow ops only.

Every function takes a batch and a ``seed``: an int ``(2,)`` tensor for
TensorFlow's stateless random ops, so the same seed gives the same result
(the pipeline draws one seed per batch from ``tf.data.Dataset.random``).
Random parameters are drawn once per clip and shared by its 6 frames.

Video ``(B, F, H, W, 3)``, in this order:
  - brightness / contrast / saturation jitter of the whole frame, clipped;
  - horizontal flip (probability 0.5) and a random square crop of side
    ``[min_crop_scale, 1] x H`` resized back to ``H x W``, bilinear, sampled
    where ``tf.image.crop_and_resize`` samples, as two separable passes
    (columns, then rows) of gathers and lerps.
  Each step is one XLA kernel (``AugmentConfig.jit_compile``); on uint8 input
  the first two round back to uint8 (at most 0.5 / 255 off each), so the next
  one reads 4x fewer bytes. On a 2-core CPU that is ~2x faster than
  ``tf.image.crop_and_resize`` plus op-by-op colour maths
  (``tools/bench_pipeline.py``).
Audio ``(B, 24, M, 1)`` standardized MFCCs, SpecAugment style (Park et al. 2019):
  - time masks: up to ``num_time_masks`` runs of ``0..time_mask_width`` frames,
    placed inside the clip's real (unpadded) frames when lengths are given;
  - frequency masks: ``num_freq_masks`` runs of ``0..freq_mask_width`` coefficients.
  Masked values become 0, the mean after per-sample standardization.

Where it runs (``augment_on``): on the host, in the input pipeline's ``map``
(``augment_batch``, here), or on the accelerator, as the first layer of the model
(``AugmentLayer``, re-exported from ``augment_layer``; ``with_augmentation`` prepends
it to a built model and ``without_augmentation`` takes it off for saving). The layer
runs ``augment_ops``, the same maths in ``keras.ops`` for any Keras backend: same
``AugmentConfig``, parameter ranges and order, its own random stream.
"""

from __future__ import annotations

import tensorflow as tf

# One AugmentConfig and one set of luma weights for both implementations; the layer is
# re-exported here, where the pipeline's users have always found it.
from ravdess_tfrecords.reading import augment_ops
from ravdess_tfrecords.reading.augment_layer import AugmentLayer, with_augmentation, without_augmentation
from ravdess_tfrecords.reading.augment_ops import LUMA as _LUMA
from ravdess_tfrecords.reading.augment_ops import AugmentConfig

__all__ = [
    "AugmentConfig", "AugmentLayer", "augment_audio", "augment_batch", "augment_video", "color_jitter",
    "crop_samples", "default_augment_on", "flip_and_crop", "freq_mask", "mixup", "real_frames",
    "time_mask", "to_unit", "with_augmentation", "without_augmentation",
]


def _uniform(seed: tf.Tensor, n: tf.Tensor, low: float, high: float) -> tf.Tensor:
    return tf.random.stateless_uniform([n], seed, minval=low, maxval=high, dtype=tf.float32)


def _xla(fn):
    """``fn`` compiled as one XLA kernel (retraced per dtype, shape and Python argument)."""
    return tf.function(fn, jit_compile=True, reduce_retracing=True)


def crop_samples(start: tf.Tensor, scale: tf.Tensor, size: int, flipped: tf.Tensor | None = None):
    """Where each output pixel of a crop samples the source, along one axis.

    The crop covers ``[start, start + scale]`` of the axis (normalized to [0, 1]),
    resized back to ``size`` pixels; pixel ``i`` samples source coordinate
    ``start * (size - 1) + i * scale``, as ``tf.image.crop_and_resize`` places them.

    Args:
      start, scale: float32 ``(B,)``.
      size: pixels along the axis (input and output).
      flipped: bool ``(B,)``: sample those rows' crops right to left (a mirror image).

    Returns:
      ``(lo, hi, frac)``, each ``(B, size)``: int32 neighbouring source pixels and
      the float32 weight of ``hi``; integer coordinates give ``frac == 0``.
    """
    coord = start[:, tf.newaxis] * (size - 1) + tf.range(size, dtype=tf.float32)[tf.newaxis] * scale[:, tf.newaxis]
    if flipped is not None:
        coord = tf.where(flipped[:, tf.newaxis], tf.reverse(coord, [1]), coord)
    coord = tf.clip_by_value(coord, 0.0, size - 1.0)  # float rounding at the far edge
    lo = tf.floor(coord)
    lo_int = tf.cast(lo, tf.int32)
    return lo_int, tf.minimum(lo_int + 1, size - 1), coord - lo


def _lerp_gather(video: tf.Tensor, lo: tf.Tensor, hi: tf.Tensor, frac: tf.Tensor, axis: int) -> tf.Tensor:
    """float32: per clip, ``video`` resampled along ``axis`` (2 rows, 3 columns) at ``lo + frac``."""
    a = tf.cast(tf.gather(video, lo, axis=axis, batch_dims=1), tf.float32)
    b = tf.cast(tf.gather(video, hi, axis=axis, batch_dims=1), tf.float32)
    shape = [-1, 1, 1, 1, 1]
    shape[axis] = frac.shape[1] if frac.shape[1] is not None else -1
    return a + (b - a) * tf.reshape(frac, shape)


def _resample_columns(video: tf.Tensor, lo: tf.Tensor, hi: tf.Tensor, frac: tf.Tensor) -> tf.Tensor:
    """The horizontal pass of the bilinear crop, ``(B, F, H, W, C)`` -> same dtype.

    uint8 stays uint8 (rounded): the vertical pass then reads 4x fewer bytes, and
    the rounding (at most 0.5 / 255) is far below any augmentation's effect.
    """
    out = _lerp_gather(video, lo, hi, frac, axis=3)
    return tf.cast(tf.round(out), tf.uint8) if video.dtype == tf.uint8 else out


def _resample_rows(video: tf.Tensor, lo: tf.Tensor, hi: tf.Tensor, frac: tf.Tensor, value_scale: float) -> tf.Tensor:
    """The vertical pass of the bilinear crop, ``(B, F, H, W, C)`` -> float32 divided by ``value_scale``."""
    out = _lerp_gather(video, lo, hi, frac, axis=2)
    return out / value_scale if value_scale != 1.0 else out


def _frame_means(video: tf.Tensor, value_scale: float) -> tf.Tensor:
    """float32 ``(B, F, 1, 1, C)``: each frame's channel means of ``(B, F, H, W, C)``, divided by ``value_scale``.

    Its own kernel, as a 3-D reduce ``(B * F, H * W, C)`` over the middle axis
    (exact int32 sums of uint8): XLA:CPU does that in ~0.7 ms per batch of 32 on a
    2-vCPU host, against ~3-5 ms for the 5-D or 4-D reduce, or fused into the
    colour kernel, where it had made colour the slowest video step.
    """
    b, f, h, w, c = (video.shape[i] if video.shape[i] is not None else tf.shape(video)[i] for i in range(5))
    flat = tf.reshape(video, [-1, h * w, c])
    if video.dtype == tf.uint8:
        total = tf.cast(tf.reduce_sum(tf.cast(flat, tf.int32), axis=1), tf.float32)
    else:
        total = tf.reduce_sum(flat, axis=1)
    return tf.reshape(total / (float(h * w) * value_scale), [b, f, 1, 1, c])


def _color_math(
    video: tf.Tensor, mean: tf.Tensor, delta: tf.Tensor, c: tf.Tensor, s: tf.Tensor, value_scale: float
) -> tf.Tensor:
    """The colour jitter of ``color_jitter`` given its per-clip factors ``(B, 1, 1, 1, 1)``.

    Brightness then contrast, ``x' = c (x - m) + m + delta`` with ``m`` each frame's
    channel means (``_frame_means``), then saturation, ``x'' = s x' + (1 - s) luma(x')``;
    all linear, so ``x'' = s c x + (1 - s) c luma(x) + offset`` with a per-frame offset.
    ``video`` uint8 or float32 in ``[0, value_scale]``; float32 in [0, 1] out.
    """
    luma_w = tf.constant(_LUMA, tf.float32)
    x = tf.cast(video, tf.float32)
    x = x / value_scale if value_scale != 1.0 else x
    p = (1.0 - c) * mean + delta  # (B, F, 1, 1, 3)
    offset = s * p + (1.0 - s) * tf.reduce_sum(p * luma_w, axis=-1, keepdims=True)
    # Three slices, not a reduce over the channel axis: XLA fuses slices into the
    # element-wise loop, while a reduce would make it write and re-read ``x``.
    luma = x[..., 0:1] * _LUMA[0] + x[..., 1:2] * _LUMA[1] + x[..., 2:3] * _LUMA[2]
    return tf.clip_by_value(x * (s * c) + (luma * ((1.0 - s) * c) + offset), 0.0, 1.0)


def _color_uint8(video: tf.Tensor, mean: tf.Tensor, delta: tf.Tensor, c: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
    """``_color_math`` on uint8 frames, rounded back to uint8 (at most 0.5 / 255 off)."""
    return tf.cast(tf.round(_color_math(video, mean, delta, c, s, 255.0) * 255.0), tf.uint8)


def _to_unit(video: tf.Tensor) -> tf.Tensor:
    # A 256-entry table, not a division: XLA would multiply by 1/255 instead, one
    # bit off numpy's ``x / 255`` for some values; the table is exact, ~10-20% slower.
    table = tf.range(256, dtype=tf.float32) / 255.0
    return tf.gather(table, tf.cast(video, tf.int32))


# On CPU, TensorFlow runs these op by op, one pass over memory each; XLA fuses
# each into one loop. Per batch of 32 clips on a 2-core machine: colour + flip +
# crop ~7 ms against ~14 ms with tf.image.crop_and_resize and op-by-op colour;
# the plain uint8 -> [0, 1] scaling ~1 ms against ~5 ms. Kept as separate
# kernels on purpose: XLA fusing the passes into one loop recomputes every
# gather per channel and is ~5x slower.
_resample_columns_xla = _xla(_resample_columns)
_resample_rows_xla = _xla(_resample_rows)
_frame_means_xla = _xla(_frame_means)
_color_math_xla = _xla(_color_math)
_color_uint8_xla = _xla(_color_uint8)
_to_unit_xla = _xla(_to_unit)


def _color(video: tf.Tensor, factors, value_scale: float, jit_compile: bool, uint8_out: bool) -> tf.Tensor:
    """Colour jitter with ``factors`` ``(delta, c, s)`` of ``video`` in ``[0, value_scale]``, as
    two kernels (means, then the per-pixel maths): uint8 0..255 out if ``uint8_out``, else float32 [0, 1]."""
    value_scale = float(value_scale)
    mean = (_frame_means_xla if jit_compile else _frame_means)(video, value_scale)
    if uint8_out:
        return (_color_uint8_xla if jit_compile else _color_uint8)(video, mean, *factors)
    return (_color_math_xla if jit_compile else _color_math)(video, mean, *factors, value_scale)


def to_unit(video: tf.Tensor, *, jit_compile: bool = True) -> tf.Tensor:
    """uint8 ``(..., 3)`` -> float32 ``x / 255`` in [0, 1] (bit-exact, as numpy computes it), as one XLA kernel."""
    return _to_unit_xla(video) if jit_compile else _to_unit(video)


def _geometry(seed: tf.Tensor, b: tf.Tensor, size: int, *, flip: bool, crop: bool, min_crop_scale: float):
    """Per clip: the row and column samples (``crop_samples``) of one random flip and square crop."""
    s_flip, s_scale, s_y, s_x = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    if crop:
        scale = _uniform(s_scale, b, min_crop_scale, 1.0)
        y0 = _uniform(s_y, b, 0.0, 1.0) * (1.0 - scale)
        x0 = _uniform(s_x, b, 0.0, 1.0) * (1.0 - scale)
    else:
        scale, y0, x0 = tf.ones([b]), tf.zeros([b]), tf.zeros([b])
    flipped = _uniform(s_flip, b, 0.0, 1.0) < 0.5 if flip else None
    return crop_samples(y0, scale, size), crop_samples(x0, scale, size, flipped)


def _color_factors(seed: tf.Tensor, b: tf.Tensor, brightness: float, contrast: float, saturation: float):
    """Per clip ``(delta, c, s)``, each float32 ``(B, 1, 1, 1, 1)``."""
    s_b, s_c, s_s = tf.unstack(tf.random.experimental.stateless_split(seed, 3))

    def per_clip(s, low, high):
        return tf.reshape(_uniform(s, b, low, high), [-1, 1, 1, 1, 1])

    return (
        per_clip(s_b, -brightness, brightness),
        per_clip(s_c, 1.0 - contrast, 1.0 + contrast),
        per_clip(s_s, 1.0 - saturation, 1.0 + saturation),
    )


def _flip_crop_color(video, seed, *, flip, crop, min_crop_scale, factors, value_scale, jit_compile):
    """Colour jitter (``factors``, or None) of whole frames, then a bilinear flip + crop in two
    separable passes (columns, then rows); float32 divided by ``value_scale`` out.

    The colour comes first, so each pass stays one cheap loop: after the crop, the
    colour's per-pixel channel mixing would make XLA redo each pixel's gathers once
    per channel. The colour's contrast is thus about the whole frame's mean.
    """
    if video.shape[2] != video.shape[3]:
        raise ValueError(f"square frames expected, got {video.shape[2]}x{video.shape[3]}")
    if factors is not None:
        uint8 = video.dtype == tf.uint8
        video = _color(video, factors, value_scale, jit_compile, uint8_out=uint8)
        value_scale = value_scale if uint8 else 1.0  # float32 comes back in [0, 1]
    rows, cols = _geometry(
        seed, tf.shape(video)[0], video.shape[2], flip=flip, crop=crop, min_crop_scale=min_crop_scale
    )
    columns = _resample_columns_xla if jit_compile else _resample_columns
    rows_pass = _resample_rows_xla if jit_compile else _resample_rows
    out = rows_pass(columns(video, *cols), *rows, float(value_scale))
    out.set_shape(video.shape)
    return out


def flip_and_crop(
    video: tf.Tensor,
    seed: tf.Tensor,
    *,
    flip: bool = True,
    crop: bool = True,
    min_crop_scale: float = 0.8,
    jit_compile: bool = True,
) -> tf.Tensor:
    """Per clip: random horizontal flip and random square crop resized back, same for all frames.

    Bilinear, sampled where ``tf.image.crop_and_resize`` samples (a box of side
    ``scale ~ U[min_crop_scale, 1]`` at a uniform position), as two separable
    passes; uint8 input is rounded to uint8 between them (at most 0.5 / 255 off).

    Args:
      video: uint8 or float32 ``(B, F, S, S, C)``.
      seed: int ``(2,)``.

    Returns:
      float32 ``(B, F, S, S, C)`` on the input's value scale (exact copies of the
      input pixels when ``crop`` is off).
    """
    return _flip_crop_color(
        video, seed, flip=flip, crop=crop, min_crop_scale=min_crop_scale, factors=None, value_scale=1.0,
        jit_compile=jit_compile,
    )


def color_jitter(
    video: tf.Tensor,
    seed: tf.Tensor,
    *,
    brightness: float = 0.1,
    contrast: float = 0.2,
    saturation: float = 0.2,
    value_scale: float = 1.0,
    jit_compile: bool = True,
) -> tf.Tensor:
    """Per clip: one brightness delta, contrast factor and saturation factor for all frames.

    In order: add the brightness delta; scale each frame's channels about their
    mean by the contrast factor (as ``tf.image.adjust_contrast``); blend with the
    BT.601 grey by the saturation factor (as ``tf.image.adjust_saturation`` does
    in effect); clip to [0, 1].

    Args:
      video: uint8 or float32 ``(B, F, H, W, 3)`` in ``[0, value_scale]``.
      seed: int ``(2,)``.
      value_scale: 255 when ``video`` holds 0..255 values (divided out here).
      jit_compile: run the arithmetic as one XLA kernel (same result to float rounding).

    Returns:
      float32 ``(B, F, H, W, 3)`` in [0, 1].
    """
    factors = _color_factors(seed, tf.shape(video)[0], brightness, contrast, saturation)
    out = _color(video, factors, value_scale, jit_compile, uint8_out=False)
    out.set_shape(video.shape)
    return out


def _runs(seed: tf.Tensor, b: tf.Tensor, size: int, max_width: int, count: int, start, stop) -> tf.Tensor:
    """bool ``(B, size)``: True inside ``count`` random runs per row, each within ``[start, stop)``."""
    positions = tf.range(size)[tf.newaxis, :]
    span = stop - start  # (B,) room for a run
    masked = tf.zeros([b, size], tf.bool)
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, count)) if count else []
    for s in seeds:
        s_w, s_t = tf.unstack(tf.random.experimental.stateless_split(s, 2))
        width = tf.random.stateless_uniform([b], s_w, minval=0, maxval=max_width + 1, dtype=tf.int32)
        width = tf.minimum(width, span)
        room = tf.cast(span - width + 1, tf.float32)
        first = start + tf.cast(tf.floor(_uniform(s_t, b, 0.0, 1.0) * room), tf.int32)
        first = tf.minimum(first, stop - width)  # guards the u -> 1.0 rounding edge
        inside = (positions >= first[:, tf.newaxis]) & (positions < (first + width)[:, tf.newaxis])
        masked = masked | inside
    return masked


def time_mask(
    audio: tf.Tensor, seed: tf.Tensor, *, max_width: int = 10, count: int = 2, lengths: tf.Tensor | None = None
) -> tf.Tensor:
    """Zero ``count`` random runs of up to ``max_width`` MFCC frames (all coefficients) per clip.

    Args:
      audio: float32 ``(B, N, M, 1)``.
      seed: int ``(2,)``.
      lengths: int ``(B,)`` unpadded frame counts; clips are pre-padded, so the real
        frames are the last ``min(length, M)`` and masks stay inside them. None: anywhere.

    Returns:
      float32 ``(B, N, M, 1)``: the input with masked values set to 0.
    """
    b, frames = tf.shape(audio)[0], tf.shape(audio)[2]
    size = audio.shape[2] if audio.shape[2] is not None else frames
    stop = tf.fill([b], frames)
    start = tf.zeros([b], tf.int32) if lengths is None else frames - tf.minimum(tf.cast(lengths, tf.int32), frames)
    masked = _runs(seed, b, size, max_width, count, start, stop)  # (B, M)
    return tf.where(masked[:, tf.newaxis, :, tf.newaxis], tf.zeros_like(audio), audio)


def freq_mask(audio: tf.Tensor, seed: tf.Tensor, *, max_width: int = 4, count: int = 1) -> tf.Tensor:
    """Zero ``count`` random runs of up to ``max_width`` coefficients (all frames) per clip.

    Args:
      audio: float32 ``(B, N, M, 1)``.
      seed: int ``(2,)``.

    Returns:
      float32 ``(B, N, M, 1)``: the input with masked values set to 0.
    """
    b, n = tf.shape(audio)[0], tf.shape(audio)[1]
    size = audio.shape[1] if audio.shape[1] is not None else n
    masked = _runs(seed, b, size, max_width, count, tf.zeros([b], tf.int32), tf.fill([b], n))  # (B, N)
    return tf.where(masked[:, :, tf.newaxis, tf.newaxis], tf.zeros_like(audio), audio)


def augment_video(video: tf.Tensor, seed: tf.Tensor, config: AugmentConfig = AugmentConfig()) -> tf.Tensor:
    """Flip, crop and colour-jitter a batch of clips, and scale it to [0, 1].

    Args:
      video: uint8 ``(B, F, H, W, 3)`` (as stored) or float32 already in [0, 1].
      seed: int ``(2,)``.

    Returns:
      float32 ``(B, F, H, W, 3)`` in [0, 1].
    """
    s_geo, s_col = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    value_scale = 255.0 if video.dtype == tf.uint8 else 1.0
    colour = {"brightness": config.brightness, "contrast": config.contrast, "saturation": config.saturation}
    if config.flip or config.crop:
        factors = _color_factors(s_col, tf.shape(video)[0], **colour) if config.color else None
        return _flip_crop_color(
            video, s_geo, flip=config.flip, crop=config.crop, min_crop_scale=config.min_crop_scale,
            factors=factors, value_scale=value_scale, jit_compile=config.jit_compile,
        )
    if config.color:
        return color_jitter(video, s_col, **colour, value_scale=value_scale, jit_compile=config.jit_compile)
    return to_unit(video, jit_compile=config.jit_compile) if video.dtype == tf.uint8 else video


def augment_audio(
    audio: tf.Tensor, seed: tf.Tensor, config: AugmentConfig = AugmentConfig(), lengths: tf.Tensor | None = None
) -> tf.Tensor:
    """SpecAugment time and frequency masks on a batch ``(B, N, M, 1)`` float32; same shape out."""
    s_t, s_f = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if config.time_mask and config.num_time_masks and config.time_mask_width:
        audio = time_mask(
            audio, s_t, max_width=config.time_mask_width, count=config.num_time_masks, lengths=lengths
        )
    if config.freq_mask and config.num_freq_masks and config.freq_mask_width:
        audio = freq_mask(audio, s_f, max_width=config.freq_mask_width, count=config.num_freq_masks)
    return audio


def mixup(inputs, labels: tf.Tensor, seed: tf.Tensor, alpha: float):
    """mixup (Zhang et al. 2018) of a training batch: each example blended with another of the same batch.

    ``lam ~ Beta(alpha, alpha)`` per example (two stateless Gamma draws), the partner a stateless
    permutation of the batch; every input and the labels get the same ``lam * x + (1 - lam) * x[partner]``.

    Args:
      inputs: a tensor ``(B, ...)`` or a tuple / dict of them (audio, video): float32, or uint8 video
        (blended in float32, rounded back).
      labels: float32 one-hot ``(B, C)``.
      seed: int ``(2,)``.
      alpha: > 0; small values keep most ``lam`` near 0 or 1.

    Returns:
      ``(inputs, labels)`` of the same structure, shapes and dtypes.
    """
    s_g1, s_g2, s_p = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    n = tf.shape(labels)[0]
    g1 = tf.random.stateless_gamma([n], s_g1, alpha=alpha)
    g2 = tf.random.stateless_gamma([n], s_g2, alpha=alpha)
    lam = g1 / tf.maximum(g1 + g2, 1e-12)
    partner = tf.argsort(tf.random.stateless_uniform([n], s_p))

    def blend(x):
        w = tf.reshape(lam, tf.concat([[n], tf.ones([tf.rank(x) - 1], tf.int32)], 0))
        if x.dtype.is_integer:  # uint8 video (device-side augmentation): blended, then rounded back
            y = tf.cast(x, tf.float32)
            return tf.cast(tf.round(w * y + (1 - w) * tf.gather(y, partner)), x.dtype)
        w = tf.cast(w, x.dtype)
        return w * x + (1 - w) * tf.gather(x, partner)

    return tf.nest.map_structure(blend, inputs), blend(labels)


def real_frames(audio: tf.Tensor) -> tf.Tensor:
    """int32 ``(B,)``: the frames of each clip after its zero pre-padding, ``min(audio_frames, M)``.

    The stored audio is pre-padded with exact zeros; a real frame of standardized
    MFCCs has no reason to be 0.0 in all 24 coefficients. Read from the tensor,
    so the model's augmentation layer, which sees no metadata, places time masks
    exactly where the host pipeline does.

    Args:
      audio: float32 ``(B, N, M, 1)``.
    """
    frames = tf.shape(audio)[2]
    nonzero = tf.reduce_any(tf.not_equal(audio, 0.0), axis=[1, 3])  # (B, M)
    first = tf.argmax(tf.cast(nonzero, tf.int32), axis=1, output_type=tf.int32)  # 0 when all zero
    return tf.where(tf.reduce_any(nonzero, axis=1), frames - first, 0)


def augment_batch(features: dict, seed: tf.Tensor, config: AugmentConfig = AugmentConfig()) -> dict:
    """Augment a decoded batch (``schema.decode`` output) for training.

    Args:
      features: ``audio`` float32 ``(B, 24, M, 1)`` and/or ``video`` uint8
        ``(B, 6, 64, 64, 3)``; time masks stay on each clip's real frames
        (``audio_frames`` int64 ``(B,)`` when given, else ``real_frames``).
      seed: int ``(2,)``.

    Returns:
      A new dict: ``audio`` masked, ``video`` float32 in [0, 1] augmented; other keys unchanged.
    """
    s_v, s_a = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    return augment_ops.map_batch(features, config, lambda video: augment_video(video, s_v, config),
                                 lambda audio, lengths: augment_audio(audio, s_a, config, lengths=lengths),
                                 real_frames)


def default_augment_on() -> str:
    """``"device"`` when TensorFlow sees a GPU, else ``"host"`` (see docs/reading.md, "On the accelerator").

    On a CPU-only machine the layer would run inside the training step, on the
    cores the step needs, and after it; on the host, tf.data overlaps it with the step.
    """
    return "device" if tf.config.list_physical_devices("GPU") else "host"
