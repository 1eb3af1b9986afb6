"""Convert RAVDESS clips to per-speaker TFRecord shards (the converter's documented command line).

    python -m ravdess_tfrecords.convert --input=/data/ravdess --output=/data/ravdess-tfrecords
    python -m ravdess_tfrecords.convert ... --runner=DataflowRunner [Beam pipeline options]

The command line itself is ``ravdess_tfrecords.conversion.cli``. This entry point
first checks that the ``[convert]`` extra is installed: without it, one ``error:``
line says what to install and the exit status is 2.
"""

from ravdess_tfrecords import conversion


def run() -> None:
    """Console-script entry point (``ravdess-convert``)."""
    conversion.require_extra("the converter")
    from ravdess_tfrecords.conversion import cli

    cli.run()


if __name__ == "__main__":
    run()
