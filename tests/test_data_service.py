"""``--data_service``: the training input pipeline on an in-process tf.data service (dispatcher + one worker).

Loopback only: the dispatcher and worker of ``trainers/service.py`` (what ``tools.data_service`` runs) run in
this process on free ports; the service reads the same shard directory.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys

import helpers
import pytest
from fake_shards import write_shards

from trainers import config as config_lib
from trainers import data as data_lib
from trainers import loop
from trainers import service as data_service
from trainers.model_dir import METRICS_FILE, read_history

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACTORS = {"train": (1, 2, 3, 4), "validation": (5,), "test": (6,)}


def _config(tmp_path, **kwargs) -> config_lib.TrainConfig:
    return config_lib.TrainConfig(
        str(tmp_path / "data"), str(tmp_path / "run"), split="actors", actors=ACTORS, filters=(4, 4, 4, 4),
        batch_size=8, epochs=1, export=False, strategy="one_device", verbose=0, **kwargs)


def test_one_epoch_of_fit_reads_through_the_service(tmp_path):
    write_shards(str(tmp_path / "data"), actors=range(1, 7))  # 4 train actors x 8 clips: 4 steps of 8
    dispatcher = data_service.start_dispatcher()
    worker = data_service.start_worker(dispatcher.target)
    try:
        assert worker._num_tasks() == 0
        config = _config(tmp_path, data_service=dispatcher.target)
        result = loop.train(config)
        # The service ran the training pipeline: its worker holds the run's task (private API, tests only).
        assert worker._num_tasks() == 1
    finally:
        worker.stop()
        dispatcher.stop()
    run = tmp_path / "run"
    history = read_history(str(run / "history.csv"))
    assert [int(row["epoch"]) for row in history] == [0]
    assert (run / METRICS_FILE).exists() and result["test"]["support"]
    assert sum(result["test"]["support"].values()) == 8  # test stays local and whole: actor 6's 8 clips


def test_service_address_and_job_name(tmp_path):
    config = _config(tmp_path, data_service="localhost:5050")
    assert config.data_service == "grpc://localhost:5050"
    with pytest.raises(ValueError, match="grpc://HOST:PORT"):
        _config(tmp_path, data_service="grpc://nohost")
    # The trainers of one multi-worker run share the job; another fold or run gets its own.
    name = data_lib.service_job_name(config)
    assert name == data_lib.service_job_name(dataclasses.replace(config, verbose=2, strategy="multi_worker"))
    assert name != data_lib.service_job_name(dataclasses.replace(config, model_dir=str(tmp_path / "other")))
    assert name != data_lib.service_job_name(dataclasses.replace(config, seed=7))
    # A runtime setting: a run may resume with or without the service.
    assert "data_service" in config_lib._RESTART_FREE


def test_scale_out_repeats_with_a_fixed_epoch_only_when_needed(tmp_path):
    import tensorflow as tf

    config = _config(tmp_path)
    train, validation = tf.data.Dataset.range(40).batch(8), tf.data.Dataset.range(8).batch(8)
    same = data_lib.scale_out(train, validation, config, num_examples=40, num_workers=1)
    assert same == (train, validation, None)
    repeated, _, steps = data_lib.scale_out(train, validation, config, num_examples=41, num_workers=2)
    assert steps == 5 and repeated.cardinality() == tf.data.INFINITE_CARDINALITY
    with pytest.raises(ValueError, match="fewer than one global batch"):
        data_lib.scale_out(train, validation, config, num_examples=7, num_workers=2)


def _tool(*args: str, stdout=subprocess.PIPE, telling_tensorflow: bool = False) -> subprocess.Popen:
    """``python -m tools.data_service ARGS`` from the repository, TensorFlow's INFO lines off
    (``telling_tensorflow``: ``helpers.python_m_telling_tensorflow``'s)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    python_m = (helpers.python_m_telling_tensorflow("tools.data_service") if telling_tensorflow
                else [sys.executable, "-m", "tools.data_service"])
    return subprocess.Popen([*python_m, *args], cwd=REPO, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True)


def test_cli_refuses_bad_flags_and_a_port_in_use_and_stops_on_sigint_and_sigterm():
    # Both refusals run side by side; each is one error line and exit status 2 (no absl usage dump, no FATAL).
    refused = {args: _tool(*args, telling_tensorflow=True) for args in (("--role=worker",), ())}
    for args, expected in ((("--role=worker",), "error: --role=worker needs --dispatcher=HOST:PORT"),
                           ((), "error: --role is required")):
        stdout, stderr = refused[args].communicate(timeout=120)
        assert refused[args].returncode == 2, stderr
        assert len(stderr.splitlines()) == 1 and stderr.startswith(expected), stderr
        assert stdout == "tensorflow imported: False\n", stdout  # refused before TensorFlow's ~5 s start-up
    proc = _tool("--role=dispatcher", "--port=0")
    servers = [proc]
    try:
        line = proc.stdout.readline()
        assert line.startswith("tf.data service dispatcher at grpc://") and "--data_service=grpc://" in line
        assert proc.poll() is None  # serving until stopped
        port = line.split()[4].rstrip(";").rsplit(":", 1)[1]
        # A second dispatcher on its port is refused (gRPC's SO_REUSEPORT would let it share the port silently).
        second = _tool("--role=dispatcher", f"--port={port}")
        worker = _tool("--role=worker", f"--dispatcher=localhost:{port}")
        servers += [second, worker]
        _, stderr = second.communicate(timeout=120)
        assert second.returncode == 2 and len(stderr.splitlines()) == 1, stderr
        assert stderr.startswith(f"error: cannot start the dispatcher: port {port} is in use"), stderr
        assert worker.stdout.readline() == f"tf.data service worker serving dispatcher localhost:{port}\n"
        # Ctrl-C and SIGTERM stop the servers, with one line each (server.join() ignored both).
        for server, signum in ((worker, signal.SIGTERM), (proc, signal.SIGINT)):
            server.send_signal(signum)
            _, stderr = server.communicate(timeout=30)
            assert server.returncode == 128 + signum, stderr
            assert stderr.strip().splitlines()[-1].startswith(f"stopped by {signal.Signals(signum).name}"), stderr
    finally:
        for server in servers:
            if server.poll() is None:
                server.kill()
                server.wait(timeout=30)


def test_scale_out_waits_for_the_dispatcher_and_says_where_input_comes_from(tmp_path, capsys):
    """No dispatcher, or one without a worker: one TimeoutError naming the address (not a silent hang).

    A dispatcher with a worker: a line naming it and the job.
    """
    import tensorflow as tf
    from test_multi_worker import _free_ports

    train, validation = tf.data.Dataset.range(40).batch(8), tf.data.Dataset.range(8).batch(8)
    nobody = f"grpc://localhost:{_free_ports(1)[0]}"
    config = dataclasses.replace(_config(tmp_path, data_service=nobody), data_service_timeout=1)
    with pytest.raises(TimeoutError, match=f"no tf.data service dispatcher answered at {nobody} within"):
        data_lib.scale_out(train, validation, config, num_examples=40, num_workers=1)
    dispatcher = data_service.start_dispatcher()
    try:
        # A dispatcher with no worker would accept the job and never send a batch.
        config = dataclasses.replace(config, data_service=dispatcher.target)
        with pytest.raises(TimeoutError, match=f"no tf.data service worker registered with the dispatcher at "
                                               f"{dispatcher.target} within --data_service_timeout=1 s"):
            data_lib.scale_out(train, validation, config, num_examples=40, num_workers=1)
        worker = data_service.start_worker(dispatcher.target)
        try:
            config = dataclasses.replace(config, verbose=2)
            data_lib.scale_out(train, validation, config, num_examples=40, num_workers=1)
        finally:
            worker.stop()
    finally:
        dispatcher.stop()
    assert capsys.readouterr().out == (f"training input: tf.data service at {dispatcher.target}, "
                                       f"job {data_lib.service_job_name(config)}\n")
