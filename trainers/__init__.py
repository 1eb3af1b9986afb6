"""absl entry points over the ravdess_tfrecords library.

* ``python -m trainers.fit``: train (one split, or every fold), evaluate, export.
* ``python -m trainers.evaluate``: re-evaluate a saved model directory.
* ``python -m trainers.predict``: emotions of raw mp4 clips, with the training preprocessing.

``train_lib`` (training loop, callbacks, metrics, export) and ``predict_lib``
(raw clip -> probabilities) hold the logic; the entry points only parse flags.
"""
