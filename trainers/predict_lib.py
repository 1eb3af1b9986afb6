"""Emotions of raw clips with a trained model: the converter's preprocessing, then the model.

A model directory written by ``trainers.fit`` holds ``model.keras``,
``model_info.json`` (class names, audio_frames, input names) and a copy of the
data's ``ravdess_info.json`` whose ``preprocessing`` dict is the converter's
``preprocess.Settings``. A clip goes through exactly what the converter did:

1. ``preprocess.preprocess_clip(path, Settings.from_dict(saved))``: standardized
   MFCCs float32 ``(24, T)`` and face crops uint8 ``(6, 64, 64, 3)``;
2. ``audio.model_input``: ``pad_or_cut`` to the saved ``audio_frames`` M, plus a
   channel axis: ``(24, M, 1)`` (what the shards store, by the same function);
3. video ``uint8 / 255.0`` float32 (bit-exact what the input pipeline's
   ``augment.to_unit`` does at evaluation);
4. ``model.predict``: float32 ``(num_classes,)`` probabilities.

A model without a video input (``--model=audio``, on audio-only or audio-video data)
takes ``preprocess.preprocess_audio`` instead: the same steps up to the MFCCs and no
face step, so it predicts RAVDESS's audio-only ``.wav`` recordings (or any file with sound).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from tensorflow import keras

from ravdess_tfrecords import models, schema, storage
from ravdess_tfrecords.conversion import audio, preprocess, sources
from ravdess_tfrecords.conversion.errors import ClipError
from ravdess_tfrecords.errors import UserError
from trainers.export import load_saved


@dataclasses.dataclass(frozen=True)
class Predictor:
    """A loaded model directory: the model and everything its input needs."""

    model: keras.Model
    class_names: tuple[str, ...]
    audio_frames: int
    input_names: tuple[str, ...]
    settings: preprocess.Settings


def load(model_dir: str) -> Predictor:
    """Load ``model.keras``, ``model_info.json`` and the preprocessing settings of ``model_dir``.

    Raises:
      FileNotFoundError: a file ``trainers.fit`` writes is missing.
    """
    model_dir = storage.expand(model_dir)
    model, info = load_saved(model_dir)
    data_info_path = os.path.join(model_dir, schema.INFO_FILENAME)
    if not storage.exists(data_info_path):  # a model saved before schema 3 has it under the old name
        data_info_path = os.path.join(model_dir, schema.OLD_INFO_FILENAME)
    if not storage.exists(data_info_path):
        raise FileNotFoundError(f"{data_info_path} not found: the preprocessing settings are saved there")
    data_info = json.loads(storage.read_text(data_info_path))
    if int(data_info["audio_frames"]) != int(info["audio_frames"]):
        raise UserError(f"{model_dir}: audio_frames differ between {schema.INFO_FILENAME} and model_info.json")
    return Predictor(
        model=model,
        class_names=tuple(info["class_names"]),
        audio_frames=int(info["audio_frames"]),
        input_names=tuple(info["inputs"]),
        settings=preprocess.Settings.from_dict(data_info.get("preprocessing", {})),
    )


def clip_features(path: str, settings: preprocess.Settings, audio_frames: int, *, video: bool = True
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """One clip as model input: audio float32 ``(24, M, 1)``, video float32 ``(6, 64, 64, 3)`` in [0, 1].

    ``path`` may be any ``tf.io.gfile`` path. ``video`` False (a model without a video input): the audio
    alone (``preprocess_audio``, no face step; a ``.wav`` will do), and None for the video.

    Raises:
      ClipError: the clip cannot be preprocessed (the converter would skip it).
    """
    path = storage.expand(path)
    if not storage.isfile(path):
        raise ClipError("unreadable", f"no such file: {path}")
    # ffmpeg reads local files only: a clip elsewhere (gs://, file://) is read from a temporary copy
    with sources.local_path(sources.Source(display=path, path=path, member=None, fingerprint="")) as local:
        if not video:
            return audio.model_input(preprocess.preprocess_audio(local, settings).audio, audio_frames), None
        clip = preprocess.preprocess_clip(local, settings)
    audio_x = audio.model_input(clip.audio, audio_frames)
    video_x = clip.video.astype(np.float32) / 255.0
    return audio_x, video_x


def predict_clips(predictor: Predictor, paths: Sequence[str]) -> list[dict[str, Any]]:
    """Predict every clip; a clip that fails gets its reason and the others still run.

    The reasons are the converter's (``conversion.errors.REASONS``): a ``ClipError``'s code,
    ``unreadable`` for a file ffmpeg cannot read, ``internal`` (with the exception's type and
    message) for anything unexpected, e.g. a library raising on the clip's audio.

    Returns:
      One dict per path, in order: ``{"clip", "label", "probability",
      "probabilities": {class: p}}`` or ``{"clip", "error": {"code", "message"}}``.
    """
    results: list[dict[str, Any]] = []
    ready: list[tuple[int, np.ndarray, np.ndarray]] = []
    for path in paths:
        try:
            audio_x, video_x = clip_features(path, predictor.settings, predictor.audio_frames,
                                             video=models.VIDEO_INPUT in predictor.input_names)
        except ClipError as e:
            results.append({"clip": path, "error": {"code": e.code, "message": e.message}})
            continue
        except (OSError, RuntimeError, ValueError) as e:  # e.g. ffmpeg failing on a broken file
            results.append({"clip": path, "error": {"code": "unreadable", "message": str(e)}})
            continue
        except Exception as e:  # noqa: BLE001 - a bug or a library (librosa) failing on this clip: its line, as the
            # converter's "internal" skip; the other clips still run
            results.append({"clip": path, "error": {"code": "internal", "message": f"{type(e).__name__}: {e}"}})
            continue
        ready.append((len(results), audio_x, video_x))
        results.append({"clip": path})
    if ready:
        audio_b = np.stack([a for _, a, _ in ready])
        video_b = None if ready[0][2] is None else np.stack([v for _, _, v in ready])
        inputs = models.select_inputs(predictor.input_names, audio_b, video_b)
        probs = np.asarray(predictor.model.predict(inputs, verbose=0), np.float32)
        for (index, _, _), p in zip(ready, probs, strict=True):
            best = int(p.argmax())
            results[index].update(
                label=predictor.class_names[best],
                probability=float(p[best]),
                probabilities={name: float(q) for name, q in zip(predictor.class_names, p, strict=True)},
            )
    return results


def format_result(result: dict[str, Any], top_k: int = 3) -> str:
    """``clip.mp4: angry 0.81 (happy 0.10, sad 0.05)`` or ``clip.mp4: FAILED no_face: ...``."""
    name = os.path.basename(result["clip"])
    if "error" in result:
        return f"{name}: FAILED {result['error']['code']}: {result['error']['message']}"
    ranked = sorted(result["probabilities"].items(), key=lambda item: -item[1])
    head = f"{name}: {ranked[0][0]} {ranked[0][1]:.2f}"
    rest = ", ".join(f"{label} {p:.2f}" for label, p in ranked[1:top_k])
    return f"{head} ({rest})" if rest else head
