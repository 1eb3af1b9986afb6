"""The reading half: converted shards -> speaker splits -> ``tf.data`` with on-graph augmentation,
or -> a random-access data source of numpy examples without TensorFlow.

Imports nothing of ``ravdess_tfrecords.conversion``. With TensorFlow (``[tf]``): ``builder`` (``Builder``,
``load``), ``pipeline``, ``augment``, ``verify``. Without it: ``info`` (``ravdess_info.json``), ``splits``,
``selection`` (which records a split reads, in what order), ``data_source`` (``data_source``), ``example_proto``.
On any Keras 3 backend: ``augment_ops`` and ``augment_layer`` (the model's ``AugmentLayer``).
"""
