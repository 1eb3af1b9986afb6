"""The workaround that lets Keras 3 ``model.fit`` train under ``MultiWorkerMirroredStrategy`` (TF backend).

With two or more workers, Keras 3.15's TensorFlow trainer fails in two places
(both only in multi-worker mode, so a one-worker run never shows them):

* ``TensorFlowTrainer._maybe_symbolic_build`` reduces the first *nested*
  per-replica input batch with ``strategy.reduce("MEAN", batch, axis=None)``,
  which collective reduce cannot take for tuple or dict inputs
  (keras-team/keras#20329). The batch is only needed for its shapes: here each
  input is replaced by its first local replica's value.
* ``reduce_per_replica(..., "mean")`` calls ``strategy.reduce("MEAN", v,
  axis=0)`` on every logged metric, and the metrics are scalars: reducing along
  axis 0 of a 0-d value fails (keras-team/keras#20585). Here scalars are
  reduced with ``axis=None`` (the mean over replicas); anything else as before.

``patch()`` replaces those two functions for the whole process and is applied
by ``trainers.strategy`` when it builds the multi-worker strategy, before any
model exists. ``tests/test_multi_worker.py`` has a canary that runs two
unpatched workers and expects each failure: when Keras fixes a bug upstream the
canary fails, and the matching half of this module should go.

Why a patch rather than tf-keras (``TF_USE_LEGACY_KERAS=1``) or a custom loop:
the two fixes are six lines each, touch nothing else, and keep one training path
(``model.fit`` with the same callbacks: backup/restore, checkpoint, early
stopping, CSV, TensorBoard) for every strategy; tf-keras would be a second Keras
with its own saving format, and a custom loop would re-implement those callbacks.
"""

from __future__ import annotations

import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tf_trainer

# The two fixes by name; ``patch(only=...)`` applies a subset (for the canary).
FIXES = ("symbolic_build", "scalar_mean")

_keras_reduce_per_replica = tf_trainer.reduce_per_replica  # what the patched one falls back to


def _first_local(value):
    """A per-replica value's first local replica; anything else as is."""
    if isinstance(value, tf.distribute.DistributedValues):
        return tf.distribute.get_strategy().experimental_local_results(value)[0]
    return value


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    """``TensorFlowTrainer._maybe_symbolic_build`` that builds from the first replica's batch (no reduce)."""
    if self._distribute_strategy is None:
        return
    if iterator is not None:
        for _, _, it in iterator:
            with self.distribute_strategy.scope():
                data_batch = tf.nest.map_structure(_first_local, next(it))
            break
    with self.distribute_strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _rank(value) -> int | None:
    if isinstance(value, tf.distribute.DistributedValues):
        value = value.values[0]
    return getattr(value, "shape", tf.TensorShape(None)).rank


def reduce_per_replica(values, strategy, reduction):
    """``trainer.reduce_per_replica`` whose multi-worker mean reduces 0-d values with ``axis=None``."""
    if reduction == "auto" and not isinstance(strategy, tf.distribute.TPUStrategy):
        reduction = "mean"
    if reduction == "mean" and tf_trainer._collective_all_reduce_multi_worker(strategy):
        return tf.nest.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=0 if _rank(v) else None), values
        )
    return _keras_reduce_per_replica(values, strategy, reduction)


def patch(only: tuple[str, ...] = FIXES) -> None:
    """Apply the fixes named in ``only`` (default both) to Keras' TF trainer; idempotent."""
    unknown = set(only) - set(FIXES)
    if unknown:
        raise ValueError(f"unknown fixes {sorted(unknown)}; choose from {FIXES}")
    if "symbolic_build" in only:
        tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    if "scalar_mean" in only:
        tf_trainer.reduce_per_replica = reduce_per_replica
