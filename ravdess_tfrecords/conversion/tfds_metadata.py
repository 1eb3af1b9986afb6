"""The metadata tensorflow_datasets needs to read a converted directory, written without tensorflow_datasets.

With these files beside the shards, ``tfds.builder_from_directory(OUTPUT)`` loads
the directory: one split per actor (``actor01`` .. ``actor24``, so ``"actor01+actor02"``
and slices like ``"actor03[:50%]"`` work) and every stored feature
(``schema.FEATURES``) declared as a tfds feature that parses our records unchanged:

=====================  ============================================================
stored                 tfds feature
=====================  ============================================================
``audio``, ``video``   ``Tensor(shape, dtype, encoding="bytes")``: one bytes value,
                       ``decode_raw`` little-endian, reshaped (our raw layout)
``label``              ``ClassLabel(names=labels.CLASS_NAMES)`` (``label.labels.txt``)
int features           ``Tensor(shape=(), dtype=int64)``
str features           ``Text()``
=====================  ============================================================

``as_supervised=True`` yields ``((audio, video), label)``, as ``rt.load`` does; for an
audio-only dataset (``modality`` ``audio``: no ``video`` feature) ``(audio, label)``.

The files are what ``tfds.folder_dataset.write_metadata`` writes for the same
features and splits, byte for byte (tests/test_tfds.py checks that with the real
tensorflow_datasets), built here from the schema with ``json`` alone: the
converter needs no tensorflow_datasets, and the bytes depend only on the shard
list and M, so a conversion stays byte-deterministic.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping

from ravdess_tfrecords import labels, schema

# tensorflow_datasets' default file template; schema.shard_name follows it.
FILEPATH_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
HOMEPAGE = "https://zenodo.org/record/1188976"
CITATION = """@article{livingstone2018ravdess,
  title={The Ryerson Audio-Visual Database of Emotional Speech and Song (RAVDESS): A dynamic, multimodal set of
facial and vocal expressions in North American English},
  author={Livingstone, Steven R. and Russo, Frank A.},
  journal={PLoS ONE},
  volume={13},
  number={5},
  pages={e0196391},
  year={2018},
  doi={10.1371/journal.pone.0196391}
}"""
def supervised_keys(modality: str = schema.DEFAULT_MODALITY):
    """``as_supervised=True``'s ``(inputs, "label")``: ``(("audio", "video"), "label")``, or ``("audio", "label")``
    for an audio-only dataset (what ``rt.load`` yields)."""
    names = schema.input_names(modality)
    return (names if len(names) > 1 else names[0], "label")


_CLASS = "tensorflow_datasets.core.features."
_TENSOR = _CLASS + "tensor_feature.Tensor"


def version() -> str:
    """The tfds dataset version: the schema version, as tfds wants ``x.y.z``."""
    return f"{schema.SCHEMA_VERSION}.0.0"


def _tensor(shape: Iterable[int], dtype: str, encoding: str) -> dict:
    # tfds writes int64 proto fields as JSON strings.
    dims = [str(d) for d in shape]
    return {"pythonClassName": _TENSOR,
            "tensor": {"dtype": dtype, "encoding": encoding, "shape": {"dimensions": dims} if dims else {}}}


def feature(name: str, audio_frames: int) -> dict:
    """The tfds feature (its ``features.json`` entry) that reads stored feature ``name``."""
    spec = schema.FEATURES[name]
    if spec.kind == "tensor":
        shape = schema.audio_shape(audio_frames) if name == "audio" else schema.VIDEO_SHAPE
        return _tensor(shape, spec.dtype.name, "bytes")
    if name == "label":
        return {"classLabel": {"numClasses": str(labels.NUM_CLASSES)},
                "pythonClassName": _CLASS + "class_label_feature.ClassLabel"}
    if spec.kind == "int":
        return _tensor((), "int64", "none")
    return {"pythonClassName": _CLASS + "text_feature.Text", "text": {}}


def features_json(audio_frames: int, modality: str = schema.DEFAULT_MODALITY) -> dict:
    """``features.json``: a ``FeaturesDict`` of every stored feature of a ``modality`` dataset."""
    stored = schema.features(modality)
    return {"featuresDict": {"features": {name: feature(name, audio_frames) for name in stored}},
            "pythonClassName": _CLASS + "features_dict.FeaturesDict"}


def _supervised_keys(keys) -> dict:
    if isinstance(keys, str):
        return {"featureKey": keys}
    return {"tuple": {"items": [_supervised_keys(k) for k in keys]}}


def dataset_info_json(shards: Iterable[Mapping], audio_frames: int, modality: str = schema.DEFAULT_MODALITY,
                      file_format: str = schema.DEFAULT_FILE_FORMAT) -> dict:
    """tfds' ``dataset_info.json`` for the shards of ``ravdess_info.json`` (``file``, ``actor``,
    ``num_examples``, ``size``): one split per actor, its shards in file order; ``fileFormat`` is tfds'
    ``FileFormat`` value, ``tfrecord`` or ``array_record`` (``schema.FILE_FORMATS`` uses its names)."""
    by_actor = itertools.groupby(sorted(shards, key=lambda s: (s["actor"], s["file"])), key=lambda s: s["actor"])
    splits = []
    for actor, group in by_actor:
        group = list(group)
        splits.append({"filepathTemplate": FILEPATH_TEMPLATE, "name": schema.split_name(actor),
                       "numBytes": str(sum(s["size"] for s in group)),
                       "shardLengths": [str(s["num_examples"]) for s in group]})
    return {
        "citation": CITATION,
        "description": description(audio_frames, modality),
        "fileFormat": schema.check_file_format(file_format),
        "location": {"urls": [HOMEPAGE]},
        "name": schema.SHARD_PREFIX,
        "splits": splits,
        "supervisedKeys": _supervised_keys(supervised_keys(modality)),
        "version": version(),
    }


def description(audio_frames: int, modality: str = schema.DEFAULT_MODALITY) -> str:
    audio = "x".join(map(str, schema.audio_shape(audio_frames)))
    video = "x".join(map(str, schema.VIDEO_SHAPE))
    what, faces = ("audio-visual clips", f"video: face crops uint8 {video}; ")
    if modality == "audio":
        what, faces = "audio-only recordings (no video)", ""
    return (f"RAVDESS {what} converted by ravdess_tfrecords: one split per actor (actor01..actor24); "
            f"audio: standardized MFCCs float32 {audio}; {faces}"
            f"label: {labels.NUM_CLASSES} classes (neutral and calm merged), emotion: the corpus code 1..8.")


def files(shards: Iterable[Mapping], audio_frames: int, modality: str = schema.DEFAULT_MODALITY,
          file_format: str = schema.DEFAULT_FILE_FORMAT) -> dict[str, str]:
    """``{file name: content}`` of the tfds metadata files, formatted as tfds formats them."""
    info = dataset_info_json(shards, audio_frames, modality, file_format)
    return {
        schema.TFDS_INFO_FILENAME: json.dumps(info, indent=2, sort_keys=True),
        schema.TFDS_FEATURES_FILENAME: json.dumps(features_json(audio_frames, modality), indent=4, sort_keys=True),
        schema.TFDS_LABELS_FILENAME: "".join(f"{name}\n" for name in labels.CLASS_NAMES),
    }
