"""The named choices of ``ravdess_tfrecords.models`` (model, backbone, temporal pooling, audio read-out).

Only names (and the check of a weights file's path), no Keras: an entry point defines and checks its flags
with them before TensorFlow loads (``trainers.fit``); ``models`` builds what they name and re-exports them.
"""

from __future__ import annotations

from ravdess_tfrecords import storage
from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.schema import INPUT_NAMES

MODELS = ("fusion", "audio", "video")
AUDIO_INPUT, VIDEO_INPUT = INPUT_NAMES
# What each model takes, in its inputs' order.
MODEL_INPUTS = {"fusion": (AUDIO_INPUT, VIDEO_INPUT), "audio": (AUDIO_INPUT,), "video": (VIDEO_INPUT,)}
# Frame backbones from keras.applications, which have ImageNet weights: --visual_backbone -> constructor.
# Both take RGB in [0, 255] and rescale it themselves (include_preprocessing); they accept 64x64 frames
# (at least 32x32), on which the ImageNet weights (trained at 224x224) still give useful features.
APPLICATIONS = {"mobilenet_v3_small": "MobileNetV3Small", "mobilenet_v3_large": "MobileNetV3Large"}
# The specification's own backbones (MISSION.md "Models"), trained from scratch.
OWN_BACKBONES = ("vgg", "resnet", "c3d")
BACKBONES = (*OWN_BACKBONES, *APPLICATIONS)
# --visual_weights: random initialization, ImageNet (keras.applications backbones only); anything else is the
# path of a weights file of the backbone (``models.load_backbone_weights``).
NAMED_WEIGHTS = ("none", "imagenet")
TEMPORALS = ("max", "gru", "lstm")
# How the audio branch reads the second BLSTM: its final states (the seed's), or the mean of its outputs.
AUDIO_POOLINGS = ("last", "mean")
# A normalization of the MFCC vectors in front of the audio BLSTMs: none (the seed's), or batch
# normalization per coefficient (statistics over the training batches, the real frames only with a mask).
AUDIO_INPUT_NORMS = ("none", "batch")


def check_weights_file(path: str) -> str:
    """``path`` (``~`` expanded) if it names an existing Keras weights file (``.weights.h5``, ``.h5``).

    Any ``tf.io.gfile`` path; a local one is checked without TensorFlow (``trainers.fit`` does so before it
    loads).

    Raises:
      FileNotFoundError: no file at ``path``.
      UserError: a file of another kind.
    """
    path = storage.expand(path)
    if not storage.exists(path):
        raise FileNotFoundError(f"--visual_weights: no such file: {path}")
    if not path.endswith(".h5"):
        raise UserError(f"{path}: --visual_weights takes a Keras weights file (.weights.h5 or .h5), "
                        "or none, or imagenet")
    return path
