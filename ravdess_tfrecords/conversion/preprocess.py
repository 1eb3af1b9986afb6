"""One clip in, model-ready arrays out: the converter's and ``predict``'s shared preprocessing.

Steps: probe -> decode audio -> speech interval -> MFCCs of that interval,
standardized -> 6 frame times spread over the same interval -> decode only those
frames (downscaled) -> dlib face per frame -> square crop, 64x64.
An audio-only recording (``preprocess_audio``) takes the same steps up to the MFCCs.

A clip with no face in any of its frames at the working scale gets a second,
finer search (up to ``finer_search_width``, one more upsampling), then a search
of ``MORE_FRAMES`` other frames of the speech interval (the six frames keep their
times and borrow the box of the nearest frame with a face), before it is
``no_face``: the extra time goes only to the few clips that need it, and a clip
whose face the first search finds comes out as before, byte for byte.

Test hook: ``RAVDESS_PREPROCESS_TEST_RAISE=NAME[,NAME...]`` computes the MFCCs of
a clip of that file name with ``hop_length=0``, so librosa itself raises (its
``ParameterError``, no ``ClipError``): the tests' trigger of an unexpected exception
in one clip (``internal``), for the converter and ``trainers.predict`` alike.
"""

from __future__ import annotations

import copy
import dataclasses
import os

import numpy as np

from ravdess_tfrecords import _cli, schema
from ravdess_tfrecords.conversion import audio, faces, video
from ravdess_tfrecords.conversion.errors import ClipError
from ravdess_tfrecords.errors import UserError


@dataclasses.dataclass(frozen=True)
class Settings:
    """Preprocessing settings; stored in ``ravdess_info.json`` and beside every exported model.

    Attributes:
      sample_rate: Hz the audio is resampled to (16 kHz: speech band, small MFCC cost).
      n_fft, hop_length, n_mels: MFCC analysis (64 ms window, 32 ms hop at 16 kHz).
      top_db: speech is every frame within this many dB of the loudest one.
      silence_dbfs: a clip whose loudest frame is quieter than this is ``silent``:
        digital silence (-90 dBFS is under 16-bit quantization). Not a loudness
        gate: real RAVDESS speech peaks as low as -43 dBFS (-55 dBFS, 25 ms frames).
      speech_contrast_db: a clip whose loudest frame is less than this above its
        noise floor (``audio.speech_interval``) is ``silent``: noise with no speech in it.
      standardize: ``coefficient`` (each MFCC over the clip's frames) or ``sample``
        (one mean and variance over all of them; schema 3's only choice): ``audio.standardize``.
      work_width: frames wider than this are downscaled inside ffmpeg before face
        detection and cropping. 480 keeps a RAVDESS face (about 300 px tall at
        720p) above dlib HOG's 80-pixel window.
      face_margin: the square crop extends the face box by this fraction per side.
      face_upsample: dlib upsampling passes (finds smaller faces, 4x slower each).
      finer_search_width: a clip with no face in any frame at ``work_width`` is
        searched again, before it is ``no_face``, at this width (or the clip's
        own, if smaller) with ``face_upsample + 1``: a 720p face too small for
        HOG at 480 px is found at 1280 upsampled (2560 px). 0 turns it off.
      allow_center_crop: a clip with no face in any frame, even after the finer
        search, is centre-cropped instead of skipped.
      max_clip_seconds: only the first this-many seconds of a clip are read
        (the converter lists every clip it cut).
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 40
    top_db: float = 30.0
    silence_dbfs: float = -90.0
    speech_contrast_db: float = 15.0
    standardize: str = "sample"
    work_width: int = 480
    face_margin: float = 0.1
    face_upsample: int = 0
    finer_search_width: int = 1280
    allow_center_crop: bool = False
    max_clip_seconds: float = 30.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __post_init__(self):
        if self.standardize not in audio.STANDARDIZE:
            raise UserError(f"standardize must be one of {', '.join(audio.STANDARDIZE)}, got {self.standardize!r}")
        problem = _cli.out_of_range({name: getattr(self, name) for name in SETTING_RANGES}, SETTING_RANGES)
        if problem:
            raise UserError(problem)

    @classmethod
    def from_dict(cls, values: dict) -> Settings:
        """Build from a stored dict; unknown keys (newer writers) are ignored. A key an older writer did
        not store takes the value it used then (``LEGACY``), not today's default."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**LEGACY, **{k: v for k, v in values.items() if k in names}})


# The allowed range of each numeric setting (``_cli.range_problem``: both ends included, None for no end,
# int ends for integers); the converter's flags are checked against it before any work (``cli``), and so
# is every ``Settings``.
SETTING_RANGES = {
    "sample_rate": (4000, 192000),
    "n_fft": (16, None),
    "hop_length": (1, None),
    "n_mels": (schema.NUM_MFCC, None),  # the MFCCs are the first NUM_MFCC coefficients of the mel spectrum
    "top_db": (0.0, None),
    "silence_dbfs": (None, 0.0),  # 0 dBFS is full scale
    "speech_contrast_db": (0.0, None),
    "work_width": (80, None),  # dlib HOG's window is 80 px
    "face_margin": (0.0, None),
    "face_upsample": (0, 3),  # each pass doubles the sides; the finer search adds one (1280 px -> 20480)
    "finer_search_width": (0, None),
    "max_clip_seconds": (0.5, None),
}

# A clip with no face in its frames, even after the finer search, is searched in this many more frames
# of its speech interval (at the working scale: a few ms each) before it is no_face.
MORE_FRAMES = 4 * schema.NUM_FRAMES

TEST_RAISE_ENV = "RAVDESS_PREPROCESS_TEST_RAISE"  # test hook (module docstring)


def _test_raise_hook(path: str, settings: Settings) -> Settings:
    """The test hook of the module docstring: settings that make librosa raise, for a named clip."""
    names = os.environ.get(TEST_RAISE_ENV)
    if names and os.path.basename(path) in names.split(","):
        broken = copy.copy(settings)  # not dataclasses.replace: the range check would refuse hop_length=0
        object.__setattr__(broken, "hop_length", 0)
        return broken
    return settings


# What a writer that did not store a setting did (schema 3: whole-sample standardization, -50 dBFS gate).
LEGACY = {"standardize": "sample", "silence_dbfs": -50.0, "speech_contrast_db": 0.0}


@dataclasses.dataclass(frozen=True)
class ProcessedClip:
    """The preprocessing result of one clip.

    Attributes:
      audio: float32 ``(24, T)`` standardized MFCCs, unpadded (T = true frame count).
      video: uint8 ``(6, 64, 64, 3)`` RGB face crops; None for an audio-only recording.
      interval: ``(start, end)`` seconds of speech; audio and video both use it.
      boxes: float64 ``(6, 4)`` face boxes (left, top, right, bottom) in
        original-frame pixels (the crop is a square around each).
      duration: seconds of the source clip (its header); longer than
        ``max_clip_seconds`` means only the start was read.
      finer_search: the faces were found only by a further search: the finer one, or in more frames.
    """

    audio: np.ndarray
    video: np.ndarray | None
    interval: tuple[float, float]
    boxes: np.ndarray | None
    duration: float = 0.0
    finer_search: bool = False


def _decode_speech(path: str, settings: Settings, need_video: bool = False) -> tuple:
    """Probe, decode, and find the speech interval: ``(probe, samples, start, end)``."""
    info, y = audio.probe_and_decode(path, settings.sample_rate, settings.max_clip_seconds)
    if need_video and not info.has_video:
        raise ClipError("no_video", "no video stream")
    if y.size == 0:
        raise ClipError("no_audio", "the audio stream decodes to no samples")
    start, end = audio.speech_interval(y, settings.sample_rate, settings.top_db, settings.silence_dbfs,
                                       settings.speech_contrast_db)
    return info, y, start, end


def speech_mfcc(y, start: float, end: float, settings: Settings) -> np.ndarray:
    """Standardized MFCCs float32 ``(24, T)`` of the samples ``y`` between ``start`` and ``end`` seconds."""
    sr = settings.sample_rate
    speech = y[int(start * sr): int(np.ceil(end * sr))]
    features = audio.mfcc(speech, sr, schema.NUM_MFCC, settings.n_fft, settings.hop_length, settings.n_mels)
    return audio.standardize(features, settings.standardize)


def preprocess_audio(path: str, settings: Settings = Settings()) -> ProcessedClip:
    """Preprocess the audio of one recording (RAVDESS's audio-only ``.wav``, or any file with sound):
    the steps of ``preprocess_clip`` up to the MFCCs, and no face step (``video`` and ``boxes`` None).

    Raises:
      ClipError: with the reason (unreadable, truncated, no_audio, bad_audio, silent).
    """
    settings = _test_raise_hook(path, settings)
    info, y, start, end = _decode_speech(path, settings)
    return ProcessedClip(audio=speech_mfcc(y, start, end, settings), video=None, interval=(start, end),
                         boxes=None, duration=float(info.duration))


def preprocess_clip(path: str, settings: Settings = Settings(), *, threads: int = 0) -> ProcessedClip:
    """Preprocess one audio-video clip.

    ``threads``: ffmpeg's video decoding threads (0: all cores). The converter
    gives each of several workers its share; the result is the same either way.

    Raises:
      ClipError: with the reason (unreadable, no_audio, no_video, bad_audio, silent, no_face).
    """
    settings = _test_raise_hook(path, settings)
    info, y, start, end = _decode_speech(path, settings, need_video=True)

    # ffmpeg decodes the frames while the MFCCs are computed and each decoded frame's face is found.
    times = video.frame_times(start, end, schema.NUM_FRAMES)
    indices = video.frame_indices(times, info.fps, min(info.duration, settings.max_clip_seconds))
    with video.FrameStream(path, indices, info.width, info.height, settings.work_width, threads) as stream:
        mfcc = speech_mfcc(y, start, end, settings)
        decoded = _find_faces(stream, settings.face_upsample)
    finer = False
    if all(box is None for _, box in decoded) and settings.finer_search_width > 0:
        # The same frames, larger, with one more upsampling: only for the clips that need it.
        with video.FrameStream(path, indices, info.width, info.height,
                               max(settings.finer_search_width, settings.work_width), threads) as stream:
            retry = _find_faces(stream, settings.face_upsample + 1)
        if retry and any(box is not None for _, box in retry):
            decoded, finer = retry, True
    if decoded and all(box is None for _, box in decoded):
        # Still none: the face may show at other times of the interval (turned away, covered, blurred at
        # these six). The six frames keep their times; each borrows the box of the nearest frame with one.
        elsewhere = _faces_elsewhere(path, info, start, end, indices, settings, threads)
        if elsewhere:
            decoded = [(frame, _nearest(elsewhere, int(index)))
                       for (frame, _), index in zip(decoded, np.unique(indices), strict=False)]
            finer = True
    frames = np.stack([frame for frame, _ in video.expand(decoded, indices)])
    found = [box for _, box in video.expand(decoded, indices)]
    boxes = faces.fill_missing(found)
    if boxes is None:
        if not settings.allow_center_crop:
            searched = " (also by the finer search)" if settings.finer_search_width > 0 else ""
            raise ClipError("no_face", f"no face found in any of the {schema.NUM_FRAMES} frames{searched}, "
                                       f"nor in {MORE_FRAMES} more of the speech interval")
        boxes = [faces.center_box(*frames.shape[1:3])] * len(frames)
    crops = np.stack(
        [faces.crop_resize(f, faces.square_box(b, settings.face_margin), schema.FACE_SIZE)
         for f, b in zip(frames, boxes, strict=True)]
    )
    scale = info.width / frames.shape[2]
    return ProcessedClip(
        audio=mfcc, video=crops, interval=(start, end), boxes=np.asarray(boxes, dtype=np.float64) * scale,
        duration=float(info.duration), finer_search=finer,
    )


def _faces_elsewhere(path: str, info, start: float, end: float, searched: np.ndarray, settings: Settings,
                     threads: int) -> dict[int, faces.Box]:
    """``{frame index: box}`` of the faces found at the working scale in ``MORE_FRAMES`` frames spread over
    ``[start, end]`` other than the ``searched`` ones (empty if none)."""
    times = video.frame_times(start, end, MORE_FRAMES)
    more = np.setdiff1d(video.frame_indices(times, info.fps, min(info.duration, settings.max_clip_seconds)),
                        searched)
    if more.size == 0:
        return {}
    with video.FrameStream(path, more, info.width, info.height, settings.work_width, threads) as stream:
        found = _find_faces(stream, settings.face_upsample)
    return {int(index): box for index, (_, box) in zip(more, found, strict=False) if box is not None}


def _nearest(boxes: dict[int, faces.Box], index: int) -> faces.Box:
    """The box of the frame nearest to frame ``index`` (the earlier of two as near)."""
    return boxes[min(boxes, key=lambda i: (abs(i - index), i))]


def _find_faces(stream: video.FrameStream, upsample: int) -> list[tuple[np.ndarray, faces.Box | None]]:
    """``(frame, box or None)`` for each decoded frame, each searched first near the last face found."""
    decoded, last = [], None
    for frame in stream:
        box = faces.detect_near(frame, last, upsample)
        decoded.append((frame, box))
        last = box or last
    return decoded
