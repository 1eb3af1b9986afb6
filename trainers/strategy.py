"""The ``tf.distribute`` strategy of a run, chosen by the caller and passed down to the loop."""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("default", "mirrored")


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """``default``: the default strategy (one device); ``mirrored``: ``MirroredStrategy`` over local devices."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"distribution_strategy must be one of {STRATEGIES}, got {name!r}")
