"""Keras functional emotion models: audio branch, visual branch, fusion, baselines.

Every model is a ``keras.Model`` built from named sub-models, so a reader (or a
test) can find each part by name:

* ``audio_branch``: ``(B, 24, M, 1)`` float32 standardized MFCCs ->
  ``(B, 128)``. The M axis is time: BLSTM 64 (return sequences), Dropout 0.5,
  BLSTM 64, Dense 128 ReLU.
* ``visual_branch``: ``(B, 6, 64, 64, 3)`` float32 frames in [0, 1] ->
  ``(B, 128)``. A frame backbone (``vgg``, ``resnet``, or a ``keras.applications``
  network such as ``mobilenet_v3_small`` that can start from ImageNet weights)
  applied frame-wise with ``TimeDistributed``, or a 3D-conv net (``c3d``) over the
  frame stack, gives a ``(B, 6, C)`` sequence; ``temporal`` pools it (``max`` over time) or runs a
  recurrent layer (``gru``, ``lstm``); Dense 128 ReLU.
* head: ``Concatenate`` of the branch outputs (fusion only), Dense 256 ReLU,
  Dense ``num_classes`` softmax -> ``(B, num_classes)`` float32 probabilities.

``build_model(model="fusion")`` returns ``Model(inputs=[input_audio,
input_video], outputs=output)``; ``model="audio"`` / ``"video"`` are the
unimodal baselines (one input each, same head) for ablation. ``select_inputs``
turns the pipeline's ``(audio, video)`` pair into whatever a model takes.

Only Keras 3 is imported here (``keras.layers`` and ``keras.applications``), so every model builds and
trains under any Keras backend: ``KERAS_BACKEND=tensorflow`` (the default), ``jax`` or ``torch``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence

import keras

from ravdess_tfrecords import storage
from ravdess_tfrecords.errors import UserError, UserOSError
from ravdess_tfrecords.labels import NUM_CLASSES
from ravdess_tfrecords.model_choices import (
    APPLICATIONS,
    AUDIO_INPUT,
    AUDIO_INPUT_NORMS,
    AUDIO_POOLINGS,
    BACKBONES,
    MODELS,
    NAMED_WEIGHTS,
    TEMPORALS,
    VIDEO_INPUT,
    check_weights_file,
)
from ravdess_tfrecords.model_choices import (
    MODEL_INPUTS as MODEL_INPUTS,  # re-exported: what each model takes
)
from ravdess_tfrecords.schema import NUM_MFCC, VIDEO_SHAPE

layers = keras.layers

VISUAL_BRANCH = "visual_branch"

# The seed notebook's sizes (MISSION.md, "Models").
AUDIO_UNITS = 64
AUDIO_DROPOUT = 0.5
BRANCH_UNITS = 128
FUSION_UNITS = 256


def audio_branch(audio_frames: int, *, pooling: str = "last", mask_padding: bool = False,
                 input_norm: str = "none", name: str = "audio_branch") -> keras.Model:
    """BLSTM 64 (sequences) -> Dropout 0.5 -> BLSTM 64 -> Dense 128 ReLU.

    Args:
      audio_frames: M, the padded MFCC frame count (``dataset_info.json``).
      pooling: ``last``: the second BLSTM's final states (the seed's); ``mean``: the mean of its
        outputs over the time steps (the real frames only with ``mask_padding``).
      mask_padding: the BLSTMs skip the frames that are all zeros (the converter's pre-padding,
        and frames a time mask blanked): a ``Masking`` layer in front.
      input_norm: ``batch``: ``BatchNormalization`` of each of the 24 coefficients over the batch's
        frames, in front of the first BLSTM (``AUDIO_INPUT_NORMS``).

    Returns:
      A model ``(B, 24, M, 1)`` float32 -> ``(B, 128)`` float32.
    """
    if pooling not in AUDIO_POOLINGS:
        raise UserError(f"audio pooling must be one of {', '.join(AUDIO_POOLINGS)}, got {pooling!r}")
    if input_norm not in AUDIO_INPUT_NORMS:
        raise UserError(f"audio input norm must be one of {', '.join(AUDIO_INPUT_NORMS)}, got {input_norm!r}")
    inputs = keras.Input((NUM_MFCC, audio_frames, 1), name=AUDIO_INPUT)
    # (24, M, 1) -> (M, 24): one 24-coefficient vector per time step.
    x = layers.Permute((2, 1, 3), name="time_major")(inputs)
    x = layers.Reshape((audio_frames, NUM_MFCC), name="mfcc_sequence")(x)
    if mask_padding:
        x = layers.Masking(0.0, name="padding_mask")(x)
    if input_norm == "batch":
        x = layers.BatchNormalization(name="mfcc_norm")(x)
    x = layers.Bidirectional(layers.LSTM(AUDIO_UNITS, return_sequences=True), name="blstm_1")(x)
    x = layers.Dropout(AUDIO_DROPOUT, name="audio_dropout")(x)
    x = layers.Bidirectional(layers.LSTM(AUDIO_UNITS, return_sequences=pooling == "mean"), name="blstm_2")(x)
    if pooling == "mean":
        x = layers.GlobalAveragePooling1D(name="audio_mean")(x)
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


def application_backbone(backbone: str, *, imagenet: bool = False) -> keras.Model:
    """A ``keras.applications`` frame net (``APPLICATIONS``) without its classifier, average-pooled.

    It is exactly ``keras.applications.<Name>(input_shape=(64, 64, 3), include_top=False,
    pooling="avg")``, so a weights file of that model loads into it (``load_backbone_weights``).

    Args:
      backbone: a key of ``APPLICATIONS``.
      imagenet: start from Keras' ImageNet weights (downloaded once to ``~/.keras/models``).

    Returns:
      A model ``(B, 64, 64, 3)`` float32 RGB in [0, 255] -> ``(B, C)`` (C = 576 for ``mobilenet_v3_small``).
    """
    constructor = getattr(keras.applications, APPLICATIONS[backbone])
    with warnings.catch_warnings():
        # Keras warns that its weights were trained at 224x224; docs/training.md says what 64x64 means for them.
        warnings.filterwarnings("ignore", message=".*Weights for input shape")
        try:
            return constructor(input_shape=VIDEO_SHAPE[1:], include_top=False, pooling="avg",
                               weights="imagenet" if imagenet else None)
        except Exception as e:  # keras.utils.get_file raises a bare Exception when the download fails
            if not imagenet or not ("URL fetch failure" in str(e) or isinstance(e, OSError)):
                raise
            raise UserOSError(
                f"cannot download the ImageNet weights of {backbone} ({_one_line(e)}); on a machine without "
                "internet, copy Keras' weights file into ~/.keras/models/ or pass its path as --visual_weights"
            ) from None


def load_backbone_weights(net: keras.Model, path: str, backbone: str) -> None:
    """Load a weights file into a visual backbone (``--visual_weights=PATH``).

    The file is a Keras weights file (``.weights.h5``, or a legacy ``.h5`` such as the
    ImageNet file Keras downloads) of the same network: ``net.save_weights(path)`` of a
    ``visual_backbone(model)``, or of ``application_backbone(backbone)``. Any ``tf.io.gfile``
    path; a remote one is copied to a local temporary file first.

    Raises:
      FileNotFoundError: no file at ``path``.
      UserError: the file is not weights of this backbone (one line naming it).
    """
    path = check_weights_file(path)
    with tempfile.TemporaryDirectory(prefix="ravdess-weights-") as scratch:
        local = path
        if not storage.is_local(path):
            local = os.path.join(scratch, os.path.basename(path))
            storage.copy(path, local)
        with warnings.catch_warnings(record=True) as caught:
            # Keras only warns when parts of a file match nothing (those layers keep their random weights):
            # here that is an error too.
            warnings.simplefilter("always")
            try:
                net.load_weights(local)
            except (ValueError, KeyError, OSError) as e:
                raise UserError(f"{path}: not weights of the {backbone} visual backbone ({_one_line(e)})") from None
        skipped = [w for w in caught if "Skipping" in str(w.message) or "could not be loaded" in str(w.message)]
        if skipped:
            raise UserError(f"{path}: not weights of the {backbone} visual backbone "
                            f"({_one_line(skipped[0].message)})")


def _one_line(error: Exception | Warning) -> str:
    """Keras' load errors run over many lines (with the variables' values): their gist."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = lines[0]
    if text.endswith(":") and len(lines) > 1:  # "A total of 8 objects could not be loaded. Example ...:" + why
        text = f"{text} {lines[1].split(' Target variable')[0]}"
    return text if len(text) <= 400 else text[:397] + "..."


def visual_branch(
    backbone: str = "vgg",
    temporal: str = "max",
    *,
    filters: Sequence[int] = (32, 64, 128, 256),
    weights: str = "none",
    name: str = VISUAL_BRANCH,
) -> keras.Model:
    """Frame-wise backbone -> temporal pooling/RNN -> Dense 128 ReLU.

    Args:
      backbone: ``vgg``, ``resnet`` or a ``keras.applications`` net (``APPLICATIONS``; a frame
        net under ``TimeDistributed``, fed the frames times 255) or ``c3d`` (3D convolutions
        over the stack).
      temporal: ``max`` (max over the 6 time steps), ``gru`` or ``lstm`` (128 units).
      filters: channels per block/stage of ``vgg``, ``resnet`` and ``c3d``.
      weights: the backbone's start: ``none`` (random), ``imagenet`` (``APPLICATIONS`` only),
        or the path of a weights file (``load_backbone_weights``).

    Returns:
      A model ``(B, 6, 64, 64, 3)`` float32 in [0, 1] -> ``(B, 128)`` float32.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"visual_backbone must be one of {BACKBONES}, got {backbone!r}")
    if temporal not in TEMPORALS:
        raise ValueError(f"temporal must be one of {TEMPORALS}, got {temporal!r}")
    if weights == "imagenet" and backbone not in APPLICATIONS:
        raise UserError(f"--visual_weights=imagenet needs a pretrained backbone ({', '.join(APPLICATIONS)}); "
                        f"{backbone} starts from none or a weights file")
    inputs = keras.Input(VIDEO_SHAPE, name=VIDEO_INPUT)
    if backbone == "c3d":
        net = c3d_sequence(filters)
        x = net(inputs)
    elif backbone in APPLICATIONS:
        net = application_backbone(backbone, imagenet=weights == "imagenet")
        x = layers.Rescaling(255.0, name="to_0_255")(inputs)  # the applications rescale [0, 255] themselves
        x = layers.TimeDistributed(net, name="framewise")(x)
    else:
        net = vgg_backbone(filters) if backbone == "vgg" else resnet_backbone(filters)
        x = layers.TimeDistributed(net, name="framewise")(inputs)
    if weights not in NAMED_WEIGHTS:
        load_backbone_weights(net, weights, backbone)
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
    visual_weights: str = "none",
    audio_pooling: str = "last",
    mask_padding: bool = False,
    audio_input_norm: str = "none",
) -> keras.Model:
    """The fusion model or a unimodal baseline (uncompiled).

    Args:
      model: ``fusion`` (inputs ``[audio, video]``), ``audio`` or ``video``.
      audio_frames: M from ``dataset_info.json``.
      num_classes: 7 (neutral and calm merged) or 8.
      visual_backbone, temporal, filters: see ``visual_branch``.
      visual_weights: the visual backbone's start (``visual_branch``'s ``weights``).
      audio_pooling, mask_padding, audio_input_norm: see ``audio_branch`` (pooling, mask_padding, input_norm).

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
    if model != "video":
        audio = audio_branch(audio_frames, pooling=audio_pooling, mask_padding=mask_padding,
                             input_norm=audio_input_norm)
    if model == "audio":
        inputs = input_audio
        hidden = audio(input_audio)
    elif model == "video":
        inputs = input_video
        hidden = visual_branch(visual_backbone, temporal, filters=filters, weights=visual_weights)(input_video)
    else:
        inputs = [input_audio, input_video]
        audio_hidden = audio(input_audio)
        video_hidden = visual_branch(visual_backbone, temporal, filters=filters, weights=visual_weights)(input_video)
        hidden = layers.Concatenate(name="fusion_concat")([audio_hidden, video_hidden])
    output = _head(hidden, num_classes)
    return keras.Model(inputs=inputs, outputs=output, name=f"{model}_model")


def visual_backbone(model: keras.Model) -> keras.Model:
    """The visual backbone inside a built model: the frame net under ``TimeDistributed``, or ``c3d``.

    ``model`` is a ``build_model`` model, a ``visual_branch``, or a model wrapping one (the
    ``AugmentLayer`` wrapper); searched by the branch's name. ``backbone.trainable = False``
    freezes it (``--freeze_epochs``).

    Raises:
      ValueError: the model has no visual branch (the audio baseline).
    """
    branch = _find_layer(model, VISUAL_BRANCH)
    if branch is None:
        raise ValueError(f"model {model.name!r} has no visual branch")
    for layer in branch.layers:
        if isinstance(layer, layers.TimeDistributed):
            return layer.layer
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError(f"visual branch of {model.name!r} has no backbone")


def _find_layer(model: keras.Model, name: str) -> keras.Model | None:
    if model.name == name:
        return model
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found = _find_layer(layer, name)
            if found is not None:
                return found
    return None


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
