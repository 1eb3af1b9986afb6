"""What every command line of the project does before and around its ``main``.

* ``quiet_tensorflow()``, called before anything imports TensorFlow: on a machine
  without an NVIDIA GPU it imports TensorFlow with its start-up lines held back
  (cuInit errors, "All log messages before absl::InitializeLog()", oneDNN,
  cudart, CPU-instruction notes) and passes every other line through, so a real
  warning still shows. ``--verbose`` (or a GPU) leaves TensorFlow's output alone.
* ``require(*names)``: a flag left unset or empty is a user error, as below.
* ``user_errors(main)``: a ``ValueError`` or ``OSError`` out of ``main`` (a missing
  directory, a bad split, a model directory used with other settings) becomes one
  ``error: ...`` line on stderr and exit status 2; ``--verbose`` shows the traceback.
  Before ``main`` it hides Python's INFO log lines (``quiet_logs``): TensorFlow's
  SavedModel export, absl's and Beam's chatter; warnings and errors stay.

Why not only environment variables: TensorFlow 2.21 writes the first lines from
its shared libraries' static initializers, before it reads ``TF_CPP_MIN_LOG_LEVEL``,
and ``TF_ENABLE_ONEDNN_OPTS=0`` would turn off oneDNN itself, not just its notice.
So the import runs with file descriptor 2 sent to a temporary file, which is
then replayed without the known start-up lines.

This module imports only the standard library (and absl inside ``user_errors``),
so an entry point can import it first::

    from ravdess_tfrecords import _cli
    _cli.quiet_tensorflow()
    from absl import app, flags   # and then anything that imports TensorFlow
"""

from __future__ import annotations

import functools
import glob
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence

# Substrings of TensorFlow's start-up lines that are harmless on a machine without a GPU.
NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
)

VERBOSE_HELP = "Show TensorFlow's start-up log and the traceback of an error."
USER_ERRORS = (ValueError, OSError)  # FileNotFoundError is an OSError
USER_ERROR_STATUS = 2


def wants_verbose(argv: Sequence[str]) -> bool:
    """Whether ``argv`` switches absl's boolean ``--verbose`` on (``--verbose``, ``--verbose=true``)."""
    on = False
    for arg in argv[1:]:
        if arg == "--":
            break
        if not arg.startswith("-"):
            continue
        name, _, value = arg.lstrip("-").partition("=")
        if name == "verbose":
            on = value.lower() not in ("false", "f", "0", "no", "n") if value else True
        elif name == "noverbose":
            on = False
    return on


def other_worker(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks for ``--strategy=multi_worker`` and ``TF_CONFIG`` names a task other than the chief.

    The chief is the ``chief`` task, else worker 0 (as ``trainers.cluster.is_chief_task``); read
    here, before TensorFlow is imported, because TensorFlow reads its log level only once.
    """
    args = list(argv[1:])
    multi_worker = any(a == "--strategy=multi_worker" or (a == "--strategy" and args[i + 1:i + 2] == ["multi_worker"])
                       for i, a in enumerate(args))
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        cluster, task = config["cluster"], config["task"]
    except (ValueError, KeyError, TypeError):
        return False
    if not multi_worker or not isinstance(cluster, dict) or not isinstance(task, dict):
        return False
    if cluster.get("chief"):
        return task.get("type") != "chief"
    return not (task.get("type") == "worker" and task.get("index") == 0)


def has_nvidia_gpu() -> bool:
    """An NVIDIA device node exists (``/dev/nvidia0``, ``/dev/nvidiactl``, ...)."""
    return bool(glob.glob("/dev/nvidia*"))


def filter_noise(text: str) -> str:
    """``text`` without the lines that contain a ``NOISE`` substring."""
    return "".join(line for line in text.splitlines(keepends=True) if not any(n in line for n in NOISE))


def quiet_tensorflow(argv: Sequence[str] | None = None) -> bool:
    """Import TensorFlow without its start-up lines, unless ``--verbose`` or a GPU.

    Also sets ``TF_CPP_MIN_LOG_LEVEL=1`` (INFO off, warnings and errors kept) unless
    it is set already; ``2`` (errors only) on a worker of ``--strategy=multi_worker``
    other than the chief (``other_worker``): only the chief reports. Call it before
    anything imports TensorFlow; a second call, or a call after TensorFlow is loaded, does nothing.

    Returns:
      True if it imported TensorFlow quietly.
    """
    argv = sys.argv if argv is None else argv
    if wants_verbose(argv) or has_nvidia_gpu() or "tensorflow" in sys.modules:
        return False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if other_worker(argv) else "1")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # device discovery: where cuInit complains
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            sys.stderr.write(filter_noise(held.read().decode("utf-8", errors="replace")))
            sys.stderr.flush()
    return True


def define_main_flags(define: Callable[[], None]) -> None:
    """Run ``define`` (a module's ``DEFINE_*`` calls) and make its flags the program's own in ``--help``.

    absl's ``--help`` lists the flags of the module it runs as ``__main__``; a
    command whose flags live in another module (``python -m ravdess_tfrecords.convert``
    runs a thin entry point, a console script runs a generated one) would list none.
    """
    from absl import flags

    before = set(flags.FLAGS)
    define()
    for name in sorted(set(flags.FLAGS) - before):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])


def require(*names: str) -> None:
    """Raise ``ValueError`` (a user error) naming the first of the absl flags ``names`` left empty."""
    from absl import flags

    for name in names:
        if not flags.FLAGS[name].value:
            raise ValueError(f"--{name} is required ({flags.FLAGS[name].help})")


def quiet_logs(level: int = logging.WARNING) -> None:
    """Drop Python log records below ``level`` (``logging.WARNING``, ``ERROR``): absl's and TensorFlow's.

    TensorFlow logs its SavedModel export (``Assets written to``, signature renames)
    and MultiWorkerMirroredStrategy its devices and every collective it builds, at
    INFO through the ``tensorflow`` logger. That logger also has its own handler when
    TensorFlow was imported before absl set up the root one, so each record printed
    twice: it no longer propagates to the root then.
    """
    from absl import logging as absl_logging

    absl_logging.set_verbosity(logging.getLevelName(level).lower())  # absl's own scale: by name
    tf_logger = logging.getLogger("tensorflow")
    tf_logger.setLevel(level)
    if tf_logger.handlers and logging.root.handlers:
        tf_logger.propagate = False


def user_errors(main: Callable[[list[str]], int | None]) -> Callable[[list[str]], int | None]:
    """Wrap an absl ``main``: ``USER_ERRORS`` print ``error: ...`` and return 2, unless ``--verbose``."""

    @functools.wraps(main)
    def wrapped(argv: list[str]) -> int | None:
        from absl import flags

        if not ("verbose" in flags.FLAGS and flags.FLAGS.verbose):
            quiet_logs()
        try:
            return main(argv)
        except USER_ERRORS as e:
            if "verbose" in flags.FLAGS and flags.FLAGS.verbose:
                raise
            message = " ".join(str(e).split()) or type(e).__name__
            print(f"error: {message}", file=sys.stderr, flush=True)
            return USER_ERROR_STATUS

    return wrapped
