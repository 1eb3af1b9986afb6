"""Write small, valid shard directories straight from ``schema.serialize`` (test helper).

The reading-half tests use these instead of a full conversion: they are fast, and
every stored value is known, so tests can compare what the pipeline yields
against the truth. The layout, ``ravdess_info.json`` and the tensorflow_datasets
metadata follow the converter's contract (one shard set per actor, ``schema.shard_name``,
``tfds_metadata.files``).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ravdess_tfrecords import labels, schema
from ravdess_tfrecords.conversion import tfds_metadata

# (vocal_channel, emotion, intensity, statement, repetition) of each clip an actor gets.
SPEECH_CLIPS = tuple(
    ("speech", e, 1 if e in (1, 2) or e % 2 else 2, 1 + e % 2, 1 + (e // 2) % 2) for e in range(1, 9)
)
SONG_CLIPS = (("song", 3, 2, 1, 1), ("song", 4, 1, 2, 2))


def make_example(actor: int, clip: tuple, audio_frames: int, rng: np.random.Generator) -> dict:
    """One example of every schema feature; audio has non-zero real frames after zero pre-padding."""
    channel, emotion, intensity, statement, repetition = clip
    length = int(rng.integers(audio_frames // 2, audio_frames + 6))
    real = min(length, audio_frames)
    audio = np.zeros((schema.NUM_MFCC, audio_frames, 1), np.float32)
    values = rng.standard_normal((schema.NUM_MFCC, real, 1)).astype(np.float32)
    values[values == 0] = 0.5  # zero means "padding or masked" to the tests
    audio[:, audio_frames - real :] = values
    clip_id = f"01-{1 if channel == 'speech' else 2:02d}-{emotion:02d}-{intensity:02d}-{statement:02d}-" + (
        f"{repetition:02d}-{actor:02d}"
    )
    return {
        "audio": audio,
        "video": rng.integers(0, 256, schema.VIDEO_SHAPE, dtype=np.uint8),
        "label": labels.label_from_emotion(emotion),
        "emotion": emotion,
        "audio_frames": length,
        "actor": actor,
        "gender": "male" if actor % 2 else "female",
        "intensity": intensity,
        "statement": statement,
        "repetition": repetition,
        "vocal_channel": channel,
        "clip_id": clip_id,
        "source": clip_id + ".mp4",
    }


def write_shards(
    out_dir: str,
    actors=range(1, 25),
    *,
    audio_frames: int = 20,
    song: bool = False,
    shards_per_actor: int = 2,
    schema_version: int = schema.SCHEMA_VERSION,
    seed: int = 0,
    clips_per_actor: int | None = None,
) -> tuple[dict, dict[str, dict]]:
    """Write shards, ``ravdess_info.json`` and the tensorflow_datasets metadata into ``out_dir``.

    Returns:
      (the info dict written, ``{clip_id: example dict}`` of every stored example).
    """
    import tensorflow as tf  # only for TFRecordWriter

    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    clips = (SPEECH_CLIPS + (SONG_CLIPS if song else ()))[:clips_per_actor]  # None: all
    truth: dict[str, dict] = {}
    shards = []
    per_actor, per_label, per_emotion = {}, {}, {}
    for actor in actors:
        examples = [make_example(actor, clip, audio_frames, rng) for clip in clips]
        parts = np.array_split(np.arange(len(examples)), shards_per_actor)
        for index, part in enumerate(parts):
            name = schema.shard_name(actor, index, len(parts))
            with tf.io.TFRecordWriter(os.path.join(out_dir, name)) as writer:
                for i in part:
                    writer.write(schema.serialize(examples[i], audio_frames))
            shards.append({"file": name, "actor": actor, "num_examples": len(part), "sha256": "",
                           "size": os.path.getsize(os.path.join(out_dir, name))})
        for ex in examples:
            truth[ex["clip_id"]] = ex
            per_actor[str(actor)] = per_actor.get(str(actor), 0) + 1
            per_label[str(ex["label"])] = per_label.get(str(ex["label"]), 0) + 1
            per_emotion[str(ex["emotion"])] = per_emotion.get(str(ex["emotion"]), 0) + 1
    info = {
        "name": "ravdess",
        "schema_version": schema_version,
        "version": "0.1.0",
        "class_names": list(labels.CLASS_NAMES),
        "num_classes": labels.NUM_CLASSES,
        "audio_frames": audio_frames,
        "audio_shape": list(schema.audio_shape(audio_frames)),
        "video_shape": list(schema.VIDEO_SHAPE),
        "preprocessing": {
            "sample_rate": 16000,
            "hop_length": 512,
            "n_mfcc": 24,
            "vocal_channels": ["speech", "song"] if song else ["speech"],
        },
        "num_examples": len(truth),
        "counts": {"per_actor": per_actor, "per_label": per_label, "per_emotion": per_emotion},
        "shards": shards,
        "summary": {"found": len(truth), "converted": len(truth), "skipped": {}},
        "failures": [],
    }
    for name, text in tfds_metadata.files(shards, audio_frames).items():
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write(text)
    with open(os.path.join(out_dir, schema.INFO_FILENAME), "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
    return info, truth
