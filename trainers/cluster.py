"""No silent hangs: wait for a cluster's other processes with a deadline, and stop on a signal at any time.

A run that needs other processes (the workers of ``--strategy=multi_worker``,
the dispatcher of ``--data_service``) says what it is waiting for, gives up
after a timeout with one error, and stops on Ctrl-C or SIGTERM even while the
main thread is blocked inside TensorFlow.

* ``wait_for_peers(tf_config, timeout)``: before ``MultiWorkerMirroredStrategy``
  is built. TensorFlow's own rendezvous (the coordination service, inside the
  strategy's constructor) waits for the other workers with the GIL held, so
  nothing in Python can run (no message, no Ctrl-C), and the task that leads
  the coordination service waits with no deadline at all. So the workers meet
  in Python first: each listens on its own ``TF_CONFIG`` port (so the others see
  it up) and polls the others' ports over TCP until every one has answered once,
  then closes its listener and builds the strategy, whose gRPC server takes the
  same port. A worker that has seen every peer may leave while a peer still
  polls it: the peer then sees its gRPC server, so nobody waits on a closed port
  for long.
* ``building_strategy(timeout)``: around the constructor itself, Ctrl-C ends the
  process at once (the default action: Python's handler could not run) and a
  ``faulthandler`` watchdog (a C thread, which needs no GIL) ends it with status
  1 and the stack if the cluster still has not formed after ``timeout``.
* ``wait_for_dispatcher(address, timeout)``: a tf.data service dispatcher answers
  its ``GetVersion`` RPC, or a ``TimeoutError`` naming the address.
  ``wait_for_service_workers(address, timeout)``: that, and then at least one tf.data
  worker registered with it (its ``GetWorkers`` RPC) within the same timeout.
* ``stop_on_signals(message)``: SIGINT and SIGTERM end the process with one line
  and status 128 + signal, wherever the main thread is. Python runs its signal
  handlers only in the main thread, between bytecodes, never while that thread
  waits in C++ (a collective whose peer is gone); but the C-level handler still
  writes the signal's number to ``signal.set_wakeup_fd``'s pipe, and a daemon
  thread blocked on that pipe (TensorFlow releases the GIL while it runs ops)
  prints the line and calls ``os._exit``. TensorFlow's coordination service
  also installs its own SIGTERM handler (preemption notices) that swallows the
  signal: ``stop_on_signals`` is called again after the strategy is built.

* ``lost_peer_message(error)``: a worker that dies mid-run (killed, out of
  memory, its host gone) breaks the collective the others are in, which fail
  with TensorFlow's ``UnavailableError`` within a second (the connection resets)
  or 10-20 s (the coordination service misses its heartbeats). ``trainers.fit``
  prints this one line instead of the traceback: which task was lost, and that
  the same command on every worker resumes from the chief's backup.

Exit statuses: a missing peer or dispatcher is a ``UserTimeoutError`` (a
``TimeoutError``), which ``ravdess_tfrecords._cli.user_errors`` prints as one
``error: ...`` line with status 2; a signal gives 128 + its number (130, 143);
a peer lost mid-run is a runtime failure: one line and status 1.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import math
import os
import re
import select
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

from ravdess_tfrecords.errors import UserError, UserOSError, UserTimeoutError

DEFAULT_WORKER_TIMEOUT_S = 600
DEFAULT_DATA_SERVICE_TIMEOUT_S = 60
POLL_S = 0.25
# Peers that answer within this say nothing: the usual start of a cluster is not worth a line.
ANNOUNCE_AFTER_S = 1.0
# The jobs whose tasks take part in MultiWorkerMirroredStrategy's collectives.
COLLECTIVE_JOBS = ("chief", "worker")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
TEST_STOP_ENV = "RAVDESS_FIT_TEST_STOP"  # test hook (stop_for_test)


def tf_config() -> dict:
    """The ``TF_CONFIG`` environment variable, parsed.

    Raises:
      ValueError: unset, not JSON, or without ``cluster`` and ``task``.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise UserError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                         "(cluster and task; see docs/scaling.md)")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UserError(f"TF_CONFIG is not valid JSON: {e}") from None
    if not isinstance(value, dict) or "cluster" not in value or "task" not in value:
        raise UserError('TF_CONFIG needs "cluster" and "task", e.g. {"cluster": {"worker": ["host1:12345", '
                         '"host2:12345"]}, "task": {"type": "worker", "index": 0}}')
    return value


def _host_port(address: str) -> tuple[str, int]:
    """``("host", 12345)`` of ``host:12345`` (``[::1]:12345`` too); ValueError otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"TF_CONFIG: {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def peers(tf_config: dict) -> tuple[tuple[str, int, str], list[tuple[str, int, str]]]:
    """``(this task, the other tasks)`` of a parsed ``TF_CONFIG``, each ``(job, index, address)``.

    Only the jobs that join the collectives (``COLLECTIVE_JOBS``), in the cluster's order.

    Raises:
      ValueError: this task is not in the cluster.
    """
    cluster, task = tf_config["cluster"], tf_config["task"]
    tasks = [(job, index, address) for job in COLLECTIVE_JOBS for index, address in enumerate(cluster.get(job, []))]
    own = [t for t in tasks if (t[0], t[1]) == (task.get("type"), task.get("index"))]
    if not own:
        raise UserError(f"TF_CONFIG: task {task!r} is not in the cluster {cluster!r}")
    return own[0], [t for t in tasks if t is not own[0]]


def describe(tasks: list[tuple[str, int, str]]) -> str:
    """``worker 1 at 127.0.0.1:12346, worker 2 at ...``."""
    return ", ".join(f"{job} {index} at {address}" for job, index, address in tasks)


def _answers(address: str, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``address`` (a peer's listener or its gRPC server)."""
    try:
        with socket.create_connection(_host_port(address), timeout=timeout):
            return True
    except OSError:
        return False


def any_interface_socket(port: int) -> tuple[socket.socket, tuple]:
    """An unbound TCP socket for ``port`` on every interface, as gRPC's ``[::]`` binds (IPv4 too; IPv4 alone
    where there is no IPv6), with ``SO_REUSEADDR`` (a port in TIME_WAIT is free; a listening one is not),
    and the address to bind it to."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        bind = ("::", port)
    except OSError:
        sock, bind = socket.socket(socket.AF_INET, socket.SOCK_STREAM), ("", port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock, bind


def _listen(address: str) -> socket.socket:
    """A socket listening on ``address``'s port on every interface (as TensorFlow's server will), never accepting.

    The kernel completes a peer's TCP handshake from the backlog, which is all a peer's probe needs.
    """
    _, port = _host_port(address)
    sock, bind = any_interface_socket(port)  # SO_REUSEADDR: TensorFlow binds the same port right after
    try:
        sock.bind(bind)
        sock.listen(64)
    except OSError as e:
        sock.close()
        raise UserOSError(f"cannot listen on port {port} of this task ({address} in TF_CONFIG): {e.strerror}; "
                      "is another process (an earlier worker?) still using it?") from None
    return sock


def wait_for_peers(tf_config: dict, timeout: float, out: TextIO | None = None) -> None:
    """Return once every other task of ``tf_config``'s cluster has answered on its port.

    Says once on ``out`` (default stderr) which tasks it waits for, if they are not
    all up within ``ANNOUNCE_AFTER_S``. ``timeout`` 0: wait for ever.

    Raises:
      TimeoutError: naming the tasks (and addresses) that never answered.
      OSError: this task's port is taken.
    """
    out = sys.stderr if out is None else out
    if tf_config["task"].get("type") not in COLLECTIVE_JOBS:  # an evaluator, say: not part of the collectives
        return
    own, missing = peers(tf_config)
    if not missing:
        return
    listener = _listen(own[2])
    try:
        start = time.monotonic()
        announced = False
        while True:
            # A peer seen once stays seen: it may be between its listener and its gRPC server.
            missing = [t for t in missing if not _answers(t[2])]
            if not missing:
                return
            waited = time.monotonic() - start
            if timeout and waited >= timeout:
                raise UserTimeoutError(
                    f"{describe(missing)} (TF_CONFIG) did not start within --worker_timeout={timeout:g} s; "
                    "start the same command on every task of the cluster, or pass a larger --worker_timeout")
            if not announced and waited >= ANNOUNCE_AFTER_S:
                limit = f"giving up in {math.ceil(timeout - waited)} s" if timeout else "waiting without a time limit"
                print(f"waiting for {describe(missing)} (TF_CONFIG); {limit}", file=out, flush=True)
                announced = True
            time.sleep(POLL_S)
    finally:
        listener.close()


def wait_for_peers_to_leave(tf_config: dict, timeout: float) -> bool:
    """The chief's last step of a multi-worker run: return once no other task answers on its port.

    A task's gRPC server holds its port until the process ends. The chief leads TensorFlow's
    coordination service; had it exited first, a worker still shutting down would fail its last RPCs
    to it (``StartAbort UNAVAILABLE: Failed to send RPC to coordination service``) after a run that
    finished. ``timeout`` 0: wait for ever.

    Returns:
      Whether every other task left in time.
    """
    _, others = peers(tf_config)
    deadline = time.monotonic() + timeout if timeout else None
    while others:
        others = [t for t in others if _answers(t[2], timeout=POLL_S)]
        if others and deadline is not None and time.monotonic() >= deadline:
            return False
        if others:
            time.sleep(POLL_S)
    return True


@contextlib.contextmanager
def building_strategy(timeout: float) -> Iterator[None]:
    """Around building ``MultiWorkerMirroredStrategy``: Ctrl-C ends it at once; a stack and exit 1 after ``timeout``.

    Inside the constructor TensorFlow holds the GIL while it waits for the
    cluster (Python code, signal handlers included, cannot run), so: SIGINT gets
    its default action (the process ends) and ``faulthandler``'s watchdog, a C
    thread, dumps the stack to stderr and exits if the block lasts longer than
    ``timeout`` seconds (0: no watchdog). Only in the main thread (signals).
    """
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL) if main else None
    watchdog = bool(timeout)
    if watchdog:
        try:
            faulthandler.dump_traceback_later(timeout, exit=True, file=sys.stderr)
        except (AttributeError, ValueError, OSError):  # a stderr without a file descriptor (a notebook)
            watchdog = False
    try:
        yield
    finally:
        if watchdog:
            faulthandler.cancel_dump_traceback_later()
        if main:
            signal.signal(signal.SIGINT, previous)


_DISPATCHER_RPC = "/tensorflow.data.DispatcherService/"


def _deadline(timeout: float) -> float | None:
    """The monotonic time ``timeout`` seconds from now; None for ``timeout`` 0 (for ever)."""
    return time.monotonic() + timeout if timeout else None


def _left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (<= 0: passed); None: no deadline."""
    return None if deadline is None else deadline - time.monotonic()


def _dispatcher_version(channel, address: str, timeout: float, deadline: float | None) -> int:
    """The dispatcher's ``GetVersion`` answer on ``channel``, retried until ``deadline``."""
    import grpc  # a TensorFlow dependency

    get_version = channel.unary_unary(_DISPATCHER_RPC + "GetVersion")
    last = "no answer"
    while True:
        left = _left(deadline)
        if left is not None and left <= 0:
            raise UserTimeoutError(
                f"no tf.data service dispatcher answered at {address} within --data_service_timeout={timeout:g} s "
                f"({last}); start one (python -m tools.data_service --role=dispatcher) or fix --data_service")
        try:
            # wait_for_ready: the channel itself retries the connection until the deadline.
            reply = get_version(b"", timeout=min(left, 5.0) if left is not None else 5.0, wait_for_ready=True)
            # GetVersionResponse: field 1, varint (tag byte 0x08), the version.
            return _varint(reply, 1)[0] if reply[:1] == b"\x08" else 0
        except grpc.RpcError as e:
            last = f"{e.code().name}: {e.details()}"
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:  # a gRPC server, but not a dispatcher
                raise UserTimeoutError(f"{address} is not a tf.data service dispatcher ({last}); "
                                       "fix --data_service") from None
            time.sleep(POLL_S)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """The protobuf varint at ``data[at:]`` and the offset after it."""
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def count_workers(reply: bytes) -> int:
    """How many workers a serialized ``GetWorkersResponse`` lists (its field 1, ``repeated WorkerInfo``)."""
    count = at = 0
    while at < len(reply):
        tag, at = _varint(reply, at)
        if tag & 7 != 2:  # the response has only length-delimited fields
            raise ValueError(f"unexpected GetWorkersResponse field {tag >> 3} of wire type {tag & 7}")
        size, at = _varint(reply, at)
        count, at = count + (tag >> 3 == 1), at + size
    return count


def wait_for_dispatcher(address: str, timeout: float) -> int:
    """The version the dispatcher at ``address`` (``grpc://HOST:PORT``) answers; retries until ``timeout``.

    Its ``GetVersion`` RPC (an empty request, so no generated stubs are needed):
    a dispatcher answers, anything else does not. ``timeout`` 0: wait for ever.

    Raises:
      TimeoutError: no dispatcher answered at ``address`` within ``timeout`` seconds.
    """
    import grpc  # a TensorFlow dependency

    with grpc.insecure_channel(address.removeprefix("grpc://")) as channel:
        return _dispatcher_version(channel, address, timeout, _deadline(timeout))


def wait_for_service_workers(address: str, timeout: float) -> int:
    """How many tf.data workers the dispatcher at ``address`` has, once it answers and has one; within ``timeout``.

    A dispatcher without workers accepts a job and then never hands out a batch
    (the trainer waits silently for ever), so its ``GetWorkers`` RPC (empty
    request, too) is asked until it lists one. A dispatcher too old for that RPC
    counts as having workers (-1: unknown). ``timeout`` 0: wait for ever.

    Raises:
      TimeoutError: no dispatcher answered, or no worker registered with it, within ``timeout`` seconds.
    """
    import grpc  # a TensorFlow dependency

    deadline = _deadline(timeout)
    with grpc.insecure_channel(address.removeprefix("grpc://")) as channel:
        _dispatcher_version(channel, address, timeout, deadline)
        get_workers = channel.unary_unary(_DISPATCHER_RPC + "GetWorkers")
        while True:
            left = _left(deadline)
            try:
                wait = 5.0 if left is None else max(min(left, 5.0), 0.1)
                workers = count_workers(get_workers(b"", timeout=wait, wait_for_ready=True))
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return -1
                workers = 0  # a slow or restarting dispatcher: ask again until the deadline
            if workers:
                return workers
            left = _left(deadline)
            if left is not None and left <= 0:
                raise UserTimeoutError(
                    f"no tf.data service worker registered with the dispatcher at {address} within "
                    f"--data_service_timeout={timeout:g} s; start one (python -m tools.data_service --role=worker "
                    f"--dispatcher={address.removeprefix('grpc://')})")
            time.sleep(POLL_S)


_stop_pipe: tuple[int, int] | None = None
_stop_message = ""
_remove_at_stop: list[str] = []  # remove_on_stop's folders: deleted before a signal's os._exit


def remove_on_stop(path: str):
    """Have a signal's stop (``stop_on_signals``) remove the folder ``path`` before the process ends.

    ``os._exit`` runs no ``finally`` and no ``atexit``: a scratch folder would be left behind.

    Returns:
      A function that cancels it (call it once the folder is removed otherwise).
    """
    _remove_at_stop.append(path)

    def cancel() -> None:
        if path in _remove_at_stop:
            _remove_at_stop.remove(path)

    return cancel


def _ignore(signum, frame) -> None:
    """A Python-level handler that does nothing: installed so that the C-level one writes the wakeup pipe."""


def _stop_on_wakeup(read_fd: int) -> None:
    """The watcher thread: the first SIGINT/SIGTERM byte on the pipe ends the process."""
    while True:
        select.select([read_fd], [], [])
        for signum in os.read(read_fd, 64):
            if signum in STOP_SIGNALS:
                name = signal.Signals(signum).name
                try:  # best effort: what the run printed so far, then one line
                    for path in list(_remove_at_stop):
                        shutil.rmtree(path, ignore_errors=True)
                    sys.stdout.flush()
                    print(f"\nstopped by {name}{_stop_message}", file=sys.stderr, flush=True)
                finally:
                    os._exit(128 + signum)


def stop_on_signals(message: str = "") -> bool:
    """From now on SIGINT and SIGTERM end the process at once: one line (``stopped by SIGINT`` + ``message``).

    The exit status is 128 + the signal's number (130, 143).

    Call it from the main thread; again after something (TensorFlow's
    coordination service) replaced the SIGTERM handler. A no-op elsewhere.

    Returns:
      Whether the handlers are installed.
    """
    global _stop_pipe, _stop_message
    if threading.current_thread() is not threading.main_thread():
        return False
    _stop_message = message or _stop_message
    if _stop_pipe is None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)  # the C handler must never block
        _stop_pipe = read_fd, write_fd
        threading.Thread(target=_stop_on_wakeup, args=(read_fd,), name="stop-on-signal", daemon=True).start()
    signal.set_wakeup_fd(_stop_pipe[1], warn_on_full_buffer=False)
    for signum in STOP_SIGNALS:
        # Not KeyboardInterrupt: the main thread may never get to raise it; the watcher thread acts.
        signal.signal(signum, _ignore)
    return True


def stop_for_test(phase: str) -> None:
    """The test hook of a run's end: a real SIGTERM of this process at ``phase`` (``evaluate``, ``export``)
    when the environment variable ``TEST_STOP_ENV`` names it."""
    if os.environ.get(TEST_STOP_ENV) == phase:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)  # stop_on_signals' watcher thread ends the process meanwhile


def installed() -> bool:
    """Whether ``stop_on_signals`` was called in this process."""
    return _stop_pipe is not None


# How TensorFlow words a lost peer -> the reason given in lost_peer_message's line.
_LOST_PEER_REASONS = (("stopped sending heartbeats", "it stopped sending heartbeats"),
                      ("Connection reset by peer", "connection reset by peer"),
                      ("Socket closed", "socket closed"),
                      ("failed to connect", "it does not answer"))


def lost_peer_message(error: BaseException) -> str:
    """The one line for a multi-worker run whose peer went away mid-run (TensorFlow's ``UnavailableError``).

    TensorFlow says it two ways, depending on who notices first: the collective's gRPC call fails
    (``Collective ops is aborted by: recvmsg:Connection reset by peer ... remote target
    /job:worker/replica:0/task:1``), or the coordination service misses the peer's heartbeats
    (``The following tasks are unhealthy (stopped sending heartbeats): /job:worker/replica:0/task:1``).
    The tasks named are those after "unhealthy" or "remote target" when the text has them, else any
    not followed by ``/device:`` (this task's own device, in the op's name).
    """
    text = " ".join(str(error).split())
    where = next((text.split(key, 1)[1] for key in ("unhealthy", "remote target") if key in text), text)
    tasks = []
    for match in re.finditer(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)(/device:)?", where):
        task = f"{match.group(1)} {match.group(2)}"
        if not match.group(3) and task not in tasks:
            tasks.append(task)
    who = " and ".join(tasks) if tasks else "a peer"
    why = next((f" ({reason})" for phrase, reason in _LOST_PEER_REASONS if phrase in text), "")
    return (f"the multi-worker run lost {who} during training{why}; start every worker again with the same "
            "command: the run resumes from the chief's last backup")
