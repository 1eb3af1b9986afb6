"""Training augmentation of whole batches in ``keras.ops`` and ``keras.random``: any Keras 3 backend.

The twin of ``augment.py`` (TensorFlow ops, the ``tf.data`` host path) for the model's
``AugmentLayer`` (``augment_layer.py``), so a model trains the same way under
``KERAS_BACKEND=tensorflow``, ``jax`` or ``torch``. It holds the one ``AugmentConfig``
of both. Same parameters, ranges and order as ``augment.py``; one set of parameters
per clip, shared by its 6 frames:

  - video ``(B, F, S, S, 3)``: brightness / contrast / saturation of the whole frame
    (contrast about each frame's channel means, BT.601 grey for saturation), then a
    horizontal flip (p = 0.5) and a square crop of side ``U[min_crop_scale, 1] x S``
    resized back bilinearly, sampled where ``tf.image.crop_and_resize`` samples;
  - audio ``(B, 24, M, 1)``: SpecAugment time masks (inside the clip's real frames)
    and frequency masks, masked values set to 0.

Randomness: every random draw takes the ``keras.random.SeedGenerator`` it is given and
advances it, so one generator seed reproduces a run on one backend. The backends'
generators differ (Philox on TensorFlow, threefry on JAX, torch's own), and so do
these draws and ``augment.py``'s (``tf.random.experimental.stateless_split``): same
distributions, not the same numbers. Given the same parameters, the maths equals
``augment.py``'s to float rounding (tested); that one rounds uint8 between passes.

The crop is two small matrix products per clip (rows, then columns) with one-hot
bilinear weights: exact copies of the source pixels where no interpolation is needed
(flip only, or crop off), and the same maths on every backend and device.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.reading.augment_choices import AUGMENTATIONS

# ITU-R BT.601 luma weights (sum to 1, so grey pixels stay put).
LUMA = (0.299, 0.587, 0.114)
# uint8 -> [0, 1] as a table: exact ``x / 255`` as numpy computes it (XLA turns a division
# by a constant into a multiplication by its reciprocal, one bit off for some values).
_UNIT_TABLE = np.arange(256, dtype=np.float32) / np.float32(255.0)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run in training, and how strong. Each has an on/off switch."""

    flip: bool = True
    crop: bool = True
    min_crop_scale: float = 0.8  # crop side / frame side; 0.8 = up to 1.25x zoom
    color: bool = True
    brightness: float = 0.1  # delta in [-b, b] on the [0, 1] scale
    contrast: float = 0.2  # factor in [1 - c, 1 + c]
    saturation: float = 0.2  # factor in [1 - s, 1 + s]
    time_mask: bool = True
    num_time_masks: int = 2
    time_mask_width: int = 10  # frames, at most
    freq_mask: bool = True
    num_freq_masks: int = 1
    freq_mask_width: int = 4  # MFCC coefficients, at most
    # augment.py's (host) video passes as XLA kernels; False: op by op (same result to rounding).
    # Not used here: a model's train step is compiled as a whole or not at all.
    jit_compile: bool = True

    def __post_init__(self):
        if not 0.0 < self.min_crop_scale <= 1.0:
            raise UserError(f"min_crop_scale must be in (0, 1], got {self.min_crop_scale}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("num_time_masks", "time_mask_width", "num_freq_masks", "freq_mask_width"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def none(cls) -> AugmentConfig:
        """Every augmentation off."""
        return cls(flip=False, crop=False, color=False, time_mask=False, freq_mask=False)

    @classmethod
    def only(cls, *names: str) -> AugmentConfig:
        """Only the named switches on, e.g. ``AugmentConfig.only("flip", "time_mask")``."""
        bad = set(names) - set(AUGMENTATIONS)
        if bad:
            raise UserError(f"unknown augmentations {sorted(bad)}; choose from {', '.join(AUGMENTATIONS)}")
        return dataclasses.replace(cls.none(), **{n: True for n in names})

    @property
    def enabled(self) -> bool:
        return self.flip or self.crop or self.color or self.time_mask or self.freq_mask


def _uniform(seed, b, low: float, high: float):
    """float32 ``(B,)`` uniform in ``[low, high)``; advances ``seed`` (a ``SeedGenerator``)."""
    return keras.random.uniform((b,), minval=low, maxval=high, dtype="float32", seed=seed)


def to_unit(video):
    """uint8 ``(..., 3)`` -> float32 ``x / 255`` in [0, 1], bit-exact as numpy computes it (a table lookup)."""
    return ops.take(ops.convert_to_tensor(_UNIT_TABLE), ops.cast(video, "int32"))


def sampling_matrix(start, scale, size: int, flipped=None):
    """Bilinear weights of a crop along one axis: output pixel ``i`` reads source coordinate
    ``start * (size - 1) + i * scale`` (``[start, start + scale]`` of the axis, normalized to
    [0, 1], resized back to ``size``; as ``tf.image.crop_and_resize`` places them).

    Args:
      start, scale: float32 ``(B,)``.
      size: pixels along the axis (input and output).
      flipped: bool ``(B,)``: those clips' crops read right to left (a mirror image).

    Returns:
      float32 ``(B, size, size)``: row ``i`` holds output pixel ``i``'s weights over the source
      pixels (one 1.0 at an integer coordinate, else two weights summing to 1).
    """
    coord = start[:, None] * (size - 1) + ops.arange(size, dtype="float32")[None, :] * scale[:, None]
    if flipped is not None:
        coord = ops.where(flipped[:, None], ops.flip(coord, axis=1), coord)
    coord = ops.clip(coord, 0.0, size - 1.0)  # float rounding at the far edge
    lo = ops.floor(coord)
    frac = (coord - lo)[..., None]
    lo = ops.cast(lo, "int32")
    hi = ops.minimum(lo + 1, size - 1)
    return ops.one_hot(lo, size, dtype="float32") * (1.0 - frac) + ops.one_hot(hi, size, dtype="float32") * frac


def resample(video, rows, cols):
    """``video`` float32 ``(B, F, S, S, C)`` resampled per clip: ``rows`` then ``cols``
    (``sampling_matrix`` outputs, ``(B, S, S)``) -> float32 ``(B, F, S, S, C)``."""
    video = ops.einsum("buh,bfhwc->bfuwc", rows, video)
    return ops.einsum("bvw,bfuwc->bfuvc", cols, video)


def color_math(video, delta, contrast, saturation):
    """Colour jitter of float32 ``(B, F, H, W, 3)`` in [0, 1] with per-clip factors ``(B,)``.

    Brightness then contrast, ``x' = c (x - m) + m + delta`` with ``m`` each frame's
    channel means, then saturation, ``x'' = s x' + (1 - s) luma(x')``; clipped to [0, 1].
    """
    delta, contrast, saturation = (ops.reshape(f, (-1, 1, 1, 1, 1)) for f in (delta, contrast, saturation))
    mean = ops.mean(video, axis=(2, 3), keepdims=True)
    x = contrast * (video - mean) + mean + delta
    luma = x[..., 0:1] * LUMA[0] + x[..., 1:2] * LUMA[1] + x[..., 2:3] * LUMA[2]
    return ops.clip(saturation * x + (1.0 - saturation) * luma, 0.0, 1.0)


def _as_unit(video):
    """float32 [0, 1]: uint8 through ``to_unit``, float32 as it is."""
    return to_unit(video) if ops.dtype(video) == "uint8" else ops.cast(video, "float32")


def augment_video(video, seed, config: AugmentConfig = AugmentConfig()):
    """Colour-jitter, flip and crop a batch of clips, and scale it to [0, 1].

    Args:
      video: uint8 ``(B, F, S, S, 3)`` (as stored) or float32 already in [0, 1]; square frames.
      seed: a ``keras.random.SeedGenerator`` (advanced by each draw).

    Returns:
      float32 ``(B, F, S, S, 3)`` in [0, 1].
    """
    x = _as_unit(video)
    b, size = ops.shape(x)[0], x.shape[2]
    if config.color:
        delta = _uniform(seed, b, -config.brightness, config.brightness)
        contrast = _uniform(seed, b, 1.0 - config.contrast, 1.0 + config.contrast)
        saturation = _uniform(seed, b, 1.0 - config.saturation, 1.0 + config.saturation)
        x = color_math(x, delta, contrast, saturation)
    if not (config.flip or config.crop):
        return x
    if x.shape[2] != x.shape[3]:
        raise ValueError(f"square frames expected, got {x.shape[2]}x{x.shape[3]}")
    flipped = _uniform(seed, b, 0.0, 1.0) < 0.5 if config.flip else None
    if config.crop:
        scale = _uniform(seed, b, config.min_crop_scale, 1.0)
        y0 = _uniform(seed, b, 0.0, 1.0) * (1.0 - scale)
        x0 = _uniform(seed, b, 0.0, 1.0) * (1.0 - scale)
    else:
        scale, y0 = ops.ones((b,), "float32"), ops.zeros((b,), "float32")
        x0 = y0
    return resample(x, sampling_matrix(y0, scale, size), sampling_matrix(x0, scale, size, flipped))


def _runs(seed, b, size: int, max_width: int, count: int, start, stop):
    """bool ``(B, size)``: True inside ``count`` random runs per row, each within ``[start, stop)`` (int32 ``(B,)``)."""
    positions = ops.arange(size, dtype="int32")[None, :]
    span = stop - start  # (B,) room for a run
    masked = ops.zeros((b, size), dtype="bool")
    for _ in range(count):
        width = ops.minimum(keras.random.randint((b,), 0, max_width + 1, dtype="int32", seed=seed), span)
        room = ops.cast(span - width + 1, "float32")
        first = start + ops.cast(ops.floor(_uniform(seed, b, 0.0, 1.0) * room), "int32")
        first = ops.minimum(first, stop - width)  # guards the u -> 1.0 rounding edge
        inside = ops.logical_and(positions >= first[:, None], positions < (first + width)[:, None])
        masked = ops.logical_or(masked, inside)
    return masked


def time_mask(audio, seed, *, max_width: int = 10, count: int = 2, lengths=None):
    """Zero ``count`` random runs of up to ``max_width`` MFCC frames (all coefficients) per clip.

    Args:
      audio: float32 ``(B, N, M, 1)``.
      seed: a ``keras.random.SeedGenerator``.
      lengths: int ``(B,)`` unpadded frame counts; clips are pre-padded, so the real
        frames are the last ``min(length, M)`` and masks stay inside them. None: anywhere.

    Returns:
      float32 ``(B, N, M, 1)``: the input with masked values set to 0.
    """
    b, frames = ops.shape(audio)[0], audio.shape[2]
    stop = ops.full((b,), frames, dtype="int32")
    start = ops.zeros((b,), "int32") if lengths is None else stop - ops.minimum(ops.cast(lengths, "int32"), frames)
    masked = _runs(seed, b, frames, max_width, count, start, stop)  # (B, M)
    return ops.where(masked[:, None, :, None], ops.zeros_like(audio), audio)


def freq_mask(audio, seed, *, max_width: int = 4, count: int = 1):
    """Zero ``count`` random runs of up to ``max_width`` coefficients (all frames) per clip:
    float32 ``(B, N, M, 1)`` in and out; ``seed`` a ``keras.random.SeedGenerator``."""
    b, n = ops.shape(audio)[0], audio.shape[1]
    masked = _runs(seed, b, n, max_width, count, ops.zeros((b,), "int32"), ops.full((b,), n, dtype="int32"))
    return ops.where(masked[:, :, None, None], ops.zeros_like(audio), audio)


def augment_audio(audio, seed, config: AugmentConfig = AugmentConfig(), lengths=None):
    """SpecAugment time and frequency masks on a batch ``(B, N, M, 1)`` float32; same shape out."""
    if config.time_mask and config.num_time_masks and config.time_mask_width:
        audio = time_mask(audio, seed, max_width=config.time_mask_width, count=config.num_time_masks,
                          lengths=lengths)
    if config.freq_mask and config.num_freq_masks and config.freq_mask_width:
        audio = freq_mask(audio, seed, max_width=config.freq_mask_width, count=config.num_freq_masks)
    return audio


def real_frames(audio):
    """int32 ``(B,)``: the frames of each clip after its zero pre-padding, ``min(audio_frames, M)``
    (``augment.real_frames``' rule: a real frame of standardized MFCCs is never 0.0 in all 24 coefficients).

    Args:
      audio: float32 ``(B, N, M, 1)``.
    """
    frames = audio.shape[2]
    nonzero = ops.any(ops.not_equal(audio, 0.0), axis=(1, 3))  # (B, M)
    first = ops.cast(ops.argmax(ops.cast(nonzero, "int32"), axis=1), "int32")  # 0 when all zero
    return ops.where(ops.any(nonzero, axis=1), frames - first, ops.zeros_like(first))


def augment_batch(features: dict, seed, config: AugmentConfig = AugmentConfig()) -> dict:
    """Augment a batch for training, on any backend.

    Args:
      features: ``audio`` float32 ``(B, 24, M, 1)`` and/or ``video`` uint8 ``(B, 6, 64, 64, 3)``
        (or float32 in [0, 1]); time masks stay on each clip's real frames (``audio_frames``
        int ``(B,)`` when given, else ``real_frames``).
      seed: a ``keras.random.SeedGenerator``, advanced by every draw; or an int (a fresh
        generator of that seed: the same int gives the same batch).

    Returns:
      A new dict: ``audio`` masked, ``video`` float32 in [0, 1] augmented; other keys unchanged.
    """
    if isinstance(seed, int):
        seed = keras.random.SeedGenerator(seed)
    return map_batch(features, config, lambda video: augment_video(video, seed, config),
                     lambda audio, lengths: augment_audio(audio, seed, config, lengths=lengths), real_frames)


def map_batch(features: dict, config: AugmentConfig, video_fn, audio_fn, real_frames_fn) -> dict:
    """The batch plumbing of both ``augment_batch`` (this one and ``augment.py``'s): a new dict with
    ``video_fn(video)`` and ``audio_fn(audio, lengths)``, ``lengths`` the given ``audio_frames`` or, for
    time masks, ``real_frames_fn(audio)``; other keys unchanged."""
    out = dict(features)
    if "video" in features:
        out["video"] = video_fn(features["video"])
    if "audio" in features:
        audio = features["audio"]
        lengths = features.get("audio_frames")
        if lengths is None and config.time_mask:
            lengths = real_frames_fn(audio)
        out["audio"] = audio_fn(audio, lengths)
    return out
