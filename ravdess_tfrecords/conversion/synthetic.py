"""A synthetic corpus shaped like RAVDESS, for tests, benchmarks and the demo.

RAVDESS cannot be downloaded everywhere (25 GB, zenodo), so this writes clips
with RAVDESS's names and layout (``Actor_NN/MM-VV-EE-II-SS-RR-AA.mp4``, H.264 +
AAC, written with the bundled ffmpeg), each actor with a real face (from
scikit-image's ``lfw_subset``) that dlib's HOG detector finds, and a voice-like
sound (harmonic source + formant resonators) between known stretches of
silence.

The emotion is learnable from either modality, but neither alone tells all
seven classes apart; both together do:

* video: the face's tint separates {neutral, calm} {happy, angry} {sad, fearful} {disgust, surprised};
* audio: pitch, intonation, tempo and spectral tilt separate
  {neutral, calm} {happy, surprised} {sad, disgust} {angry, fearful}.

Each modality alone tops out near 60 % (7 classes), fusion near 100 %.

``make_corpus(..., modality="audio")`` writes the audio-only layout instead
(``Actor_NN/03-VV-EE-II-SS-RR-AA.wav``, 16-bit PCM), as RAVDESS's
``Audio_Speech_Actors_01-24.zip`` holds it; ``make_wav`` writes one such file, at
any level (``gain_db``: real RAVDESS speech peaks as low as -43 dBFS).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import tempfile
import wave
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
from PIL import Image

from ravdess_tfrecords.conversion import ffmpeg
from ravdess_tfrecords.conversion import progress as progress_bar
from ravdess_tfrecords.filenames import NUM_ACTORS, ClipName

TRUTH_FILENAME = "truth.json"
AUDIO_RATE = 48000  # RAVDESS's own rate, of the AAC track
SYNTH_RATE = 16000  # the voice is made at 16 kHz (harmonics stop at 7 kHz) and resampled by ffmpeg

# lfw_subset faces that dlib finds under every tint below, best first; one per actor.
_FACE_INDICES = (74, 1, 63, 80, 66, 5, 20, 24, 3, 75, 89, 46, 25, 48, 92, 62, 19, 41, 93, 51, 78, 34, 65, 79)

# emotion code -> visual group / audio group (see the module docstring)
_VIDEO_GROUP = {1: 0, 2: 0, 3: 1, 5: 1, 4: 2, 6: 2, 7: 3, 8: 3}
_AUDIO_GROUP = {1: 0, 2: 0, 3: 1, 8: 1, 4: 2, 7: 2, 5: 3, 6: 3}
_TINTS = np.array([(1.0, 1.0, 1.0), (1.15, 0.9, 0.85), (0.85, 0.92, 1.15), (0.9, 1.12, 0.85)])
# per audio group: f0 factor, intonation (octaves over the utterance), syllables/s, spectral tilt, vibrato depth
_PROSODY = np.array([
    (1.0, 0.0, 3.5, 1.2, 0.00),
    (1.35, 0.5, 4.5, 0.9, 0.02),
    (0.8, -0.4, 2.5, 1.6, 0.00),
    (1.2, 0.1, 5.5, 0.7, 0.06),
])


@dataclasses.dataclass(frozen=True)
class ClipTruth:
    """Ground truth of one synthetic clip.

    ``speech``: (start, end) seconds of voice. The face box at time t is
    ``face_box(t)``: a square of ``face_side`` px whose top-left moves as
    ``(x0 + ax sin(2 pi t / period), y0 + ay sin(2 pi t / period))``.
    """

    duration: float
    speech: tuple[float, float]
    x0: float
    y0: float
    face_side: int
    ax: float
    ay: float
    period: float
    width: int
    height: int

    def face_box(self, t: float) -> tuple[float, float, float, float]:
        phase = np.sin(2 * np.pi * t / self.period)
        left = float(np.round(self.x0 + self.ax * phase))
        top = float(np.round(self.y0 + self.ay * phase))
        return (left, top, left + self.face_side, top + self.face_side)


def speech_names(actor: int, vocal_channel: int = 1) -> list[ClipName]:
    """Every modality-01 clip name RAVDESS has for one actor, round-robin over emotions.

    Speech: 60 names (neutral 4, each other emotion 8); song: 44 (6 emotions),
    none for actor 18. Taking the first k spreads k clips over the emotions.
    """
    emotions = range(1, 9) if vocal_channel == 1 else range(1, 7)
    if vocal_channel == 2 and actor == 18:
        return []
    by_emotion = []
    for emotion in emotions:
        intensities = (1,) if emotion == 1 else (1, 2)
        by_emotion.append([
            ClipName(1, vocal_channel, emotion, i, s, r, actor)
            for i in intensities for s in (1, 2) for r in (1, 2)
        ])
    longest = max(len(names) for names in by_emotion)
    return [names[k] for k in range(longest) for names in by_emotion if k < len(names)]


@functools.lru_cache(maxsize=1)
def _lfw_faces() -> np.ndarray:
    """scikit-image's 100 real face crops (25x25 grey, float in [0, 1])."""
    from skimage.data import lfw_subset

    return lfw_subset()


def _rng(name: ClipName, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, *dataclasses.astuple(name)])


def synthesize_voice(name: ClipName, duration: float, speech: tuple[float, float],
                     rng: np.random.Generator, rate: int = SYNTH_RATE) -> np.ndarray:
    """A voiced, formant-filtered utterance inside ``speech``; a -70 dBFS floor elsewhere.

    Returns:
      float32 ``(round(duration * rate),)`` in [-1, 1].
    """
    from scipy.signal import lfilter

    n = int(round(duration * rate))
    t = np.arange(n) / rate
    f0_factor, glide, syllable_rate, tilt, vibrato = _PROSODY[_AUDIO_GROUP[name.emotion]]
    if name.emotion == 2:  # calm: a touch slower than neutral
        syllable_rate *= 0.9
    base = (120.0 if name.actor % 2 else 210.0) * (1 + 0.08 * np.sin(name.actor))
    strong = 1.15 if name.intensity == 2 else 1.0
    s0, s1 = speech
    u = np.clip((t - s0) / (s1 - s0), 0, 1)
    f0 = base * f0_factor * strong * 2 ** (glide * (u - 0.5)) * (1 + vibrato * np.sin(2 * np.pi * 6 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = np.zeros(n)
    for k in range(1, int(7000 / f0.max()) + 1):
        voice += np.sin(k * phase) / k**tilt
    # Whole syllables: the envelope is exactly zero outside [s0, s1].
    syllables = max(1, int(round((s1 - s0) * syllable_rate)))
    envelope = np.where((t >= s0) & (t <= s1), np.sin(np.pi * u * syllables) ** 2, 0.0) ** 0.6
    formants = (700, 1220, 2600) if name.statement == 1 else (500, 1700, 2500)
    for f, bw in zip(formants, (110, 140, 220), strict=True):
        r = np.exp(-np.pi * bw / rate)
        voice = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / rate), r * r], voice)
    voice = voice * envelope
    voice = voice / (np.abs(voice).max() + 1e-9) * (0.6 if name.intensity == 2 else 0.4)
    voice += rng.normal(0, 10 ** (-70 / 20), n)
    return np.clip(voice, -1, 1).astype(np.float32)


@dataclasses.dataclass
class _Scene:
    background: np.ndarray  # (h, w, 3) float32
    face: np.ndarray        # (side, side, 3) float32


def _scene(name: ClipName, width: int, height: int, face_side: int, faces: np.ndarray) -> _Scene:
    actor_rng = np.random.default_rng(name.actor)
    grey = actor_rng.uniform(70, 120)
    gradient = np.linspace(1.1, 0.9, height)[:, None, None]
    background = np.full((height, width, 3), grey, np.float32) * gradient
    # Shoulders: a darker block under the face, the actor's shirt colour.
    shirt = actor_rng.uniform(20, 90, 3)
    top = int(0.62 * height)
    background[top:, int(0.25 * width): int(0.75 * width)] = shirt
    gray = (faces[_FACE_INDICES[(name.actor - 1) % len(_FACE_INDICES)]] * 255).astype(np.uint8)
    big = np.asarray(Image.fromarray(gray).resize((face_side, face_side), Image.BICUBIC), np.float32)
    skin = np.array((1.0, 0.9, 0.8)) * actor_rng.uniform(0.96, 1.04, 3)
    tint = _TINTS[_VIDEO_GROUP[name.emotion]]
    tint = 1 + (tint - 1) * (1.5 if name.intensity == 2 else 1.0)
    return _Scene(background=background, face=big[..., None] * (skin * tint).astype(np.float32))


def _write_wav(path: str, sound: np.ndarray, rate: int) -> None:
    """16-bit mono PCM wav."""
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(sound, -1, 1) * 32767).round().astype("<i2").tobytes())


def make_wav(path: str, name: ClipName, seed: int = 0, voice: bool = True, gain_db: float = 0.0,
             duration: float | None = None, rate: int = SYNTH_RATE) -> ClipTruth:
    """Write one synthetic audio-only recording (16-bit PCM ``.wav``) and return its ground truth.

    The voice of ``make_clip`` for the same name, scaled by ``gain_db`` (its peak is
    -4.4 dBFS, or -8 for normal intensity, at 0 dB); ``voice=False``: only the -70 dBFS
    noise floor, a silent recording. Face fields of the truth are 0.
    """
    rng = _rng(dataclasses.replace(name, modality=1), seed)  # the voice of the audio-video clip of that name
    duration = float(rng.uniform(3.0, 5.0)) if duration is None else float(duration)
    speech = (float(rng.uniform(0.3, 0.8)), duration - float(rng.uniform(0.3, 0.8)))
    sound = synthesize_voice(name, duration, speech, rng, rate=rate)
    if not voice:
        sound = rng.normal(0, 10 ** (-70 / 20), sound.shape).astype(np.float32)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.partial"
    _write_wav(partial, sound * 10 ** (gain_db / 20), rate)
    os.replace(partial, path)  # never a half-written file under its final name
    return ClipTruth(duration=duration, speech=speech, x0=0.0, y0=0.0, face_side=0, ax=0.0, ay=0.0, period=1.0,
                     width=0, height=0)


def make_clip(path: str, name: ClipName, width: int = 480, height: int = 270,
              fps: float = 30000 / 1001, seed: int = 0, faces: np.ndarray | None = None,
              face: bool = True, voice: bool = True, duration: float | None = None,
              face_side: int | None = None, face_times: list[tuple[float, float]] | None = None) -> ClipTruth:
    """Write one synthetic clip (H.264 + AAC mp4) and return its ground truth.

    ``face=False`` leaves the face out and ``voice=False`` leaves only the
    -70 dBFS floor: the no-face and silent clips the converter must skip.
    ``duration`` overrides the random 3-5 s; ``face_side`` the face's size in
    pixels (default 0.44 of the height, RAVDESS's framing). ``face_times``:
    the face shows only in the frames whose time falls in one of these
    ``[start, end)`` seconds (None: in every frame).
    """
    if faces is None:
        faces = _lfw_faces()
    rng = _rng(name, seed)
    duration = float(rng.uniform(3.0, 5.0)) if duration is None else float(duration)
    speech = (float(rng.uniform(0.3, 0.8)), 0.0)
    speech = (speech[0], duration - float(rng.uniform(0.3, 0.8)))
    side = int(round(0.44 * height)) if face_side is None else int(face_side)
    truth = ClipTruth(
        duration=duration, speech=speech,
        x0=float(width / 2 - side / 2 + rng.uniform(-0.05, 0.05) * width),
        y0=float(0.16 * height + rng.uniform(-0.02, 0.02) * height),
        face_side=side, ax=float(0.02 * width), ay=float(0.01 * height),
        period=float(rng.uniform(1.5, 3.0)), width=width, height=height,
    )
    scene = _scene(name, width, height, side, faces)
    sound = synthesize_voice(name, duration, speech, rng)
    if not voice:
        sound = rng.normal(0, 10 ** (-70 / 20), sound.shape).astype(np.float32)

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ravdess-synth-") as tmp:
        wav = os.path.join(tmp, "voice.wav")
        _write_wav(wav, sound, SYNTH_RATE)
        partial = os.path.join(tmp, "clip.mp4")
        proc = subprocess.Popen(
            [ffmpeg.executable(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
             "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", "30000/1001", "-i", "pipe:0",
             "-i", wav, "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
             "-c:a", "aac", "-ar", str(AUDIO_RATE), "-b:a", "96k", "-shortest", "-movflags", "+faststart", partial],
            stdin=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        background = np.clip(scene.background, 0, 255).astype(np.uint8)
        face_pixels = np.clip(scene.face, 0, 255).astype(np.uint8)
        for i in range(int(round(duration * fps))):
            frame = background.copy()
            left, top, right, bottom = (int(v) for v in truth.face_box(i / fps))
            if face and (face_times is None or any(a <= i / fps < b for a, b in face_times)):
                frame[top:bottom, left:right] = face_pixels
            proc.stdin.write(frame.tobytes())
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed writing {path}: {err.decode(errors='replace').strip()}")
        os.replace(partial, path)  # never a half-written clip under its final name
    return truth


def _make_one(job: tuple) -> tuple[str, dict]:
    path, name, width, height, fps, seed = job
    if name.modality == 3:
        truth = make_wav(path, name, seed)
    else:
        truth = make_clip(path, name, width, height, fps, seed)
    return name.clip_id, dataclasses.asdict(truth)


def make_corpus(output_dir: str, actors=range(1, NUM_ACTORS + 1), clips_per_actor: int | None = None,
                vocal_channels=("speech",), width: int = 480, height: int = 270,
                fps: float = 30000 / 1001, seed: int = 0, workers: int = 1, progress: bool = False,
                modality: str = "audio_video") -> dict:
    """Write a synthetic corpus ``output_dir/Actor_NN/*.mp4`` plus ``truth.json``.

    ``modality="audio"``: audio-only recordings ``Actor_NN/03-*.wav`` instead (the same names but the
    modality code, the same voices).

    Args:
      clips_per_actor: k names per actor and channel (all when None), taken
        round-robin over the emotions from an offset that moves with the actor,
        so a small corpus still holds every emotion.
      width, height: frame size; RAVDESS is 1280x720 at 29.97 fps.

    Returns:
      ``{clip_id: ClipTruth as dict}`` (also written to ``truth.json``).
    """
    channels = {"speech": 1, "song": 2}
    jobs = []
    for actor in actors:
        for channel in vocal_channels:
            names = speech_names(actor, channels[channel])
            if clips_per_actor is not None and names:
                offset = (actor - 1) * clips_per_actor % len(names)
                names = (names[offset:] + names[:offset])[:clips_per_actor]
            for name in names:
                ext = ".mp4"
                if modality == "audio":
                    name, ext = dataclasses.replace(name, modality=3), ".wav"
                path = os.path.join(output_dir, f"Actor_{actor:02d}", f"{name.clip_id}{ext}")
                jobs.append((path, name, width, height, fps, seed))
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            results = list(progress_bar.bar(pool.map(_make_one, jobs), len(jobs), "synthetic clips", progress))
    else:
        results = [_make_one(job) for job in progress_bar.bar(jobs, len(jobs), "synthetic clips", progress)]
    truth = dict(sorted(results))
    with open(os.path.join(output_dir, TRUTH_FILENAME), "w") as f:
        json.dump(truth, f, indent=1, sort_keys=True)
    return truth


def load_truth(corpus_dir: str) -> dict[str, ClipTruth]:
    """Read ``truth.json`` back into ``ClipTruth`` objects."""
    with open(os.path.join(corpus_dir, TRUTH_FILENAME)) as f:
        raw = json.load(f)
    return {k: ClipTruth(**{**v, "speech": tuple(v["speech"])}) for k, v in raw.items()}
