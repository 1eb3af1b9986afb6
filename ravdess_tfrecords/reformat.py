"""Rewrite a converted directory's shards as ArrayRecord (or back to TFRecord), without reconverting.

    python -m ravdess_tfrecords.reformat --data_dir=/data/ravdess-tfrecords --output=/data/ravdess-array-record

The command line itself is ``ravdess_tfrecords.conversion.reformat``. This entry point first checks
that ``array-record`` (in the base install) is importable: without it, one ``error:`` line and exit 2.
"""

from ravdess_tfrecords import conversion


def run() -> None:
    """Console-script entry point (``ravdess-reformat``)."""
    conversion.require_extra("ravdess_tfrecords.reformat", modules=("array_record",))
    from ravdess_tfrecords.conversion import reformat

    reformat.run()


if __name__ == "__main__":
    run()
