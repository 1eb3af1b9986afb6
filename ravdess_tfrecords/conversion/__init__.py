"""The writing half: RAVDESS clips -> preprocessing (ffmpeg, librosa, dlib) -> sharded TFRecords.

Needs the ``[convert]`` extra (librosa, dlib-bin, imageio-ffmpeg, pillow, tqdm).
Modules: ``convert`` (the CLI and the local pool), ``beam_convert`` (the same on
Apache Beam), ``preprocess`` (one clip), ``audio``, ``video``, ``faces``,
``ffmpeg``, ``sources`` (folders, zips, ``tf.io.gfile`` paths), ``storage``,
``writer`` (staged, atomic publishing), ``errors``, ``progress``, ``synthetic``.
It meets the reading half only at ``ravdess_tfrecords.schema``.
"""
