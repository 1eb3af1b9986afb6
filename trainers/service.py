"""The tf.data service's servers, started in this process: what ``tools.data_service`` runs and tests start.

``trainers.data.scale_out`` sends a run's training input to them (``--data_service``).
"""

from __future__ import annotations

import socket


def start_dispatcher(port: int = 0, work_dir: str | None = None):
    """A started ``tf.data.experimental.service.DispatchServer``; its address is ``server.target``."""
    import tensorflow as tf

    from ravdess_tfrecords import storage

    work_dir = storage.expand(work_dir) if work_dir else work_dir
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, work_dir=work_dir, fault_tolerant_mode=bool(work_dir))
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher: str, port: int = 0, worker_address: str | None = None):
    """A started ``WorkerServer`` registered with ``dispatcher`` (``HOST:PORT``, no scheme)."""
    import tensorflow as tf

    dispatcher = dispatcher.removeprefix("grpc://")
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=dispatcher, port=port,
        worker_address=worker_address or ("localhost:%port%" if port == 0 else f"{socket.getfqdn()}:{port}"))
    return tf.data.experimental.service.WorkerServer(config)
