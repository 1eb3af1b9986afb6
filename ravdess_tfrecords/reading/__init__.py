"""The reading half: converted shards -> speaker splits -> ``tf.data`` with on-graph augmentation.

Needs TensorFlow and numpy only, and imports nothing of ``ravdess_tfrecords.conversion``.
Modules: ``builder`` (``Builder``, ``load``), ``pipeline``, ``augment``, ``splits``, ``verify``;
``augment_ops`` and ``augment_layer`` (the model's ``AugmentLayer``) use Keras alone, on any backend.
"""
