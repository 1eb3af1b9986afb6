"""``make demo``'s last hint: a TensorBoard command that works from the user's shell."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _hint(path: str) -> str:
    """``tools.demo.tensorboard_command('/runs/a b/logs')`` in a fresh Python whose PATH is ``path``."""
    program = "from tools import demo; print(demo.tensorboard_command('/runs/a b/logs'))"
    proc = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PATH=path))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_tensorboard_hint_names_a_program_that_runs_from_the_users_shell():
    bin_dir = os.path.dirname(sys.executable)
    # The virtualenv's bin/ not on PATH (make demo runs .venv/bin/python): the full path, which exists.
    program, logdir = shlex.split(_hint("/usr/bin:/bin"))
    assert logdir == "--logdir=/runs/a b/logs"
    assert program == os.path.join(bin_dir, "tensorboard") and os.access(program, os.X_OK), program
    # On PATH (an activated virtualenv): the plain name.
    assert _hint(f"{bin_dir}:/usr/bin:/bin") == "tensorboard --logdir='/runs/a b/logs'"
