"""``python -m ravdess_tfrecords.convert``: the converter's command line, kept at its documented name.

The converter itself is ``ravdess_tfrecords.conversion.convert``.
"""

from ravdess_tfrecords.conversion.convert import run

if __name__ == "__main__":
    run()
