"""The bundled ffmpeg binary (``imageio-ffmpeg``): probing and piping into numpy.

Every ffmpeg runs in its own session (a terminal's Ctrl-C reaches only the
Python process, which decides what to stop). It is not killed when the process
that started it dies (no death signal: see ``_CHILD``): an orphaned ffmpeg
dies at its next write to the dead process's pipe (SIGPIPE), so it outlives a
killed converter or worker by at most the decoding of the part of one clip it
was asked for (``max_clip_seconds`` bounds it).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import re
import signal
import subprocess
import sys
import threading
import time

from ravdess_tfrecords.conversion.errors import ClipError


@functools.lru_cache(maxsize=1)
def executable() -> str:
    """Path of the ffmpeg binary shipped by the ``imageio-ffmpeg`` wheel."""
    import imageio_ffmpeg

    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        # imageio-ffmpeg runs each candidate binary and takes any failure for a missing one: no file
        # handle left for the pipes (EMFILE) must stop the run as the machine's error, not "install ffmpeg".
        read, write = os.pipe()
        os.close(read)
        os.close(write)
        raise


@functools.lru_cache(maxsize=1)
def version() -> str:
    """The binary's ``ffmpeg -version`` first line (part of the converter's cache key)."""
    proc = subprocess.run([executable(), "-version"], capture_output=True, text=True, errors="replace", check=False)
    lines = proc.stdout.strip().splitlines()
    return lines[0].strip() if lines else _last_line(proc.stderr)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@functools.lru_cache(maxsize=1)
def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(owner_pid: int) -> None:
    """Make the calling process exit when its parent dies, however it dies, and now if ``owner_pid`` is gone.

    ``owner_pid``: the process it works for, which its parent outlives by nothing: the parent itself, or the
    process whose forkserver forked it (a forkserver exits when that process ends). Linux:
    ``PR_SET_PDEATHSIG`` (the kernel sends SIGKILL); elsewhere a daemon thread watches the parent PID.
    """
    parent = os.getppid()
    prctl = _prctl()
    if prctl is None or prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    try:
        os.kill(owner_pid, 0)
    except ProcessLookupError:  # it ended before this process started
        os._exit(1)


# How every ffmpeg is started: its own session, so Ctrl-C in the terminal lets the worker finish its clip.
# No preexec_fn (a death signal armed in the child): Python code between fork and exec can deadlock in a
# process with other threads (the frame-decoding thread here, gRPC's on a Beam worker). An orphaned
# ffmpeg ends on its own: its stdin is /dev/null and its next write to the dead worker's pipe kills it (SIGPIPE).
_CHILD = {"start_new_session": True}


@dataclasses.dataclass(frozen=True)
class Probe:
    """What ffmpeg says of a media file. ``fps``/``width``/``height`` are 0 without video."""

    duration: float
    has_audio: bool
    has_video: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #.*?Video:.*?, (\d{2,5})x(\d{2,5})[,\s].*?(\d+(?:\.\d+)?) (?:fps|tbr)")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def parse_probe(stderr: str) -> Probe:
    """Read duration and streams from the header ``ffmpeg -i`` prints (no ffprobe in the wheel).

    Raises:
      ClipError: ``unreadable`` when the header is not there.
    """
    duration = _DURATION.search(stderr)
    if "Stream #" not in stderr or duration is None:
        raise ClipError("unreadable", f"ffmpeg cannot read it ({_last_line(stderr)})")
    h, m, s = duration.groups()
    video = _VIDEO.search(stderr)
    return Probe(
        duration=int(h) * 3600 + int(m) * 60 + float(s),
        has_audio=re.search(r"Stream #.*?Audio:", stderr) is not None,
        has_video=video is not None,
        width=int(video.group(1)) if video else 0,
        height=int(video.group(2)) if video else 0,
        fps=float(video.group(3)) if video else 0.0,
    )


def probe(path: str) -> Probe:
    """Duration and streams of a media file.

    Raises:
      ClipError: ``unreadable`` when ffmpeg cannot open or parse the file.
    """
    proc = subprocess.run([executable(), "-hide_banner", "-nostdin", "-i", path],
                          capture_output=True, text=True, errors="replace", check=False, **_CHILD)
    return parse_probe(proc.stderr)


def run_with_probe(args: list[str]) -> tuple[Probe, bytes, int]:
    """Run ``ffmpeg -i ...`` once, returning the input's probe, stdout and the exit code.

    Saves a separate probe process per clip: the header ffmpeg prints anyway is parsed.
    """
    proc = subprocess.run([executable(), "-hide_banner", "-nostdin", *args], capture_output=True, check=False,
                          **_CHILD)
    return parse_probe(proc.stderr.decode(errors="replace")), proc.stdout, proc.returncode


def run_to_bytes(args: list[str], what: str) -> bytes:
    """Run ffmpeg with ``args`` writing to stdout; return stdout.

    Raises:
      ClipError: ``unreadable`` with ffmpeg's last stderr line.
    """
    proc = subprocess.run(
        [executable(), "-hide_banner", "-nostdin", "-loglevel", "error", *args],
        capture_output=True, check=False, **_CHILD,
    )
    if proc.returncode != 0:
        detail = _last_line(proc.stderr.decode(errors="replace"))
        raise ClipError("unreadable", f"ffmpeg failed decoding {what} ({detail})")
    return proc.stdout


def open_pipe(args: list[str]) -> subprocess.Popen:
    """Start ffmpeg writing to a stdout pipe, to read while it decodes; stderr goes to the void."""
    return subprocess.Popen([executable(), "-hide_banner", "-nostdin", "-loglevel", "error", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, **_CHILD)
