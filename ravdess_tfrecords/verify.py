"""``python -m ravdess_tfrecords.verify``: the shard checker's command line, kept at its documented name.

The checker itself is ``ravdess_tfrecords.reading.verify``.
"""

from ravdess_tfrecords.reading.verify import run

if __name__ == "__main__":
    run()
