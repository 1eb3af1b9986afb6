"""What every converter pool worker needs, loaded once by the forkserver (``convert.worker_context``) and
inherited by each worker it forks.

In a fresh interpreter ``librosa.feature.mfcc`` pulls in scipy.signal and numba's cache (~1.8 CPU-s), dlib
builds its face detector from the embedded model (~0.3 CPU-s) and imageio-ffmpeg runs the binary it finds: once
per run instead of once per worker, and a worker that replaces a crashed one starts at once.

Only a speed-up: what fails here (no file handle left, no memory) is left for the worker to do again, where its
error is reported as the converter reports it.
"""

import contextlib

import librosa.feature.spectral  # noqa: F401 -- audio.mfcc's librosa.feature.mfcc
import PIL.ImageFile  # noqa: F401 -- faces.crop's resize
import threadpoolctl  # noqa: F401 -- audio.mfcc's thread limit

from ravdess_tfrecords.conversion import convert, faces, ffmpeg  # noqa: F401 -- the worker's own code

for warm in (faces.detector, ffmpeg.executable):  # both cached per process
    with contextlib.suppress(Exception):  # a failed preload must not take the forkserver down with it
        warm()
