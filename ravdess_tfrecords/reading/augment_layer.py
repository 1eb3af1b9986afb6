"""``AugmentLayer``: training augmentation as the model's first layer, on any Keras 3 backend.

``augment_ops`` (``keras.ops`` and ``keras.random``) does the work, so a model behind the
layer trains under ``KERAS_BACKEND=tensorflow``, ``jax`` or ``torch``; importing this module
needs no TensorFlow. ``augment`` re-exports all of it for the TensorFlow pipeline's users.
"""

from __future__ import annotations

import dataclasses

import keras

from ravdess_tfrecords.reading import augment_ops
from ravdess_tfrecords.reading.augment_ops import AugmentConfig

# Replica r of a tf.distribute strategy draws from the layer's seed plus r times this (in the
# generator's seed word, not its counter, which every draw advances): its own flips, crops, masks.
REPLICA_SEED_STRIDE = 1_000_003


class _ReplicaSeeds(keras.random.SeedGenerator):
    """A view of ``parent``: each draw advances it and adds ``[offset, 0]`` to the seed it gives.

    A ``SeedGenerator`` (what ``keras.random`` takes) without a variable of its own.
    """

    def __init__(self, parent: keras.random.SeedGenerator, offset):  # no super().__init__: no variable of its own
        self.parent, self.offset = parent, offset
        self.name, self.backend = parent.name, parent.backend

    def next(self, ordered=True):
        seed = self.parent.next(ordered)
        return seed + keras.ops.cast(keras.ops.stack([self.offset, 0]), seed.dtype)


def replica_id():
    """The id of the ``tf.distribute`` replica running this call (an int32 scalar), or None where
    there is one replica: off the TensorFlow backend, or under its default strategy.

    Only TensorFlow copies a layer's seed generator per replica: JAX's ``keras.distribution``
    runs one program over the global batch (each example its own draw), and torch has one.
    """
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf  # the TensorFlow backend is running, so it is installed and imported

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context.replica_id_in_sync_group


@keras.saving.register_keras_serializable(package="ravdess_tfrecords")
class AugmentLayer(keras.layers.Layer):
    """``augment_ops.augment_batch`` as the model's first layer: training augmentation on the accelerator.

    Input: a dict with ``audio`` float32 ``(B, 24, M, 1)`` and/or ``video`` uint8
    ``(B, 6, 64, 64, 3)`` (what ``load(..., augment_on="device")`` yields).
    Output: the same keys, ``audio`` float32, ``video`` float32 in [0, 1].

    Training (``training=True``): ``augment_batch`` drawing from the layer's
    ``keras.random.SeedGenerator`` (``seed`` makes the run reproducible; each call
    advances it by the same number of draws); same parameters for the 6 frames of
    a clip, SpecAugment masks on the real frames. Under a ``tf.distribute`` strategy
    each replica draws its own (``replica_id``). Inference: no augmentation, ``video``
    scaled by ``to_unit`` (bit-exact ``x / 255``), ``audio`` passed through: so the
    layer then equals the host pipeline's evaluation path.

    Serializable (``get_config``, registered as ``ravdess_tfrecords>AugmentLayer``):
    a model holding it saves to ``.keras`` and reloads once this module (or
    ``augment``, which imports it) is imported.
    """

    def __init__(self, config: AugmentConfig | None = None, seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # masks and scaling in float32 whatever the policy
        super().__init__(**kwargs)
        self.config = AugmentConfig() if config is None else config
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="augment_seed")

    def augment(self, inputs: dict, seed=None) -> dict:
        """The training path: ``augment_batch`` drawing from ``seed`` (default: the layer's generator,
        per replica under ``tf.distribute``)."""
        if seed is None:
            seed = self.seed_generator
            replica = replica_id()
            if replica is not None:
                seed = _ReplicaSeeds(seed, keras.ops.cast(replica, "int32") * REPLICA_SEED_STRIDE)
        return augment_ops.augment_batch(inputs, seed, self.config)

    def call(self, inputs, training=None):
        inputs = dict(inputs)
        if training and self.config.enabled:
            out = self.augment(inputs)
        else:
            out = dict(inputs)
            if "video" in out and keras.ops.dtype(out["video"]) == "uint8":
                out["video"] = augment_ops.to_unit(out["video"])
        if "video" in out:
            out["video"] = keras.ops.cast(out["video"], "float32")  # float input passed through: [0, 1] already
        return out

    def compute_output_spec(self, inputs, training=None):
        return {k: keras.KerasTensor(v.shape, dtype="float32", name=k) for k, v in dict(inputs).items()}

    def get_config(self) -> dict:
        return {**super().get_config(), "config": dataclasses.asdict(self.config), "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict) -> AugmentLayer:
        config = dict(config)
        return cls(config=AugmentConfig(**config.pop("config")), **config)


def with_augmentation(
    model: keras.Model, config: AugmentConfig | None = None, *, seed: int | None = None
) -> keras.Model:
    """``model`` behind an ``AugmentLayer``: the model to train with ``load(..., augment_on="device")``.

    Args:
      model: takes ``audio`` float32 ``(B, 24, M, 1)`` and/or ``video`` float32
        ``(B, 6, 64, 64, 3)`` in [0, 1] (``models.build_model``), by input name.
      config: the augmentations (default ``AugmentConfig()``).
      seed: the layer's ``SeedGenerator`` seed.

    Returns:
      A model named ``augmented_{model.name}`` with the same input names and order,
      ``video`` uint8 0..255; it shares ``model``'s weights (train it, then save
      ``without_augmentation(it)``). Compile it, not ``model``.
    """
    names = [t.name for t in model.inputs]
    unknown = set(names) - {"audio", "video"}
    if unknown:
        raise ValueError(f"model inputs {sorted(unknown)} are not 'audio'/'video'")
    inputs = {
        t.name: keras.Input(t.shape[1:], dtype="uint8" if t.name == "video" else "float32", name=t.name)
        for t in model.inputs
    }
    augmented = AugmentLayer(config, seed=seed, name="augment")(inputs)
    picked = [augmented[n] for n in names]
    outputs = model(picked[0] if len(picked) == 1 else picked)
    return keras.Model([inputs[n] for n in names], outputs, name=f"augmented_{model.name}")


def without_augmentation(model: keras.Model) -> keras.Model:
    """The model behind ``with_augmentation``'s layer (same weights), or ``model`` itself without one.

    Save and export this one: it takes ``video`` float32 in [0, 1], the contract of
    every saved model (``uint8 / 255``, as ``trainers.predict`` feeds it), whichever
    way it was trained, and carries no training-time augmentation.
    """
    if not any(isinstance(layer, AugmentLayer) for layer in model.layers):
        return model
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(inner) != 1:
        raise ValueError(f"{model.name}: expected one model behind the AugmentLayer, found {len(inner)}")
    return inner[0]
