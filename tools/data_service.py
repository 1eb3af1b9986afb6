r"""Start a tf.data service dispatcher or worker, for ``trainers.fit --data_service``.

    python -m tools.data_service --role=dispatcher --port=5050
    python -m tools.data_service --role=worker --port=5051 --dispatcher=dispatcher-host:5050   # one per CPU host
    python -m trainers.fit --data_dir=gs://bucket/ravdess-tfrecords --model_dir=... --data_service=grpc://dispatcher-host:5050

The dispatcher hands out the work; each worker runs the trainer's whole input
pipeline (read, parse, augment, batch) and streams finished batches to it, so
the training host's CPUs are no longer the limit. Workers must reach the shards
(``--data_dir``) under the same path as the trainer. Runs until SIGINT (Ctrl-C)
or SIGTERM: then it stops its server and exits with one line and status 128 +
the signal's number (130, 143). A port in use is one ``error:`` line, status 2.
"""

from __future__ import annotations

import signal
import sys
import threading

from absl import app, flags

from ravdess_tfrecords import _cli
from trainers.service import start_dispatcher, start_worker

FLAGS = flags.FLAGS
flags.DEFINE_enum("role", None, ["dispatcher", "worker"], "Which server to run.", required=True)
flags.DEFINE_integer("port", 0, "Port to listen on (0: a free one, printed at start).")
flags.DEFINE_string("dispatcher", None, "HOST:PORT of the dispatcher (workers only).")
flags.DEFINE_string("worker_address", None,
                    "HOST:PORT the dispatcher should give trainers for this worker "
                    "(default: this host's name and --port).")
flags.DEFINE_string("work_dir", None,
                    "Dispatcher only: a directory (any tf.io.gfile path) for its journal, so a restarted "
                    "dispatcher picks up its running jobs. Unset: in memory.")


def wait_for_stop_signal() -> int:
    """Block until SIGINT or SIGTERM arrives; its number.

    Not ``server.join()``: it waits in C++, where Python never runs its signal
    handlers, so Ctrl-C did nothing. A wait on an Event with a timeout returns to
    the interpreter often enough for the handler to run.
    """
    stop = threading.Event()
    received = []

    def handler(signum, frame) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
    while not stop.wait(0.5):
        pass
    return received[0]


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.role == "worker" and not FLAGS.dispatcher:
        raise app.UsageError("--role=worker needs --dispatcher=HOST:PORT")
    _cli.quiet_tensorflow()  # the flags are good: now TensorFlow (without its start-up lines)
    try:
        if FLAGS.role == "dispatcher":
            server = start_dispatcher(FLAGS.port, FLAGS.work_dir)
            print(f"tf.data service dispatcher at {server.target}; pass --data_service={server.target} to "
                  "trainers.fit", flush=True)
        else:
            server = start_worker(FLAGS.dispatcher, FLAGS.port, FLAGS.worker_address)
            print(f"tf.data service worker serving dispatcher {FLAGS.dispatcher}", flush=True)
    except Exception as e:  # noqa: BLE001 - a port in use or an unreachable dispatcher: one line, not a traceback
        _cli.print_error(f"cannot start the {FLAGS.role}: {e}")
        return _cli.USER_ERROR_STATUS
    signum = wait_for_stop_signal()
    server.stop()
    print(f"stopped by {signal.Signals(signum).name}: the tf.data service {FLAGS.role} is down", file=sys.stderr,
          flush=True)
    return 128 + signum


if __name__ == "__main__":
    _cli.check_ranges({"port": (0, 65535)})
    _cli.run(main)
