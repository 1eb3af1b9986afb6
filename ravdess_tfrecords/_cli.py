"""What every command line of the project does before and around its ``main``.

* ``quiet_tensorflow()``, called before anything imports TensorFlow: on a machine
  without an NVIDIA GPU it imports TensorFlow with its start-up lines held back
  (cuInit errors, "All log messages before absl::InitializeLog()", oneDNN,
  cudart, CPU-instruction notes) and passes every other line through, so a real
  warning still shows. ``--verbose`` (or a GPU) leaves TensorFlow's output alone.
  Either way the import is ``import_tensorflow()``'s: without the packages TensorFlow
  and Keras load at import only because they are installed (``HELD_BACK``).
* ``require(*names)``: a flag left unset or empty is a user error, as below.
* ``user_errors(main)``: a user error out of ``main`` (a ``UserError`` raised by the
  code's own checks: a bad split, a model directory used with other settings; a
  missing or forbidden path; absl's ``UsageError``) becomes one ``error: ...`` line on
  stderr and exit status 2; ``--verbose`` shows the traceback. Any other exception
  is a bug or a runtime failure: its traceback, exit status 1. Before ``main`` it
  hides Python's INFO log lines (``quiet_logs``): TensorFlow's SavedModel export,
  absl's and Beam's chatter; warnings and errors stay.
* ``range_problem`` / ``check_ranges(ranges)``: a numeric flag outside its range
  (``{name: (low, high)}``, both ends included, None for no end; NaN and infinity
  never pass) is one ``error: flag --name=value: must be ...`` line and exit status 2
  when the flags are parsed, before ``main`` does any work.
* ``run(main)``: ``absl.app.run`` with that policy, and flag errors (a bad value, an
  unknown flag, a missing required one) as one ``error:`` line and exit status 2
  instead of absl's ``FATAL Flags parsing error`` and usage dump with status 1.

Why not only environment variables: TensorFlow 2.21 writes the first lines from
its shared libraries' static initializers, before it reads ``TF_CPP_MIN_LOG_LEVEL``,
and ``TF_ENABLE_ONEDNN_OPTS=0`` would turn off oneDNN itself, not just its notice.
So the import runs with file descriptor 2 sent to a temporary file, which is
then replayed without the known start-up lines.

This module imports only the standard library (and absl inside its functions),
so an entry point can import it first::

    from ravdess_tfrecords import _cli
    _cli.quiet_tensorflow()
    from absl import app, flags   # and then anything that imports TensorFlow
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import json
import logging
import math
import numbers
import os
import re
import sys
import tempfile
from collections.abc import Callable, Collection, Sequence

from ravdess_tfrecords.errors import UserError, UserOSError, tensorflow_missing

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
# What the code raises on purpose about what the user passed, and the OS errors of a path the user named.
USER_ERRORS = (UserError, UserOSError, FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError)
USER_ERROR_STATUS = 2  # a usage or user error
RUNTIME_ERROR_STATUS = 1  # anything else: a traceback


# What ``import tensorflow`` loads only because it is installed, for features no command of the project uses:
# Keras' scikit-learn wrappers (sklearn, ~0.5 CPU-s, there with librosa), ``keras.visualization``
# (matplotlib.pyplot, ~0.5) and TFLite's JAX converter (jax, ~0.4): 1.9 of the 4.8 CPU-s of the import here.
HELD_BACK = ("sklearn", "matplotlib", "jax")


def held_back(imported: Collection[str], keras_backend: str) -> list[str]:
    """The ``HELD_BACK`` packages ``import_tensorflow`` hides: those not ``imported`` yet, never the backend."""
    return [name for name in HELD_BACK if name not in imported and name != keras_backend]


def import_tensorflow():
    """``import tensorflow`` (and with it Keras) without the ``HELD_BACK`` packages; returns the module.

    Each package not imported yet is hidden while TensorFlow imports (``sys.modules[name] = None``: Keras and
    TFLite then take it for absent, as where it is not installed) and importable again as usual afterwards
    (the metrics' plots import matplotlib). The package that is the Keras backend (``KERAS_BACKEND=jax``) is
    never held back. After TensorFlow, Keras' sklearn wrappers, ``keras.visualization`` and TFLite's JAX
    conversion are unavailable in this process: an entry point's, which uses none of them.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    held = held_back(sys.modules, os.environ.get("KERAS_BACKEND", "tensorflow"))
    for name in held:
        sys.modules[name] = None
    try:
        import keras  # noqa: F401  (TensorFlow imports it already; here for sure while the packages are held back)
        import tensorflow as tf
    finally:
        for name in held:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return tf


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


def is_chief_task(tf_config: dict) -> bool:
    """Whether ``TF_CONFIG``'s task is the chief: the ``chief`` task, else worker 0 of a cluster without one."""
    cluster, task = tf_config["cluster"], tf_config["task"]
    if cluster.get("chief"):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and task.get("index") == 0


def other_worker(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks for ``--strategy=multi_worker`` and ``TF_CONFIG`` names a task other than the chief.

    Read here, before TensorFlow is imported, because TensorFlow reads its log level only once.
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
    return not is_chief_task(config)


def has_nvidia_gpu() -> bool:
    """An NVIDIA device node exists (``/dev/nvidia0``, ``/dev/nvidiactl``, ...)."""
    return bool(glob.glob("/dev/nvidia*"))


def filter_noise(text: str) -> str:
    """``text`` without the lines that contain a ``NOISE`` substring."""
    return "".join(line for line in text.splitlines(keepends=True) if not any(n in line for n in NOISE))


def quiet_tensorflow(argv: Sequence[str] | None = None, now: bool = True) -> bool:
    """Import TensorFlow without its start-up lines, unless ``--verbose`` or a GPU.

    Also sets ``TF_CPP_MIN_LOG_LEVEL=1`` (INFO off, warnings and errors kept) unless
    it is set already; ``2`` (errors only) on a worker of ``--strategy=multi_worker``
    other than the chief (``other_worker``): only the chief reports. The level is set on a GPU
    host too (only the start-up lines are left alone there: they say which GPU TensorFlow found).
    Call it before anything imports TensorFlow; a second call, or a call after TensorFlow is loaded,
    imports nothing.

    Without TensorFlow (the base or ``[grain]`` install), one ``error:`` line naming ``[tf]``, exit status 2.

    ``now=False``: only the check and the level; a later call imports (the converter's pass 1 needs no
    TensorFlow, so a run that ends there never pays its ~5 s of CPU).

    Returns:
      True if it imported TensorFlow quietly.
    """
    argv = sys.argv if argv is None else argv
    if "tensorflow" not in sys.modules and importlib.util.find_spec("tensorflow") is None:
        print(f"error: {tensorflow_missing('this command')}", file=sys.stderr, flush=True)
        raise SystemExit(USER_ERROR_STATUS)
    verbose = wants_verbose(argv)
    if not verbose:  # before the GPU check: on a GPU host TensorFlow's C++ INFO lines (placement, XLA) go too
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if other_worker(argv) else "1")
    if not now or "tensorflow" in sys.modules:
        return False
    if verbose or has_nvidia_gpu():  # its output left alone
        import_tensorflow()
        return False
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import_tensorflow().config.list_physical_devices()  # device discovery: where cuInit complains
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
    """Raise ``UserError`` naming the first of the absl flags ``names`` left empty."""
    from absl import flags

    for name in names:
        if not flags.FLAGS[name].value:
            raise UserError(f"--{name} is required ({flags.FLAGS[name].help})")


Range = tuple  # (low, high): both ends included, None for no end; int ends: a range of integers


def describe_range(low: float | None, high: float | None) -> str:
    """``"an integer >= 1"``, ``"a finite number in [0, 4]"``: the range ``[low, high]`` in words."""
    kind = "an integer" if _integer(low, high) else "a finite number"
    if low is not None and high is not None:
        return f"{kind} in [{low:g}, {high:g}]"
    if low is not None:
        return f"{kind} >= {low:g}"
    return f"{kind} <= {high:g}" if high is not None else kind


def _integer(low: float | None, high: float | None) -> bool:
    return all(isinstance(end, int) for end in (low, high) if end is not None)


def range_problem(value: object, low: float | None = None, high: float | None = None) -> str | None:
    """What is wrong with ``value`` for ``[low, high]``, e.g. ``"must be an integer >= 1"``; None if nothing.

    A range with int ends (``(1, None)``) takes integers only; one with a float end takes any finite
    number. Not a number (a bool included), NaN and infinity are always wrong.
    """
    kind = numbers.Integral if _integer(low, high) else numbers.Real
    if (not isinstance(value, kind) or isinstance(value, bool) or not math.isfinite(value)
            or (low is not None and value < low) or (high is not None and value > high)):
        return f"must be {describe_range(low, high)}"
    return None


def out_of_range(values: dict[str, object], ranges: dict[str, Range], prefix: str = "") -> str | None:
    """``"n_mels=0: must be an integer >= 24"`` for the first of ``values`` outside its range in ``ranges``
    (names ``prefix``-ed: ``"--"`` for flags); None if all are inside."""
    for name, value in values.items():
        problem = range_problem(value, *ranges[name])
        if problem:
            return f"{prefix}{name}={value!r}: {problem}"
    return None


def check_ranges(ranges: dict[str, Range]) -> None:
    """Register an absl validator for each flag of ``ranges`` (``{name: (low, high)}``, see ``range_problem``):
    a value outside it is a flag error when the flags are parsed (``parse_flags``: one
    ``error: flag --name=value: must be ...`` line, exit status 2), before ``main`` does any work."""
    from absl import flags

    for name, (low, high) in ranges.items():
        # None: a flag left unset (a default of None means "the model's", "none").
        flags.register_validator(name, lambda value, low=low, high=high: value is None
                                 or range_problem(value, low, high) is None,
                                 message=f"must be {describe_range(low, high)}")


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


_warnings_off = False  # errors_only(): this process prints no warning (a multi-worker run's other workers)


def errors_only() -> None:
    """From now on this process prints errors only: no Python warnings, no ``warning:`` lines
    (``print_warning``), Python log records below ERROR dropped (``quiet_logs``).

    For the workers of a multi-worker run other than the chief: they run the same code as the chief,
    so whatever they would say, the chief says too.
    """
    global _warnings_off
    import warnings

    _warnings_off = True
    warnings.simplefilter("ignore")
    quiet_logs(logging.ERROR)


def print_warning(message: object) -> None:
    """One ``warning: ...`` line on stderr (whitespace folded), unless ``errors_only`` was called."""
    if not _warnings_off:
        print(f"warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is the user's (``USER_ERRORS``, absl's ``UsageError``, TensorFlow's not-found or
    permission-denied on a path), not a bug or a runtime failure."""
    if isinstance(error, USER_ERRORS):
        return True
    app = sys.modules.get("absl.app")
    if app is not None and isinstance(error, app.UsageError):
        return True
    tf_errors = getattr(sys.modules.get("tensorflow"), "errors", None)
    return tf_errors is not None and isinstance(error, (tf_errors.NotFoundError, tf_errors.PermissionDeniedError))


def print_error(message: object) -> None:
    """One ``error: ...`` line on stderr: ``message`` with its whitespace (newlines too) folded."""
    text = " ".join(str(message).split())
    print(f"error: {text}", file=sys.stderr, flush=True)


def _verbose() -> bool:
    from absl import flags

    return "verbose" in flags.FLAGS and bool(flags.FLAGS["verbose"].value)


def _report_user_errors(main: Callable[[list[str]], int | None]) -> Callable[[list[str]], int | None]:
    """Wrap ``main``: a user error (``is_user_error``) prints one ``error:`` line and returns 2 (not with --verbose)."""
    if getattr(main, "_reports_user_errors", False):
        return main

    @functools.wraps(main)
    def wrapped(argv: list[str]) -> int | None:
        try:
            return main(argv)
        except Exception as e:  # noqa: BLE001 - anything else is re-raised: a traceback, exit status 1
            if not is_user_error(e) or _verbose():
                raise
            print_error(str(e) or type(e).__name__)
            return USER_ERROR_STATUS

    wrapped._reports_user_errors = True
    return wrapped


def user_errors(main: Callable[[list[str]], int | None]) -> Callable[[list[str]], int | None]:
    """Wrap an absl ``main``: a user error prints ``error: ...`` and returns 2, unless ``--verbose``.

    User errors are ``USER_ERRORS`` (the code's own checks, ``UserError``; a missing or forbidden path),
    absl's ``app.UsageError`` and TensorFlow's ``NotFoundError`` / ``PermissionDeniedError``. Anything
    else (an internal bug, a plain ``ValueError`` from a library) propagates: a traceback and exit status 1.
    Before ``main`` it hides Python's INFO log lines (``quiet_logs``) unless ``--verbose``.
    """
    reporting = _report_user_errors(main)

    @functools.wraps(main)
    def wrapped(argv: list[str]) -> int | None:
        if not _verbose():
            quiet_logs()
        return reporting(argv)

    wrapped._reports_user_errors = True
    return wrapped


def parse_flags(argv: list[str], known_only: bool = False) -> list[str]:
    """absl's flag parsing for ``run``: a bad value, an unknown or a missing required flag is one ``error:``
    line and exit status 2 (absl prints ``FATAL Flags parsing error`` and exits 1).

    ``known_only``: leave unknown flags in the returned argv for ``main`` to judge (the converter
    passes them to Apache Beam as pipeline options).
    """
    from absl import flags

    try:
        return flags.FLAGS(argv, known_only=known_only)
    except flags.Error as e:
        # absl's words for a required flag left out: "flag --x=None: Flag --x must have a value other than None."
        message = re.sub(r"^flag --(\w+)=None: Flag --\1 must have a value other than None\.?$", r"--\1 is required",
                         " ".join(str(e).split()))
        print_error(f"{message} (--help lists the flags)")
        sys.exit(USER_ERROR_STATUS)


def run(main: Callable[[list[str]], int | None], argv: list[str] | None = None, known_only: bool = False) -> None:
    """``absl.app.run(main)`` under the project's exit-status policy; every command line ends in this.

    * 0: done;
    * 2: a usage or user error, as one ``error: ...`` line on stderr: a flag absl cannot parse, an
      unknown flag, a required flag left out (``parse_flags``), an ``app.UsageError`` or a user error
      out of ``main`` (``user_errors``);
    * 1: a runtime failure: any other exception, with its traceback; or ``main`` returning 1.

    ``main`` may be wrapped in ``user_errors`` already (then its log settings apply); if not, user
    errors are still reported, but log levels are left alone. ``known_only``: see ``parse_flags``.
    """
    from absl import app

    app.run(_report_user_errors(main), argv=argv,
            flags_parser=functools.partial(parse_flags, known_only=known_only))
