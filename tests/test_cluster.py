"""No silent hangs (``trainers/cluster.py``): a worker whose peer never starts, a dispatcher that is not there.

One worker of a two-worker ``TF_CONFIG`` on free loopback ports, the other never
started: it must say what it waits for, give up after ``--worker_timeout`` with one
``error:`` line, and stop promptly on SIGINT or SIGTERM. Every process is killed
in a ``finally``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import fake_shards
import helpers
import pytest
from test_multi_worker import PROGRAM, REPO, _free_ports

from ravdess_tfrecords import _cli
from trainers import cluster
from trainers import config as config_lib


def _lonely_worker(tmpdir, *flags) -> subprocess.Popen:
    """Worker 0 of a two-worker cluster whose worker 1 never starts; output on a pipe (stderr merged)."""
    data_dir = os.path.join(tmpdir, "data")
    fake_shards.write_shards(data_dir, actors=range(1, 4))
    ports = _free_ports(2)
    cluster_spec = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    env = helpers.repo_env(TF_CONFIG=json.dumps({"cluster": cluster_spec, "task": {"type": "worker", "index": 0}}),
                           TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    args = [f"--data_dir={data_dir}", f"--model_dir={tmpdir}/run", "--strategy=multi_worker", "--epochs=1",
            "--train_actors=1", "--validation_actors=2", "--test_actors=3", *flags]
    proc = subprocess.Popen([sys.executable, PROGRAM, "fit", os.path.join(tmpdir, "w.npy"), "--", *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc.peer = cluster_spec["worker"][1]
    return proc


def _read_until(proc, text: str, timeout: float) -> str:
    """Lines of ``proc`` until one holds ``text`` (fails after ``timeout`` s or at the end of output)."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    pytest.fail(f"no {text!r} in the output:\n{''.join(seen)[-3000:]}")


def test_a_worker_whose_peer_never_starts_says_so_and_gives_up(tmp_path):
    proc = _lonely_worker(str(tmp_path), "--worker_timeout=5")
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 2, out[-3000:]
    waiting = [line for line in out.splitlines() if line.startswith("waiting for")]
    assert len(waiting) == 1, out[-3000:]
    assert re.fullmatch(rf"waiting for worker 1 at {proc.peer} \(TF_CONFIG\); giving up in [1-5] s", waiting[0])
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"worker 1 at {proc.peer}" in errors[0] and "--worker_timeout=5 s" in errors[0], out
    assert "Traceback" not in out
    assert not (tmp_path / "run").exists()  # nothing written before the cluster formed


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_waiting_worker_stops_on_a_signal(tmp_path, signum):
    proc = _lonely_worker(str(tmp_path), "--worker_timeout=120")
    try:
        _read_until(proc, "waiting for worker 1", timeout=120)
        proc.send_signal(signum)
        sent = time.monotonic()
        out, _ = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 5
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signum, out
    name = signal.Signals(signum).name
    assert f"stopped by {name}: run the same command again to resume" in out


def test_sigterm_stops_a_worker_blocked_in_a_collective(tmp_path):
    """Worker 0 waits in an all-reduce worker 1 never joins; TensorFlow's own SIGTERM handler is replaced again."""
    ports = _free_ports(2)
    cluster_spec = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs = []
    try:
        for index in range(2):
            env = helpers.repo_env(
                CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                TF_CONFIG=json.dumps({"cluster": cluster_spec, "task": {"type": "worker", "index": index}}))
            procs.append(subprocess.Popen([sys.executable, PROGRAM, "block"], cwd=REPO, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        _read_until(procs[0], "reducing", timeout=120)
        time.sleep(1)  # into the collective
        procs[0].send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, _ = procs[0].communicate(timeout=30)
        assert time.monotonic() - sent < 5
        assert procs[0].returncode == 128 + signal.SIGTERM, out
        assert "stopped by SIGTERM: bye" in out
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_stop_on_signals_ends_a_process_blocked_in_cpp(tmp_path):
    """The main thread inside a C call that never returns (the GIL released, as TensorFlow's ops do)."""
    code = ("import os, sys, time\n"
            "from trainers import cluster\n"
            "cluster.stop_on_signals(': bye')\n"
            "r, w = os.pipe()\n"
            "print('blocked', flush=True)\n"
            "os.read(r, 1)  # never returns: no Python signal handler can run in this thread\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline() == "blocked\n"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and out.strip() == "stopped by SIGINT: bye"


def test_a_missing_dispatcher_fails_with_its_address():
    address = f"grpc://localhost:{_free_ports(1)[0]}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=f"no tf.data service dispatcher answered at {address} within"):
        cluster.wait_for_dispatcher(address, timeout=1)
    assert time.monotonic() - start < 10


def test_a_dispatcher_answers_with_its_version():
    from trainers import service

    dispatcher = service.start_dispatcher()
    try:
        assert cluster.wait_for_dispatcher(dispatcher.target, timeout=30) > 0
    finally:
        dispatcher.stop()


def test_a_dispatcher_without_a_worker_fails_within_the_timeout_then_counts_its_worker():
    from trainers import service

    dispatcher = service.start_dispatcher()
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=f"^no tf.data service worker registered with the dispatcher at "
                                               f"{dispatcher.target} within --data_service_timeout=1 s"):
            cluster.wait_for_service_workers(dispatcher.target, timeout=1)
        assert time.monotonic() - start < 5
        worker = service.start_worker(dispatcher.target)
        try:
            assert cluster.wait_for_service_workers(dispatcher.target, timeout=30) == 1
        finally:
            worker.stop()
    finally:
        dispatcher.stop()


def test_count_workers_reads_a_get_workers_response():
    # Two WorkerInfo (field 1), a 200-byte address (a two-byte varint length); an empty response lists none.
    info = b"\x0a" + bytes([len("h:1")]) + b"h:1"
    long_info = b"\x0a\xc8\x01" + b"x" * 200
    assert cluster.count_workers(b"") == 0
    assert cluster.count_workers(b"\x0a" + bytes([len(info)]) + info + b"\x0a\xcb\x01" + long_info) == 2


def test_cluster_tasks_and_chief():
    spec = {"cluster": {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"], "ps": ["p:1"]},
            "task": {"type": "worker", "index": 1}}
    own, others = cluster.peers(spec)
    assert own == ("worker", 1, "h2:1") and others == [("chief", 0, "h0:1"), ("worker", 0, "h1:1")]
    assert cluster.describe(others) == "chief 0 at h0:1, worker 0 at h1:1"
    assert not _cli.is_chief_task(spec)
    assert _cli.is_chief_task(dict(spec, task={"type": "chief", "index": 0}))
    assert _cli.is_chief_task({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}})
    with pytest.raises(ValueError, match="not in the cluster"):
        cluster.peers(dict(spec, task={"type": "worker", "index": 5}))


def test_timeouts_are_runtime_settings(tmp_path):
    for name in ("worker_timeout", "data_service_timeout"):
        assert name in config_lib._RESTART_FREE
        with pytest.raises(ValueError, match=f"{name}=-1: must be a finite number >= 0"):
            config_lib.TrainConfig(str(tmp_path), str(tmp_path), **{name: -1})


def test_other_workers_get_errors_only_from_tensorflow(monkeypatch):
    """``_cli.quiet_tensorflow``'s level choice, made from argv and TF_CONFIG before TensorFlow loads."""
    two = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(two))
    assert _cli.other_worker(["fit", "--strategy=multi_worker"])
    assert _cli.other_worker(["fit", "--strategy", "multi_worker"])
    assert not _cli.other_worker(["fit"])  # TF_CONFIG alone does not make a cluster
    monkeypatch.setenv("TF_CONFIG", json.dumps(dict(two, task={"type": "worker", "index": 0})))
    assert not _cli.other_worker(["fit", "--strategy=multi_worker"])  # the chief
    monkeypatch.setenv("TF_CONFIG", "not json")
    assert not _cli.other_worker(["fit", "--strategy=multi_worker"])


# TensorFlow's two wordings of a peer lost mid-run (TF 2.21, two loopback workers, worker 1 SIGKILLed).
RESET = ("{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/replica:0/task:0/"
         "device:CPU:0}} Collective ops is aborted by: recvmsg:Connection reset by peer\n"
         "Additional GRPC error information from remote target /job:worker/replica:0/task:1 while calling "
         "/tensorflow.WorkerService/RecvBuf:\n:UNKNOWN:Error received from peer  {grpc_status:14}\n"
         "The error could be from a previous operation. Restart your program to reset. [Op:CollectiveReduceV2]")
HEARTBEATS = ("Collective ops is aborted by: Error reported from /job:worker/task:0: The following tasks are "
              "unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed.")


@pytest.mark.parametrize(("text", "lost"), [(RESET, "worker 1 during training (connection reset by peer)"),
                                            (HEARTBEATS, "worker 1 during training (it stopped sending heartbeats)"),
                                            ("Socket closed", "a peer during training (socket closed)")])
def test_a_lost_peer_is_named_with_its_reason(text, lost):
    """The task lost, not this task's own device in the op's name, nor the one reporting the heartbeats."""
    message = cluster.lost_peer_message(RuntimeError(text))
    assert message == (f"the multi-worker run lost {lost}; start every worker again with the same command: "
                       "the run resumes from the chief's last backup")


def test_a_signal_removes_the_scratch_folders_before_it_ends_the_process(tmp_path):
    """A non-chief worker's scratch model dir (``loop._write_dir``) is registered with ``remove_on_stop``:
    the signal's ``os._exit`` runs no ``finally``, so the watcher thread removes it first."""
    code = ("import os, signal, sys, time\n"
            "from trainers import cluster\n"
            "cluster.stop_on_signals(': bye')\n"
            "scratch, kept = sys.argv[1], sys.argv[2]\n"
            "for path in (scratch, kept): os.makedirs(os.path.join(path, 'backup'))\n"
            "cluster.remove_on_stop(scratch)\n"
            "cluster.remove_on_stop(kept)()  # cancelled: removed otherwise\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "time.sleep(30)\n")
    scratch, kept = tmp_path / "scratch", tmp_path / "kept"
    proc = subprocess.run([sys.executable, "-c", code, str(scratch), str(kept)], cwd=REPO, env=helpers.repo_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "stopped by SIGTERM: bye" in proc.stderr
    assert not scratch.exists() and kept.is_dir()


def test_the_chief_waits_for_the_other_tasks_to_leave():
    """``wait_for_peers_to_leave``: True once no peer answers; False after the timeout while one does."""
    import socket

    own, peer = _free_ports(2)
    config = {"cluster": {"worker": [f"127.0.0.1:{own}", f"127.0.0.1:{peer}"]}, "task": {"type": "worker", "index": 0}}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", peer))
        listener.listen(8)
        start = time.monotonic()
        assert cluster.wait_for_peers_to_leave(config, timeout=0.5) is False
        assert time.monotonic() - start >= 0.5
    assert cluster.wait_for_peers_to_leave(config, timeout=5) is True
