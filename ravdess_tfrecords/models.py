"""Keras functional emotion models: audio branch, visual branch, fusion, baselines.

Every model is a ``keras.Model`` built from named sub-models, so a reader (or a
test) can find each part by name:

* ``audio_branch``: ``(B, 24, M, 1)`` float32 standardized MFCCs ->
  ``(B, 128)``. The M axis is time: BLSTM 64 (return sequences), Dropout 0.5,
  BLSTM 64, Dense 128 ReLU.
* ``visual_branch``: ``(B, 6, 64, 64, 3)`` float32 frames in [0, 1] ->
  ``(B, 128)``. A frame backbone (``vgg``, ``resnet``) applied frame-wise with
  ``TimeDistributed``, or a 3D-conv net (``c3d``) over the frame stack, gives a
  ``(B, 6, C)`` sequence; ``temporal`` pools it (``max`` over time) or runs a
  recurrent layer (``gru``, ``lstm``); Dense 128 ReLU.
* head: ``Concatenate`` of the branch outputs (fusion only), Dense 256 ReLU,
  Dense ``num_classes`` softmax -> ``(B, num_classes)`` float32 probabilities.

``build_model(model="fusion")`` returns ``Model(inputs=[input_audio,
input_video], outputs=output)``; ``model="audio"`` / ``"video"`` are the
unimodal baselines (one input each, same head) for ablation. ``select_inputs``
turns the pipeline's ``(audio, video)`` pair into whatever a model takes.

Only TensorFlow (Keras 3 as ``tf.keras``) is imported here.
"""

from __future__ import annotations

from collections.abc import Sequence

from tensorflow import keras

from ravdess_tfrecords.labels import NUM_CLASSES
from ravdess_tfrecords.schema import INPUT_NAMES, NUM_MFCC, VIDEO_SHAPE

layers = keras.layers

AUDIO_INPUT, VIDEO_INPUT = INPUT_NAMES
MODELS = ("fusion", "audio", "video")
BACKBONES = ("vgg", "resnet", "c3d")
TEMPORALS = ("max", "gru", "lstm")

# The seed notebook's sizes (MISSION.md, "Models").
AUDIO_UNITS = 64
AUDIO_DROPOUT = 0.5
BRANCH_UNITS = 128
FUSION_UNITS = 256


def audio_branch(audio_frames: int, *, name: str = "audio_branch") -> keras.Model:
    """BLSTM 64 (sequences) -> Dropout 0.5 -> BLSTM 64 -> Dense 128 ReLU.

    Args:
      audio_frames: M, the padded MFCC frame count (``dataset_info.json``).

    Returns:
      A model ``(B, 24, M, 1)`` float32 -> ``(B, 128)`` float32.
    """
    inputs = keras.Input((NUM_MFCC, audio_frames, 1), name=AUDIO_INPUT)
    # (24, M, 1) -> (M, 24): one 24-coefficient vector per time step.
    x = layers.Permute((2, 1, 3), name="time_major")(inputs)
    x = layers.Reshape((audio_frames, NUM_MFCC), name="mfcc_sequence")(x)
    x = layers.Bidirectional(layers.LSTM(AUDIO_UNITS, return_sequences=True), name="blstm_1")(x)
    x = layers.Dropout(AUDIO_DROPOUT, name="audio_dropout")(x)
    x = layers.Bidirectional(layers.LSTM(AUDIO_UNITS), name="blstm_2")(x)
    x = layers.Dense(BRANCH_UNITS, activation="relu", name="audio_hidden")(x)
    return keras.Model(inputs, x, name=name)


def _conv_bn_relu(x, filters: int, name: str, strides: int = 1):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def vgg_backbone(filters: Sequence[int] = (32, 64, 128, 256), *, name: str = "vgg") -> keras.Model:
    """VGG-like frame net: per block Conv3x3 + BN + ReLU + MaxPool 2x2; then global average pooling.

    Returns:
      A model ``(B, 64, 64, 3)`` -> ``(B, filters[-1])``.
    """
    inputs = keras.Input(VIDEO_SHAPE[1:], name="frame")
    x = inputs
    for i, f in enumerate(filters, 1):
        x = _conv_bn_relu(x, f, f"block{i}")
        x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, x, name=name)


def _residual_block(x, filters: int, strides: int, name: str):
    """Basic ResNet block (two 3x3 convs); 1x1 projection shortcut when the shape changes."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = _conv_bn_relu(x, filters, f"{name}_a", strides=strides)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(y)
    y = layers.BatchNormalization(name=f"{name}_b_bn")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def resnet_backbone(filters: Sequence[int] = (32, 64, 128, 256), *, name: str = "resnet") -> keras.Model:
    """ResNet-style frame net: stride-2 stem, one residual block per stage (stride 2 after the first).

    Returns:
      A model ``(B, 64, 64, 3)`` -> ``(B, filters[-1])``.
    """
    inputs = keras.Input(VIDEO_SHAPE[1:], name="frame")
    x = _conv_bn_relu(inputs, filters[0], "stem", strides=2)
    for i, f in enumerate(filters, 1):
        x = _residual_block(x, f, strides=1 if i == 1 else 2, name=f"stage{i}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, x, name=name)


def c3d_sequence(filters: Sequence[int] = (32, 64, 128, 256), *, name: str = "c3d") -> keras.Model:
    """3D-conv net over the frame stack: per block Conv3D 3x3x3 + BN + ReLU + MaxPool (1, 2, 2).

    Pooling is spatial only, so the 6 time steps survive for the temporal layer.

    Returns:
      A model ``(B, 6, 64, 64, 3)`` -> ``(B, 6, filters[-1])``.
    """
    inputs = keras.Input(VIDEO_SHAPE, name="frames")
    x = inputs
    for i, f in enumerate(filters, 1):
        x = layers.Conv3D(f, 3, padding="same", use_bias=False, name=f"block{i}_conv3d")(x)
        x = layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = layers.ReLU(name=f"block{i}_relu")(x)
        x = layers.MaxPooling3D((1, 2, 2), name=f"block{i}_pool")(x)
    x = layers.TimeDistributed(layers.GlobalAveragePooling2D(), name="frame_gap")(x)
    return keras.Model(inputs, x, name=name)


def visual_branch(
    backbone: str = "vgg",
    temporal: str = "max",
    *,
    filters: Sequence[int] = (32, 64, 128, 256),
    name: str = "visual_branch",
) -> keras.Model:
    """Frame-wise backbone -> temporal pooling/RNN -> Dense 128 ReLU.

    Args:
      backbone: ``vgg`` or ``resnet`` (a frame net under ``TimeDistributed``) or
        ``c3d`` (3D convolutions over the stack).
      temporal: ``max`` (max over the 6 time steps), ``gru`` or ``lstm`` (128 units).
      filters: channels per block/stage of the backbone.

    Returns:
      A model ``(B, 6, 64, 64, 3)`` float32 in [0, 1] -> ``(B, 128)`` float32.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"visual_backbone must be one of {BACKBONES}, got {backbone!r}")
    if temporal not in TEMPORALS:
        raise ValueError(f"temporal must be one of {TEMPORALS}, got {temporal!r}")
    inputs = keras.Input(VIDEO_SHAPE, name=VIDEO_INPUT)
    if backbone == "c3d":
        x = c3d_sequence(filters)(inputs)
    else:
        frame_net = vgg_backbone(filters) if backbone == "vgg" else resnet_backbone(filters)
        x = layers.TimeDistributed(frame_net, name="framewise")(inputs)
    # x: (B, 6, C)
    if temporal == "max":
        x = layers.GlobalMaxPooling1D(name="temporal_max")(x)
    elif temporal == "gru":
        x = layers.GRU(BRANCH_UNITS, name="temporal_gru")(x)
    else:
        x = layers.LSTM(BRANCH_UNITS, name="temporal_lstm")(x)
    x = layers.Dense(BRANCH_UNITS, activation="relu", name="visual_hidden")(x)
    return keras.Model(inputs, x, name=name)


def _head(x, num_classes: int):
    x = layers.Dense(FUSION_UNITS, activation="relu", name="fusion_dense")(x)
    # float32 whatever the mixed-precision policy: a bfloat16/float16 softmax loses the small probabilities
    # the cross-entropy takes the log of.
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="emotion")(x)


def build_model(
    model: str = "fusion",
    *,
    audio_frames: int,
    num_classes: int = NUM_CLASSES,
    visual_backbone: str = "vgg",
    temporal: str = "max",
    filters: Sequence[int] = (32, 64, 128, 256),
) -> keras.Model:
    """The fusion model or a unimodal baseline (uncompiled).

    Args:
      model: ``fusion`` (inputs ``[audio, video]``), ``audio`` or ``video``.
      audio_frames: M from ``dataset_info.json``.
      num_classes: 7 (neutral and calm merged) or 8.
      visual_backbone, temporal, filters: see ``visual_branch``.

    Returns:
      A ``keras.Model`` named ``{model}_model`` whose output is ``(B,
      num_classes)`` float32 softmax probabilities.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if audio_frames < 1:
        raise ValueError(f"audio_frames must be positive, got {audio_frames}")
    input_audio = keras.Input((NUM_MFCC, audio_frames, 1), name=AUDIO_INPUT)
    input_video = keras.Input(VIDEO_SHAPE, name=VIDEO_INPUT)
    if model == "audio":
        inputs = input_audio
        hidden = audio_branch(audio_frames)(input_audio)
    elif model == "video":
        inputs = input_video
        hidden = visual_branch(visual_backbone, temporal, filters=filters)(input_video)
    else:
        inputs = [input_audio, input_video]
        audio_hidden = audio_branch(audio_frames)(input_audio)
        video_hidden = visual_branch(visual_backbone, temporal, filters=filters)(input_video)
        hidden = layers.Concatenate(name="fusion_concat")([audio_hidden, video_hidden])
    output = _head(hidden, num_classes)
    return keras.Model(inputs=inputs, outputs=output, name=f"{model}_model")


def input_names(model: keras.Model) -> tuple[str, ...]:
    """The names of a model's inputs, in order: a subset of ``("audio", "video")``."""
    return tuple(t.name for t in model.inputs)


def select_inputs(names: Sequence[str], audio, video):
    """Arrange ``audio`` ``(B, 24, M, 1)`` and ``video`` ``(B, 6, 64, 64, 3)`` for a model.

    Args:
      names: ``input_names(model)``.
      audio, video: tensors or arrays.

    Returns:
      ``[audio, video]`` for the fusion model, the one tensor for a baseline.
    """
    by_name = {AUDIO_INPUT: audio, VIDEO_INPUT: video}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"model inputs {unknown} are not {AUDIO_INPUT!r}/{VIDEO_INPUT!r}")
    picked = [by_name[n] for n in names]
    return picked[0] if len(picked) == 1 else picked
