"""Check a converted directory against its metadata: re-hash every shard, re-parse every record.

    python -m ravdess_tfrecords.verify --data_dir=/data/ravdess-tfrecords

The checker itself is ``ravdess_tfrecords.reading.verify`` (the documented command line lives here).
"""

from ravdess_tfrecords.reading.verify import run

if __name__ == "__main__":
    run()
