"""The ``tf.distribute`` strategy of a run, chosen by the caller and passed down to the loop.

As in tensorflow/models ``official/common/distribute_utils.py``: the entry point
builds the strategy once (``cv.run`` for every fold) and ``loop.train`` builds
its model under ``strategy.scope()``; the loop never picks one.
"""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored")
# Values of the old --distribution_strategy flag that are not STRATEGIES.
ALIASES = {"default": "one_device"}


def canonical(name: str) -> str:
    """``name`` as one of ``STRATEGIES`` (aliases resolved).

    Raises:
      ValueError: an unknown name.
    """
    name = ALIASES.get(name, name)
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES} (or {', '.join(ALIASES)}), got {name!r}")
    return name


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy called ``name``.

    * ``one_device`` (alias ``default``): TensorFlow's default strategy: the first GPU, else the CPU.
    * ``mirrored``: ``MirroredStrategy`` over every local GPU (the CPU if none); the global batch
      (``--batch_size``) is split evenly over the replicas.
    * ``auto``: ``mirrored`` with two or more local GPUs, else ``one_device``.
    """
    name = canonical(name)
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "one_device"
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
