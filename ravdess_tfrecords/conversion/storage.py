"""Paths on the local disk or on any filesystem ``tf.io.gfile`` knows (``gs://``, ``s3://``, ``hdfs://``).

Local paths go through ``os``, whose ``OSError`` carries the errno that tells a
full disk from a bad clip (``errors.is_machine_error``). Other paths go through
``tf.io.gfile``, imported only then, and its errors become ``OSError`` with the
matching errno, so the converter treats both alike.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator


def is_local(path: str) -> bool:
    """A path of the local filesystem (no ``scheme://``)."""
    return "://" not in path


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


@contextlib.contextmanager
def tf_errors_as_os(path: str) -> Iterator[None]:
    """Turn TensorFlow's file errors, which are not ``OSError``, into ``OSError`` with their errno."""
    import tensorflow as tf

    codes = ((tf.errors.NotFoundError, errno.ENOENT), (tf.errors.ResourceExhaustedError, errno.ENOSPC),
             (tf.errors.PermissionDeniedError, errno.EACCES))
    try:
        yield
    except tuple(cls for cls, _ in codes) as e:
        code = next(c for cls, c in codes if isinstance(e, cls))
        raise OSError(code, e.message.splitlines()[0] if e.message else os.strerror(code), path) from e


def exists(path: str) -> bool:
    if is_local(path):
        return os.path.exists(path)
    return _gfile().exists(path)


def isfile(path: str) -> bool:
    if is_local(path):
        return os.path.isfile(path)
    return _gfile().exists(path) and not _gfile().isdir(path)


def walk(root: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk``: ``(folder, subfolders, files)``, top-down; sorting ``subfolders`` in place orders the walk."""
    if is_local(root):
        yield from os.walk(root)
        return
    with tf_errors_as_os(root):
        yield from _gfile().walk(root)


def size_and_mtime(path: str) -> tuple[int, int]:
    """Bytes and modification time (ns) of a file."""
    if is_local(path):
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    with tf_errors_as_os(path):
        st = _gfile().stat(path)
    return st.length, st.mtime_nsec


def open_file(path: str, mode: str = "rb"):
    """A file object (seekable for reading, as ``zipfile`` needs)."""
    if is_local(path):
        return open(path, mode)  # noqa: SIM115 -- the caller closes it
    return _gfile().GFile(path, mode)


def copy_to(local: str, path: str) -> None:
    """Upload a finished local file to ``path`` (an object store shows it only once complete)."""
    with tf_errors_as_os(path):
        _gfile().copy(local, path, overwrite=True)


def replace(src: str, dst: str) -> None:
    """Rename ``src`` onto ``dst`` (atomic on a local filesystem; copy + delete on an object store)."""
    if is_local(src):
        os.replace(src, dst)
        return
    with tf_errors_as_os(src):
        _gfile().rename(src, dst, overwrite=True)


def remove(path: str) -> None:
    if is_local(path):
        os.unlink(path)
        return
    with tf_errors_as_os(path):
        _gfile().remove(path)


def makedirs(path: str) -> None:
    if is_local(path):
        os.makedirs(path, exist_ok=True)
        return
    with tf_errors_as_os(path):
        _gfile().makedirs(path)


def rmtree(path: str) -> None:
    """Remove a folder and everything under it, if it exists."""
    if is_local(path):
        shutil.rmtree(path, ignore_errors=True)
    elif _gfile().exists(path):
        with tf_errors_as_os(path):
            _gfile().rmtree(path)


def glob(pattern: str) -> list[str]:
    if is_local(pattern):
        import glob as glob_module

        return glob_module.glob(pattern)
    with tf_errors_as_os(pattern):
        return _gfile().glob(pattern)
