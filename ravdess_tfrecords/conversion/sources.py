"""Finding clips: folders (searched recursively), ``Actor_NN/`` folders and zip files.

A zip member is copied to a temporary file only while its clip is processed,
so zips are never extracted whole. Inputs may be local or any ``tf.io.gfile``
path (``gs://bucket/ravdess``); a clip that is not local is copied to a local
temporary file while ffmpeg reads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator

from ravdess_tfrecords import storage

MEDIA_EXTENSIONS = (".mp4", ".wav", ".mov", ".avi", ".mkv", ".m4v")


@dataclasses.dataclass(frozen=True, order=True)
class Source:
    """One media file: on disk (``member`` None) or inside a zip.

    ``display`` names it in messages: a path relative to the input it was found
    under, with ``zip:member`` for zip members (never an absolute path).
    ``name`` names it in ``ravdess_info.json`` and ``failures.jsonl``: the same
    path with a zip standing for the folder it unpacks into
    (``Video_Speech_Actor_01.zip:Actor_01/x.mp4`` is ``Actor_01/x.mp4``), so a
    corpus gives the same output from folders or zips, wherever it lies.
    ``fingerprint`` changes when the content may have: size + mtime, or zip CRC.
    """

    display: str
    path: str
    member: str | None
    fingerprint: str

    @property
    def name(self) -> str:
        if self.member is None:
            return self.display
        archive = self.display[: -len(self.member) - 1]  # display is "zip:member"
        return os.path.normpath(os.path.join(os.path.dirname(archive), self.member))

    @property
    def basename(self) -> str:
        return os.path.basename(self.member if self.member else self.path)


def _is_media(name: str) -> bool:
    return name.lower().endswith(MEDIA_EXTENSIONS) and not os.path.basename(name).startswith("._")


def _zip_sources(path: str, display: str) -> list[Source]:
    with storage.open_file(path) as f, zipfile.ZipFile(f) as archive:
        return [
            Source(f"{display}:{info.filename}", path, info.filename, f"zip:{info.file_size}:{info.CRC:08x}")
            for info in archive.infolist()
            if not info.is_dir() and _is_media(info.filename)
        ]


def count_folders(inputs: list[str]) -> int:
    """How many folders ``discover`` searches under ``inputs`` (each input folder and every folder in it)."""
    return sum(len(list(storage.walk(root))) for root in inputs if storage.exists(root) and not storage.isfile(root))


def discover(inputs: list[str]) -> tuple[list[Source], list[tuple[str, str]]]:
    """All media files under ``inputs`` (files, folders or zips), sorted.

    Returns:
      (sources, problems): ``problems`` are ``(display, reason)`` for zips that
      cannot be opened.

    Raises:
      FileNotFoundError: an input path that does not exist.
    """
    sources, problems = [], []
    for root in inputs:
        if not storage.exists(root):
            raise FileNotFoundError(f"input {root!r} does not exist")
        if storage.isfile(root):
            files = [(root, os.path.basename(root))]
        else:
            files = []
            for folder, dirs, names in storage.walk(root):
                dirs.sort()
                for n in sorted(names):
                    full = os.path.join(folder, n)
                    files.append((full, os.path.relpath(full, root)))
        for full, display in files:
            if full.lower().endswith(".zip"):
                try:
                    sources.extend(_zip_sources(full, display))
                except (zipfile.BadZipFile, OSError) as e:
                    problems.append((display, f"cannot open zip ({e})"))
            elif _is_media(full):
                try:
                    size, mtime = storage.size_and_mtime(full)
                except OSError as e:
                    problems.append((display, f"cannot stat ({e.strerror})"))
                    continue
                sources.append(Source(display, full, None, f"file:{size}:{mtime}"))
    return sorted(sources), problems


@contextlib.contextmanager
def local_path(source: Source, tmp_dir: str | None = None) -> Iterator[str]:
    """A path ffmpeg can open: a local file itself, or a temporary copy of a zip member or a file
    that is not local (``tmp_dir`` local)."""
    if source.member is None and storage.is_local(source.path):
        yield source.path
        return
    suffix = os.path.splitext(source.basename)[1]
    fd, tmp = tempfile.mkstemp(prefix="ravdess-member-", suffix=suffix, dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as out, storage.open_file(source.path) as f:
            if source.member is None:
                shutil.copyfileobj(f, out, 1 << 20)
            else:
                with zipfile.ZipFile(f) as archive, archive.open(source.member) as member:
                    shutil.copyfileobj(member, out, 1 << 20)
        yield tmp
    finally:
        os.unlink(tmp)
