"""The command lines' manners: one ``error:`` line for user errors, no TensorFlow start-up noise, documented flags.

The subprocess tests run ``python -m trainers.*`` without ``TF_CPP_MIN_LOG_LEVEL``
(which conftest sets for everything else), as a user would.
"""

from __future__ import annotations

import ast
import concurrent.futures
import json
import os
import re
import subprocess
import sys

import helpers
import pytest

from ravdess_tfrecords import _cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_GPU = not _cli.has_nvidia_gpu()


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS``, whose last stdout line says whether it imported TensorFlow."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([*helpers.python_m_telling_tensorflow(module), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------------------------------ the module


def test_cli_module_imports_no_tensorflow():
    code = ("import sys; from ravdess_tfrecords import _cli; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "argv, verbose",
    [
        ([], False),
        (["--verbose"], True),
        (["--verbose=true"], True),
        (["-verbose"], True),
        (["--verbose=false"], False),
        (["--verbose", "--noverbose"], False),
        (["--model_dir=x", "--verbose=1"], True),
        (["--verbose_thing"], False),
        (["--", "--verbose"], False),
        (["clip--verbose.mp4"], False),
    ],
)
def test_wants_verbose(argv, verbose):
    assert _cli.wants_verbose(["prog", *argv]) is verbose


def test_filter_noise_drops_start_up_lines_and_keeps_real_warnings():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. You may see slightly different numbers.\n"
        "I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n"
        "E0000 00:00:1.0 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: (303)\n"
        "W0000 00:00:1.0 1 op_kernel.cc:1] OP_REQUIRES failed: a real problem\n"
        "/x.py:3: DeprecationWarning: old thing\n"
    )
    assert _cli.filter_noise(text) == (
        "W0000 00:00:1.0 1 op_kernel.cc:1] OP_REQUIRES failed: a real problem\n/x.py:3: DeprecationWarning: old thing\n"
    )


# ------------------------------------------------------------------------------------------ user errors


def _other_settings_dir(tmp_path) -> str:
    """A model directory whose config.json holds another learning rate."""
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    from trainers import train_lib

    config = train_lib.TrainConfig(str(tmp_path), str(model_dir), learning_rate=0.5)
    (model_dir / "config.json").write_text(json.dumps(config.to_json()))
    return str(model_dir)


CASES = {
    "missing data_dir": ("trainers.fit", ["--data_dir={tmp}/nowhere", "--model_dir={tmp}/run"],
                         "RAVDESS TFRecord directory '{tmp}/nowhere' does not exist"),
    "empty data_dir": ("trainers.fit", ["--data_dir=", "--model_dir={tmp}/run"], "--data_dir is required"),
    "unknown actor": ("trainers.fit", ["--data_dir={data}", "--model_dir={tmp}/run", "--train_actors=1,2",
                                       "--validation_actors=3", "--test_actors=99"], "99"),
    "actor not a number": ("trainers.fit", ["--data_dir={data}", "--model_dir={tmp}/run", "--train_actors=1,x",
                                            "--validation_actors=3", "--test_actors=4"], "--train_actors: 'x'"),
    "other settings": ("trainers.fit", ["--data_dir={data}", "--model_dir={other}"], "learning_rate: 0.5 -> 0.001"),
    "strategy flags disagree": ("trainers.fit", ["--data_dir={data}", "--model_dir={tmp}/run", "--strategy=mirrored",
                                                 "--distribution_strategy=default"], "disagree"),
    "no dispatcher": ("trainers.fit", ["--data_dir={data}", "--model_dir={tmp}/run", "--data_service=grpc://localhost:1",
                                       "--data_service_timeout=1"],
                      "no tf.data service dispatcher answered at grpc://localhost:1 within --data_service_timeout=1 s"),
    # The recipe flags reach TrainConfig, whose check says what is wrong before anything is read.
    "bad label smoothing": ("trainers.fit", ["--data_dir={data}", "--model_dir={tmp}/run", "--label_smoothing=1"],
                            "label_smoothing must be in [0, 1), got 1.0"),
    "bad steps per execution": ("trainers.fit", ["--data_dir={data}", "--model_dir={tmp}/run",
                                                 "--steps_per_execution=0"],
                                "flag --steps_per_execution=0: must be an integer >= 1"),
    "evaluate: no model": ("trainers.evaluate", ["--model_dir={tmp}/run"], "model.keras not found"),
    "predict: no model": ("trainers.predict", ["--model_dir={tmp}/run", "clip.mp4"], "model.keras not found"),
    # absl's flag errors: one line and 2, not "FATAL Flags parsing error" + a usage dump and 1 (_cli.run).
    "bad flag value": ("trainers.fit", ["--data_dir={data}", "--model_dir={tmp}/run", "--epochs=x"],
                       "flag --epochs=x: invalid literal for int()"),
    "evaluate: unknown flag": ("trainers.evaluate", ["--model_dir={tmp}/run", "--bogus=1"],
                               "Unknown command line flag 'bogus'"),
    "predict: no clips": ("trainers.predict", ["--model_dir={tmp}/run"], "name at least one clip"),
    # The converter too: a user error is 2; a run that fails (no clip converted, a full disk) is 1.
    "convert: no input": ("ravdess_tfrecords.convert", ["--input={tmp}/nowhere", "--output={tmp}/out"],
                          "input '{tmp}/nowhere' does not exist"),
    "convert: bad vocal channel": ("ravdess_tfrecords.convert", ["--input={tmp}", "--output={tmp}/out",
                                                                 "--vocal_channels=sung"], "unknown vocal channel"),
    # A pretrained visual branch (issue 17): the weights file is checked when the model is built, before any write.
    "visual weights missing": ("trainers.fit", ["--data_dir={data}", "--model_dir={tmp}/run",
                                                "--visual_weights={tmp}/face.weights.h5"],
                               "--visual_weights: no such file: {tmp}/face.weights.h5"),
    "freeze without weights": ("trainers.fit", ["--data_dir={data}", "--model_dir={tmp}/run", "--freeze_epochs=3"],
                               "a frozen random backbone learns nothing"),
}
# The one user error found only with TensorFlow loaded; every other is found before it loads (~4 CPU-s).
NEEDS_TENSORFLOW = {"no dispatcher"}
# Started together, a few at a time: each is a process that imports TensorFlow (~4 s of CPU), and one after
# the other they took over a minute of the suite.
CONCURRENT_RUNS = 4


@pytest.fixture(scope="module")
def user_error_runs(tfrecords_dir, tmp_path_factory):
    """``{case: (process, fill)}``: every ``CASES`` command run once, in its own temporary folder."""
    runs = {}
    for case, (module, args, _) in CASES.items():
        tmp = tmp_path_factory.mktemp("case")
        other = _other_settings_dir(tmp) if case == "other settings" else ""
        fill = {"tmp": str(tmp), "data": tfrecords_dir, "other": other}
        runs[case] = (module, [a.format(**fill) for a in args], fill)
    with concurrent.futures.ThreadPoolExecutor(CONCURRENT_RUNS) as pool:
        procs = {case: pool.submit(_run, module, *args) for case, (module, args, _) in runs.items()}
        return {case: (procs[case].result(), runs[case][2]) for case in runs}


@pytest.mark.parametrize("case", list(CASES))
def test_user_errors_are_one_line_and_exit_2(case, user_error_runs):
    module, _, expected = CASES[case]
    proc, fill = user_error_runs[case]
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert lines[-1].startswith("error: ") and expected.format(**fill) in lines[-1], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.splitlines()[-1] == f"tensorflow imported: {case in NEEDS_TENSORFLOW}", proc.stdout
    if NO_GPU:  # nothing else: TensorFlow's start-up lines are held back too
        assert len(lines) == 1, proc.stderr
    if module == "trainers.fit" and case != "other settings":
        assert not os.path.exists(os.path.join(fill["tmp"], "run"))  # a failed start writes nothing


# A command line with _cli's policy and nothing else: no TensorFlow, so each run takes a fraction of a second.
TINY_PROGRAM = """
from absl import app, flags
from ravdess_tfrecords import _cli
flags.DEFINE_integer("epochs", 1, "Epochs.")
flags.DEFINE_string("raise", None, "What main raises.", required=True)
flags.DEFINE_boolean("verbose", False, "Tracebacks.")

@_cli.user_errors
def main(argv):
    what = flags.FLAGS["raise"].value
    if what == "bug":  # what a library raises from deep inside: a bug, not the user's mistake
        return int("not a number")
    if what == "user":
        raise _cli.UserError("a check failed:\\n  say what to do")
    if what == "path":
        open("/nonexistent-dir/file")
    if what == "usage":
        raise app.UsageError("name at least one clip")
    if what == "status":
        return 1
    return 0

_cli.run(main)
"""


@pytest.mark.parametrize(
    "args, status, stderr",
    [
        (["--raise=none"], 0, ""),
        (["--raise=none", "--epochs=x"], 2, "error: flag --epochs=x: invalid literal for int() with base 10: 'x'"),
        (["--raise=none", "--epoch=3"], 2, "error: Unknown command line flag 'epoch'"),
        ([], 2, "error: --raise is required"),
        (["--raise=usage"], 2, "error: name at least one clip"),
        (["--raise=user"], 2, "error: a check failed: say what to do"),
        (["--raise=path"], 2, "error: [Errno 2] No such file or directory: '/nonexistent-dir/file'"),
        (["--raise=bug"], 1, "Traceback"),
        (["--raise=user", "--verbose"], 1, "Traceback"),
        (["--raise=status"], 1, ""),
    ],
)
def test_exit_status_policy(args, status, stderr):
    """0 done; 2 a usage or user error, as one ``error:`` line; 1 a runtime failure or a bug, with its traceback."""
    proc = subprocess.run([sys.executable, "-c", TINY_PROGRAM, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == status, proc.stderr
    if status == 2:
        assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith(stderr), proc.stderr
    elif stderr:
        assert proc.stderr.startswith(stderr) and "error: " not in proc.stderr, proc.stderr
        assert ("ValueError: invalid literal" if args == ["--raise=bug"] else "UserError") in proc.stderr
    else:
        assert proc.stderr == ""


def test_user_errors_are_narrow():
    """The code's own checks and a missing path are the user's; a plain ValueError or OSError is not."""
    import tensorflow as tf

    from ravdess_tfrecords import errors
    from ravdess_tfrecords.reading import splits

    with pytest.raises(_cli.UserError) as raised:  # a deliberate check: a UserError, still a ValueError
        splits.split_actors("nonsense")
    assert isinstance(raised.value, ValueError) and _cli.is_user_error(raised.value)
    for error in (FileNotFoundError("x"), PermissionError("x"), IsADirectoryError("x"), NotADirectoryError("x"),
                  tf.errors.NotFoundError(None, None, "x"), errors.UserTimeoutError("no dispatcher")):
        assert _cli.is_user_error(error), error
    for error in (ValueError("x"), OSError(28, "No space left on device"), KeyError("x"), TypeError("x")):
        assert not _cli.is_user_error(error), error


def test_tensorflow_imports_without_what_it_loads_only_because_it_is_installed():
    """sklearn, matplotlib and jax (installed here) stay out of an entry point's TensorFlow import, ~40% of its
    CPU, and import as usual afterwards; Keras works."""
    code = ("import sys; from ravdess_tfrecords import _cli\n"
            "_cli.quiet_tensorflow(['fit'])\n"
            "print(sorted(m for m in ('tensorflow', 'keras', *_cli.HELD_BACK) if m in sys.modules))\n"
            "import jax, matplotlib.pyplot, sklearn.base, keras, numpy as np\n"
            "model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])\n"
            "print(model.predict(np.ones((1, 3)), verbose=0).shape, matplotlib.pyplot.figure is not None)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.splitlines() == ["['keras', 'tensorflow']", "(1, 2) True"], out.stdout + out.stderr[-3000:]
    assert _cli.held_back({"sys", "matplotlib"}, "tensorflow") == ["sklearn", "jax"]
    assert _cli.held_back(set(), "jax") == ["sklearn", "matplotlib"]  # Keras on JAX imports it: never held back


@pytest.mark.skipif(not NO_GPU, reason="with a GPU, TensorFlow's start-up log is left alone")
def test_no_tensorflow_start_up_noise_unless_verbose(tmp_path, tfrecords_dir):
    # A user error found only once TensorFlow is loaded: no tf.data service dispatcher answers.
    args = [f"--data_dir={tfrecords_dir}", f"--model_dir={tmp_path}/run", "--data_service=grpc://localhost:1",
            "--data_service_timeout=1"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # side by side: each imports TensorFlow
        quiet, loud = pool.map(lambda extra: _run("trainers.fit", *args, *extra), [(), ("--verbose",)])
    assert quiet.stdout.splitlines()[-1] == loud.stdout.splitlines()[-1] == "tensorflow imported: True"
    for noise in ("cuInit", "oneDNN", "InitializeLog", "cuda drivers"):
        assert noise not in quiet.stderr, quiet.stderr
    assert quiet.stderr.startswith("error: no tf.data service dispatcher answered"), quiet.stderr
    assert loud.returncode != 0
    assert "Traceback" in loud.stderr and "UserTimeoutError" in loud.stderr  # the traceback, with --verbose
    assert "oneDNN" in loud.stderr or "InitializeLog" in loud.stderr, loud.stderr[-3000:]  # TensorFlow not silenced


# ------------------------------------------------------------------------------------------ docs


def _fit_flags() -> set[str]:
    """Flags defined in trainers/fit.py (``flags.DEFINE_*("name", ...)``)."""
    with open(os.path.join(REPO, "trainers", "fit.py")) as f:
        tree = ast.parse(f.read())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr.startswith("DEFINE_") and node.args and isinstance(node.args[0], ast.Constant)
    }


def _readme_fit_flags() -> set[str]:
    """Flags named in the first column of docs/training.md's ``trainers.fit`` flags table."""
    with open(os.path.join(REPO, "docs", "training.md")) as f:
        text = f.read()
    section = text.split("## `trainers.fit` flags", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `--")]
    return {name for row in rows for name in re.findall(r"`--(\w+)`", row.split("|")[1])}


def test_readme_lists_every_fit_flag():
    defined = _fit_flags()
    assert {"data_dir", "model_dir", "verbose", "split"} <= defined  # the parser finds them
    assert _readme_fit_flags() == defined


def test_quiet_tensorflow_sets_the_log_level_on_a_gpu_host_too(monkeypatch):
    """On a host with /dev/nvidia* the start-up lines are left alone, but TensorFlow's C++ INFO lines still go."""
    monkeypatch.setattr(_cli, "has_nvidia_gpu", lambda: True)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert _cli.quiet_tensorflow(["fit"]) is False
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    _cli.quiet_tensorflow(["fit", "--verbose"])
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ  # --verbose: everything


def test_errors_only_silences_warnings_and_warning_lines(capsys):
    code = ("import warnings; from ravdess_tfrecords import _cli\n"
            "_cli.print_warning('one\\n  line'); warnings.warn('python warning')\n"
            "_cli.errors_only()\n"
            "_cli.print_warning('hidden'); warnings.warn('hidden too'); _cli.print_error('still shown')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "warning: one line\n" in out.stderr and "python warning" in out.stderr
    assert "hidden" not in out.stderr and "error: still shown" in out.stderr


@pytest.mark.parametrize(("progress", "terminal", "verbose"),
                         [("auto", True, 1), ("auto", False, 2), ("epoch", True, 2), ("bar", False, 1),
                          ("none", True, 0)])
def test_progress_is_a_bar_on_a_terminal_and_a_line_per_epoch_in_a_log(progress, terminal, verbose):
    from trainers import config  # not trainers.fit: an entry point's flags would clash with a tool's here

    assert config.progress_verbosity(progress, terminal) == verbose


@pytest.mark.parametrize(("module", "args", "error"), [
    ("trainers.evaluate", ["--model_dir=x", "--batch_size=0"], "error: flag --batch_size=0: must be an integer >= 1"),
    ("trainers.evaluate", ["--model_dir=x", "--fold=-1"], "error: flag --fold=-1: must be an integer >= 0"),
    ("trainers.evaluate", ["--model_dir=x", "--split=nope"], "error: flag --split=nope: value should be one of"),
    ("trainers.evaluate", ["--batch_size=8"], "error: --model_dir is required"),
    ("trainers.predict", ["--model_dir=x", "--top_k=0", "clip.mp4"], "error: flag --top_k=0: must be an integer >= 1"),
    ("trainers.predict", ["--model_dir=x"], "error: name at least one clip"),
    # fit: its flags' ranges (config.RANGES), then TrainConfig's checks, the split's included.
    ("trainers.fit", ["--data_dir=x", "--model_dir=y", "--batch_size=0"],
     "error: flag --batch_size=0: must be an integer >= 1"),
    ("trainers.fit", ["--data_dir=x", "--model_dir=y", "--patience=-1"],
     "error: flag --patience=-1: must be an integer >= 0"),
    ("trainers.fit", ["--data_dir=x", "--model_dir=y", "--worker_timeout=-1"],
     "error: flag --worker_timeout=-1.0: must be a finite number >= 0"),
    ("trainers.fit", ["--data_dir=x", "--model_dir=y", "--model=bogus"], "error: flag --model=bogus: value should be"),
    ("trainers.fit", ["--data_dir=x", "--model_dir=y", "--learning_rate=0"], "error: learning_rate must be > 0"),
    ("trainers.fit", ["--data_dir=x", "--model_dir=y", "--filters=32,x"], "error: --filters: 'x' is not an integer"),
    ("trainers.fit", ["--data_dir=x", "--model_dir=y", "--label_smoothing=1"],
     "error: label_smoothing must be in [0, 1), got 1.0"),
    ("trainers.fit", ["--data_dir=x", "--model_dir=y", "--split=kfold", "--fold=6"],
     "error: fold must be in 0..5 for 6 folds, got 6"),
    ("trainers.fit", ["--data_dir=x", "--model_dir=y", "--split=speaker", "--fold=1"],
     "error: fold applies to kfold, luna5, sixfold only, not 'speaker'"),
    ("trainers.fit", ["--data_dir=x", "--model_dir=y", "--train_actors=1,2", "--validation_actors=2",
                      "--test_actors=3"], "error: a speaker-independent split puts each actor in one set only"),
    ("trainers.fit", ["--model_dir=y"], "error: --data_dir is required"),
])
def test_a_bad_flag_fails_before_tensorflow_is_imported(module, args, error):
    """The flags of fit, evaluate and predict are parsed and checked before TensorFlow loads (27-46 s on a busy
    machine): at the error, ``sys.modules`` has no tensorflow."""
    code = ("import runpy, sys\n"
            f"sys.argv = [{module!r}, *sys.argv[1:]]\n"
            "try:\n"
            f"    runpy.run_module({module!r}, run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    print('exit', e.code, 'tensorflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "exit 2 False", (out.stdout, out.stderr)
    assert out.stderr.startswith(error), out.stderr
