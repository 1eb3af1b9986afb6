"""The workaround that lets Keras 3's ``CSVLogger`` write ``history.csv`` under a ``tf.io.gfile`` URI.

For a URI (``gs://``, ``s3://``, ``file://``) ``keras.callbacks.CSVLogger`` opens
its file with ``keras.utils.file_utils.File``, which is TensorFlow's ``GFile``
(``FileIO``). In ``on_train_begin`` and ``on_train_end`` it then asks
``self.csv_file.closed``, an attribute ``FileIO`` does not have: a run with
``--model_dir=gs://...`` trains, then dies with ``AttributeError`` at the end of
``fit`` (Keras 3.15, TensorFlow 2.21).

``patch()`` gives ``FileIO`` the missing read-only ``closed`` property: a file is
closed when it holds neither a read buffer nor a writable file, which is what
``FileIO.close`` leaves (and what a file not yet read or written holds, so
closing it is not needed either). One property, nothing else changes. The canary in
``tests/test_model_dir_uri.py`` runs a ``CSVLogger`` on a ``file://`` path in a
fresh process without the patch and expects the ``AttributeError``: when
upstream fixes it the canary fails, and this module should go.
"""

from __future__ import annotations

from tensorflow.python.lib.io import file_io


def _closed(self: file_io.FileIO) -> bool:
    return self._read_buf is None and self._writable_file is None


def patch() -> None:
    """Give ``FileIO`` a ``closed`` property, unless it has one (idempotent)."""
    if not hasattr(file_io.FileIO, "closed"):
        file_io.FileIO.closed = property(_closed)
