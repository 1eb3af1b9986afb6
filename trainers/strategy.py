"""The ``tf.distribute`` strategy of a run, chosen by the caller and passed down to the loop.

As in tensorflow/models ``official/common/distribute_utils.py``: the entry point
builds the strategy once (``cv.run`` for every fold) and ``loop.train`` builds
its model under ``strategy.scope()``; the loop never picks one.
"""

from __future__ import annotations

import tensorflow as tf

from trainers import cluster
from trainers.cluster import tf_config
from trainers.config import canonical


def distribution_strategy(name: str, *, worker_timeout: float = cluster.DEFAULT_WORKER_TIMEOUT_S
                          ) -> tf.distribute.Strategy:
    """The strategy called ``name``.

    * ``one_device`` (alias ``default``): TensorFlow's default strategy: the first GPU, else the CPU.
    * ``mirrored``: ``MirroredStrategy`` over every local GPU; without one, over every logical
      CPU device (one unless ``tf.config.set_logical_device_configuration`` made more, as the
      tests do to run two replicas on a CPU). The global batch (``--batch_size``) is split
      evenly over the replicas.
    * ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the cluster in ``TF_CONFIG``, every
      local GPU (or the CPU) of every worker; the global batch is split over all replicas. Must
      be built before TensorFlow runs any op; applies ``trainers.keras_multi_worker.patch``.
    * ``auto``: ``mirrored`` with two or more local GPUs, else ``one_device`` (never multi-worker).

    ``worker_timeout``: seconds ``multi_worker`` waits for the cluster's other
    tasks, then for TensorFlow to form the cluster (0: for ever); see ``trainers.cluster``.

    Raises:
      ValueError: an unknown name; ``multi_worker`` without a usable ``TF_CONFIG``.
      TimeoutError: ``multi_worker``: a task of the cluster did not start within ``worker_timeout``.
    """
    name = canonical(name)
    if name == "multi_worker":
        config = tf_config()
        from trainers import keras_multi_worker

        keras_multi_worker.patch()
        cluster.wait_for_peers(config, worker_timeout)  # in Python: says what it waits for, can be stopped
        with cluster.building_strategy(worker_timeout):
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        if cluster.installed():
            cluster.stop_on_signals()  # again: TensorFlow's coordination service took SIGTERM over
        return strategy
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "one_device"
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    return tf.distribute.get_strategy()


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` spans two or more workers (collectives between processes)."""
    extended = strategy.extended
    return bool(getattr(extended, "_in_multi_worker_mode", lambda: False)())


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Processes (workers, chief included) that ``strategy`` spans: 1 off a cluster."""
    if not is_multi_worker(strategy):
        return 1
    return strategy.num_replicas_in_sync // len(strategy.extended.worker_devices)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the model directory: the chief (or worker 0 without one); True off a cluster."""
    return bool(strategy.extended.should_checkpoint) if is_multi_worker(strategy) else True


def task_name(strategy: tf.distribute.Strategy) -> str:
    """``worker_1``-style name of this process in its cluster (``chief`` off a cluster)."""
    if not is_multi_worker(strategy):
        return "chief"
    resolver = strategy.cluster_resolver
    return f"{resolver.task_type}_{resolver.task_id}"


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Return once every worker of ``strategy`` has called it (a one-number all-reduce); off a cluster at once.

    Orders what one worker writes before what the others read (``trainers.loop._write_dir``).
    A collective: every worker must call it.
    """
    if is_multi_worker(strategy):
        strategy.reduce("SUM", strategy.run(tf.function(lambda: tf.ones([]))), axis=None)


MOVING_MEAN, MOVING_VARIANCE = "moving_mean", "moving_variance"  # Keras' BatchNormalization's variable names


def pooled_variance(means: tf.Tensor, variances: tf.Tensor, mean_of_squares: tf.Tensor | None = None) -> tf.Tensor:
    """The variance of the union of R equal-sized groups: the mean of the variances plus the variance of the means.

    Args:
      means, variances: float ``(R, ...)``, group r's mean and variance; or, with ``mean_of_squares``, the
        means over the groups already: ``means`` = mean of the means ``(...)``, ``variances`` = mean of the
        variances, ``mean_of_squares`` = mean of the squared means (what three all-reduces give).

    Returns:
      float ``(...)``; the variance of the means is clipped at 0 (float rounding of ``E[m^2] - E[m]^2``).
    """
    if mean_of_squares is None:
        means, variances, mean_of_squares = (tf.reduce_mean(t, axis=0) for t in (means, variances, means**2))
    return variances + tf.maximum(mean_of_squares - means**2, 0.0)


def average_unsynced_variables(model, strategy: tf.distribute.Strategy) -> int:
    """Pool every float non-trainable variable of ``model`` over all replicas; returns how many.

    Gradients are all-reduced, so trainable weights agree on every replica, but
    Keras' batch-norm moving statistics are updated from each replica's own
    batches and never synchronized: each worker ends with its own. Pooling them
    (as a synchronized batch norm would, once) makes every worker hold the same
    model before evaluation and saving: a moving mean (and any other such
    variable) becomes the mean over the replicas, a moving variance the variance
    of the replicas' clips together, ``pooled_variance`` (replicas train on equal
    batches), not the mean of the variances, which leaves out how far the
    replicas' means lie apart. A collective: every worker must call it.
    """
    variables = [v for v in model.non_trainable_variables if v.dtype.startswith("float")]
    # Each moving variance with its layer's moving mean: the variable just before it (BatchNormalization
    # creates the two in that order), with the same path but the name (paths alone may repeat in a model).
    paired = [i for i, v in enumerate(variables) if i and v.path.endswith(MOVING_VARIANCE)
              and variables[i - 1].path == v.path[: -len(MOVING_VARIANCE)] + MOVING_MEAN]

    def local():  # in replica context a mirrored variable reads as this replica's own copy
        values = [tf.identity(v.value) for v in variables]
        return values, [tf.square(values[i - 1]) for i in paired]

    local_values, local_squares = strategy.run(tf.function(local))
    pooled = [strategy.reduce("MEAN", value, axis=None) for value in local_values]
    squares = [strategy.reduce("MEAN", value, axis=None) for value in local_squares]
    for i, mean_of_squares in zip(paired, squares, strict=True):
        pooled[i] = pooled_variance(pooled[i - 1], pooled[i], mean_of_squares)
    for variable, value in zip(variables, pooled, strict=True):
        variable.assign(value)
    return len(variables)
