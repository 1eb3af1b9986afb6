"""Paths on the local disk or on any filesystem ``tf.io.gfile`` knows (``gs://``, ``s3://``, ``file://``).

The one storage layer of the project: the converter's output and cache, and
everything the trainers read from or write to ``--model_dir`` (config, history,
metrics, plots, CV tables) go through it. Local paths go through ``os``, whose
``OSError`` carries the errno that tells a full disk from a bad clip
(``conversion.errors.is_machine_error``). Other paths go through
``tf.io.gfile``, imported only then, and its errors become ``OSError`` with the
matching errno, so callers treat both alike. Single files are written whole or
not at all (``atomic_path``): a temporary file, then a rename (local) or an
upload of the finished file (an object store shows an object only once complete).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator

from ravdess_tfrecords import errors


def is_local(path: str) -> bool:
    """A path of the local filesystem (no ``scheme://``)."""
    return "://" not in path


def expand(path: str) -> str:
    """``path`` with a leading ``~`` expanded (a flag's ``--x=~/y`` reaches us unexpanded); URIs as they are."""
    return os.path.expanduser(path) if is_local(path) else path


def _tf():
    """TensorFlow, for a path that is a URI; without it (the base or [grain] install), one clear line."""
    try:
        import tensorflow as tf
    except ModuleNotFoundError as e:
        if e.name != "tensorflow":
            raise
        raise errors.tensorflow_missing("a URI path (gs://, s3://, ..., read through tf.io.gfile)") from None
    return tf


def _gfile():
    return _tf().io.gfile


@contextlib.contextmanager
def tf_errors_as_os(path: str) -> Iterator[None]:
    """Turn TensorFlow's file errors, which are not ``OSError``, into ``OSError`` with their errno."""
    tf = _tf()

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


def isdir(path: str) -> bool:
    if is_local(path):
        return os.path.isdir(path)
    return _gfile().isdir(path)


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


def copy(src: str, dst: str) -> None:
    """Copy one file, either side local or not; ``dst`` is written whole or not at all."""
    if is_local(src) and is_local(dst):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return
    with tf_errors_as_os(src), atomic_path(dst) as tmp:
        _gfile().copy(src, tmp, overwrite=True)


def copytree(src: str, dst: str) -> None:
    """Copy the folder ``src`` (any filesystem) to ``dst`` (any filesystem), file by file."""
    for folder, _, names in walk(src):
        target = dst.rstrip("/") + folder[len(src.rstrip("/")):]  # walk's folders start with src
        makedirs(target)
        for name in names:
            copy(os.path.join(folder, name), os.path.join(target, name))


def copytree_whole(src: str, dst: str) -> None:
    """Replace the folder ``dst`` by a copy of ``src``, whole or not at all.

    The copy goes to the sibling ``dst.partial`` (left over by a killed copy: removed first), which is then
    renamed onto ``dst``: a kill leaves ``dst`` as it was, or no ``dst``, never a part of ``src``. Atomic on
    a local filesystem; an object store renames file by file.
    """
    partial = dst.rstrip("/") + ".partial"
    remove_any(partial)
    copytree(src, partial)
    remove_any(dst)
    replace(partial, dst)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a local temporary path for ``path``'s content; on success it becomes ``path`` whole.

    Local: a hidden file beside ``path``, renamed onto it. Elsewhere: a local
    temporary file, uploaded on success. On any error the temporary file is
    removed and ``path`` is untouched.
    """
    if is_local(path):
        tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp-{os.getpid()}")
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-")
        os.close(fd)
    try:
        yield tmp
        if is_local(path):
            os.replace(tmp, path)
        else:
            copy_to(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (``atomic_path``)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (``atomic_path``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def read_text(path: str) -> str:
    """The UTF-8 text of a file.

    Raises:
      FileNotFoundError (an ``OSError``): no such file.
    """
    if is_local(path):
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    with tf_errors_as_os(path), _gfile().GFile(path, "r") as f:
        return f.read()


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


def remove_any(path: str) -> None:
    """Remove a file or a folder tree at ``path``, if there is one."""
    if isdir(path):
        rmtree(path)
    elif exists(path):
        remove(path)


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
