"""absl entry points over the ravdess_tfrecords library.

* ``python -m trainers.fit``: train (one split, or every fold), evaluate, export.
* ``python -m trainers.evaluate``: re-evaluate a saved model directory.
* ``python -m trainers.predict``: emotions of raw mp4 clips, with the training preprocessing.

The logic sits in small modules (``config``, ``strategy``, ``data``, ``model``,
``callbacks``, ``loop``, ``cv``, ``evaluation``, ``export``, ``model_dir``; see
``train_lib``) and ``predict_lib`` (raw clip -> probabilities); the entry points only parse flags.
"""
