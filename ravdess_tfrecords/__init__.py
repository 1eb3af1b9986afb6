"""ravdess-tfrecords: RAVDESS audio-visual emotion clips as sharded TFRecords.

Reading with tf.data (``pip install "ravdess-tfrecords[tf]"``)::

    import ravdess_tfrecords as rt
    ds = rt.load("/data/ravdess-tfrecords", split="train")   # ((audio, video), label)
    ds = rt.load(d, "train", augment_on="device")   # uint8 video for augment.with_augmentation(model)
    builder = rt.Builder("/data/ravdess-tfrecords"); builder.info
    rt.split_actors("chumachenko")   # {"train": (...), "validation": (...), "test": (...)}

Reading without TensorFlow (ArrayRecord shards; PyTorch, JAX, Grain)::

    src = rt.data_source("/data/ravdess-array_record", split="train")   # len(src), src[i]: dict of numpy

Writing: ``python -m ravdess_tfrecords.convert --input=RAVDESS_DIR --output=DIR``.

The reading API is imported lazily (PEP 562), so ``import ravdess_tfrecords``
is cheap and the converter's worker processes never load TensorFlow.
"""

from __future__ import annotations

import importlib

from ravdess_tfrecords import errors
from ravdess_tfrecords.labels import CLASS_NAMES, CLASS_NAMES_8, NUM_CLASSES

__version__ = "0.1.0"

_LAZY = {
    "Builder": "ravdess_tfrecords.reading.builder",
    "DatasetInfo": "ravdess_tfrecords.reading.info",
    "data_source": "ravdess_tfrecords.reading.data_source",
    "load": "ravdess_tfrecords.reading.builder",
    "split_actors": "ravdess_tfrecords.reading.splits",
}

__all__ = ["CLASS_NAMES", "CLASS_NAMES_8", "NUM_CLASSES", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        try:
            module = importlib.import_module(_LAZY[name])
        except ModuleNotFoundError as e:
            if e.name != "tensorflow":
                raise
            raise errors.tensorflow_missing(f"ravdess_tfrecords.{name} (tf.data)") from None
        return getattr(module, name)
    raise AttributeError(f"module 'ravdess_tfrecords' has no attribute {name!r}")
