"""Audio: decode with ffmpeg, find the speech interval, MFCCs, standardize, pad.

Everything but ``probe_and_decode`` and ``mfcc`` (librosa, threadpoolctl) is pure numpy, so tests call it directly.
"""

from __future__ import annotations

import numpy as np

from ravdess_tfrecords.conversion import ffmpeg
from ravdess_tfrecords.conversion.errors import ClipError

# The noise floor of a clip: this percentile of its frame levels (speech_interval).
SILENCE_FLOOR_PERCENTILE = 5.0
# How MFCCs are standardized per sample (``standardize``).
STANDARDIZE = ("coefficient", "sample")

# The BLAS threads of the MFCCs' matrix products (``mfcc``): the float32 sums change with the count.
MFCC_BLAS_THREADS = 1

# Decoded audio may fall this far short of the header's duration (codec priming, rounding).
TRUNCATION_SLACK = 0.25


def _decode_args(path: str, sample_rate: int, max_seconds: float | None) -> list[str]:
    limit = ["-t", f"{max_seconds:.3f}"] if max_seconds else []
    return ["-i", path, *limit, "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(sample_rate),
            "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]


def probe_and_decode(path: str, sample_rate: int, max_seconds: float | None = None
                     ) -> tuple[ffmpeg.Probe, np.ndarray]:
    """Decode the first audio stream to mono float32 at ``sample_rate`` straight from a pipe,
    and read the file's streams from the header the same ffmpeg process prints.

    Returns:
      (probe, float32 ``(samples,)`` in [-1, 1]).

    Raises:
      ClipError: ``unreadable``; ``no_audio`` when the file has no audio stream;
        ``truncated`` when the audio ends well before the duration in the header.
    """
    info, raw, code = ffmpeg.run_with_probe(_decode_args(path, sample_rate, max_seconds))
    if not info.has_audio:
        raise ClipError("no_audio", "no audio stream")
    if code != 0:
        raise ClipError("unreadable", f"ffmpeg exited with {code} decoding the audio")
    y = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    expected = min(info.duration, max_seconds or info.duration)
    if len(y) / sample_rate < expected - TRUNCATION_SLACK:
        raise ClipError("truncated", f"audio ends at {len(y) / sample_rate:.2f} s, the header says {expected:.2f} s")
    return info, y


def frame_rms_db(y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """RMS level in dBFS of each frame (frames start at ``i * hop_length``).

    Args:
      y: float32 ``(samples,)``.

    Returns:
      float64 ``(frames,)``; -inf-free (floored at -200 dB).
    """
    if len(y) < frame_length:
        y = np.pad(y, (0, frame_length - len(y)))
    frames = np.lib.stride_tricks.sliding_window_view(y.astype(np.float64), frame_length)[::hop_length]
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def check_finite(y: np.ndarray, sample_rate: int) -> None:
    """Raise ``ClipError("bad_audio")`` if a sample of ``y`` is NaN or infinite (float PCM can hold them).

    No level, MFCC or speech interval means anything then: a NaN compares as neither loud nor quiet.
    """
    bad = ~np.isfinite(y)
    if bad.any():
        nan, first = int(np.isnan(y).sum()), int(np.flatnonzero(bad)[0])
        raise ClipError("bad_audio", f"the audio holds {nan} NaN and {int(bad.sum()) - nan} infinite samples "
                                     f"(the first at {first / sample_rate:.3f} s)")


def speech_interval(
    y: np.ndarray,
    sample_rate: int,
    top_db: float,
    silence_dbfs: float,
    speech_contrast_db: float = 15.0,
    frame_seconds: float = 0.025,
    hop_seconds: float = 0.010,
) -> tuple[float, float]:
    """The interval, in seconds, from the first to the last frame within ``top_db`` of the loudest.

    Like ``librosa.effects.trim`` but on short frames (10 ms hop), so the edges
    land within a frame of the truth. Every level is relative to the clip's own
    loudest frame, so a quiet recording (real RAVDESS speech peaks as low as -43
    dBFS) is trimmed like a loud one.

    Silence is judged the same way, whatever the recording level: digital silence
    (the loudest frame below ``silence_dbfs``, under 16-bit quantization by
    default), or a noise floor with nothing standing out of it (the loudest frame
    less than ``speech_contrast_db`` above the floor, the 5th percentile of the
    frame levels: steady noise stays within a dB or two of its floor, speech
    rises 40 dB or more above it in every real RAVDESS recording).

    Raises:
      ClipError: ``silent``, saying which of the two it is; ``bad_audio`` for NaN or infinite samples.
    """
    check_finite(y, sample_rate)
    frame = int(round(frame_seconds * sample_rate))
    hop = int(round(hop_seconds * sample_rate))
    db = frame_rms_db(y, frame, hop)
    peak = float(db.max()) if len(db) else -200.0
    if peak < silence_dbfs:
        raise ClipError("silent", f"audio is silent (loudest frame {peak:.0f} dBFS < {silence_dbfs:.0f} dBFS)")
    floor = float(np.percentile(db, SILENCE_FLOOR_PERCENTILE))
    if peak - floor < speech_contrast_db:
        raise ClipError("silent", f"audio is silent: noise with no speech in it (loudest frame {peak:.0f} dBFS, "
                                  f"{peak - floor:.1f} dB above the noise floor < {speech_contrast_db:g} dB)")
    loud = np.flatnonzero(db >= peak - top_db)
    start = loud[0] * hop / sample_rate
    end = min((loud[-1] * hop + frame) / sample_rate, len(y) / sample_rate)
    return float(start), float(end)


def mfcc(y: np.ndarray, sample_rate: int, n_mfcc: int, n_fft: int, hop_length: int, n_mels: int) -> np.ndarray:
    """librosa MFCCs, computed with one BLAS thread.

    OpenBLAS splits the mel projection's matrix product by its thread count (by default, the machine's
    cores), and the float32 sums change with the split: without the limit, every clip's features differed
    between 1 and 2 threads, so the shards' bytes depended on the machine. One thread is also the fast choice:
    for products this small the other threads only spin (the test corpus, 2 workers on 2 cores:
    21.2 -> 15.7 CPU-s).

    Returns:
      float32 ``(n_mfcc, frames)``.
    """
    import librosa  # writing half only: the reader never needs librosa
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=MFCC_BLAS_THREADS, user_api="blas"):
        return librosa.feature.mfcc(
            y=y, sr=sample_rate, n_mfcc=n_mfcc, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels
        ).astype(np.float32)


def standardize(features: np.ndarray, mode: str = "sample") -> np.ndarray:
    """Zero mean, unit variance within one sample.

    Args:
      features: ``(n, T)`` MFCCs (coefficients x frames).
      mode: ``sample``: one mean and variance over all coefficients and frames (the
        seed notebook's; MFCC 0, the energy, dominates them, so it squashes c1..c23
        to standard deviations of 0.2-0.6); ``coefficient``: each coefficient over the
        sample's frames (every row ends at mean 0, variance 1; cepstral mean and
        variance normalization).

    Returns:
      float32, same shape. A constant input (or row, per coefficient) becomes zeros.
    """
    if mode not in STANDARDIZE:
        raise ValueError(f"standardize must be one of {STANDARDIZE}, got {mode!r}")
    x = features.astype(np.float64)
    axis = 1 if mode == "coefficient" else None
    mean = x.mean(axis=axis, keepdims=True)
    std = x.std(axis=axis, keepdims=True)
    return ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def pad_or_cut(features: np.ndarray, frames: int) -> np.ndarray:
    """Pre-pad with 0 (the mean after standardization) or cut the earliest frames.

    Args:
      features: ``(n, T)``.
      frames: M, the target length.

    Returns:
      float32 ``(n, M)``: real frames at the end, zeros (if any) at the start.
    """
    n, t = features.shape
    if t >= frames:
        return np.ascontiguousarray(features[:, t - frames:], dtype=np.float32)
    out = np.zeros((n, frames), dtype=np.float32)
    out[:, frames - t:] = features
    return out


def model_input(mfcc: np.ndarray, frames: int) -> np.ndarray:
    """The stored (and model) audio tensor: ``pad_or_cut`` to M plus a channel axis.

    Args:
      mfcc: standardized MFCCs ``(24, T)``.
      frames: M, the corpus' padded frame count (``ravdess_info.json``'s ``audio_frames``).

    Returns:
      float32 ``(24, M, 1)``, as the converter writes it and the models read it.
    """
    return pad_or_cut(mfcc, frames)[..., np.newaxis]
