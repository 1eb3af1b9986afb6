"""The tf.data service's servers, started in this process: what ``tools.data_service`` runs and tests start.

``trainers.data.scale_out`` sends a run's training input to them (``--data_service``).
"""

from __future__ import annotations

import socket

from ravdess_tfrecords.errors import UserOSError
from trainers.cluster import any_interface_socket


def check_port_free(port: int) -> None:
    """Raise ``OSError`` if a process listens on ``port`` (0: any free port, nothing to check).

    gRPC binds its port with ``SO_REUSEPORT``, so a second dispatcher or worker on
    a port in use starts beside the first without an error, and the kernel then
    splits the connections between them (a trainer fails later with ``Dataset id
    ... not found``). A plain bind, without that option, fails on such a port.
    """
    if not port:
        return
    sock, bind = any_interface_socket(port)
    try:
        sock.bind(bind)
    except OSError as e:
        raise UserOSError(f"port {port} is in use ({e.strerror}); is another dispatcher or worker "
                          "still running there? Pass another --port") from None
    finally:
        sock.close()


def start_dispatcher(port: int = 0, work_dir: str | None = None):
    """A started ``tf.data.experimental.service.DispatchServer``; its address is ``server.target``.

    Raises:
      OSError: ``port`` is in use (``check_port_free``).
    """
    import tensorflow as tf

    from ravdess_tfrecords import storage

    check_port_free(port)
    work_dir = storage.expand(work_dir) if work_dir else work_dir
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, work_dir=work_dir, fault_tolerant_mode=bool(work_dir))
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher: str, port: int = 0, worker_address: str | None = None):
    """A started ``WorkerServer`` registered with ``dispatcher`` (``HOST:PORT``, no scheme).

    Raises:
      OSError: ``port`` is in use (``check_port_free``).
    """
    import tensorflow as tf

    check_port_free(port)
    dispatcher = dispatcher.removeprefix("grpc://")
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=dispatcher, port=port,
        worker_address=worker_address or ("localhost:%port%" if port == 0 else f"{socket.getfqdn()}:{port}"))
    return tf.data.experimental.service.WorkerServer(config)
