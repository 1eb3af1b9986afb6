"""The models match the specification layer by layer (MISSION.md "Models", issue 4)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from tensorflow import keras

from ravdess_tfrecords import model_choices, models

M = 20  # a short MFCC sequence keeps the LSTMs cheap; the code path is the same as M=97
layers = keras.layers


def _inner_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers of a functional model in graph order, without the InputLayer."""
    return [layer for layer in model.layers if not isinstance(layer, layers.InputLayer)]


def _check_audio_branch(branch: keras.Model) -> None:
    assert branch.name == "audio_branch"
    assert tuple(branch.input.shape) == (None, 24, M, 1)
    assert tuple(branch.output.shape) == (None, 128)
    kinds = [type(layer) for layer in _inner_layers(branch)]
    assert kinds == [
        layers.Permute,
        layers.Reshape,
        layers.Bidirectional,
        layers.Dropout,
        layers.Bidirectional,
        layers.Dense,
    ]
    _, reshape, blstm1, dropout, blstm2, dense = _inner_layers(branch)
    # Time is the M axis: the first BLSTM sees M steps of 24 coefficients.
    assert tuple(reshape.output.shape) == (None, M, 24)
    for blstm, sequences in ((blstm1, True), (blstm2, False)):
        assert isinstance(blstm.forward_layer, layers.LSTM)
        assert isinstance(blstm.backward_layer, layers.LSTM)
        assert blstm.forward_layer.units == 64
        assert blstm.forward_layer.return_sequences is sequences
    assert tuple(blstm1.output.shape) == (None, M, 128)
    assert dropout.rate == 0.5
    assert dense.units == 128
    assert dense.activation.__name__ == "relu"


def _check_visual_branch(branch: keras.Model, backbone: str, temporal: str) -> None:
    assert branch.name == "visual_branch"
    assert tuple(branch.input.shape) == (None, 6, 64, 64, 3)
    assert tuple(branch.output.shape) == (None, 128)
    body, pool, dense = _inner_layers(branch)[-3:]
    if backbone == "c3d":
        assert isinstance(body, keras.Model) and body.name == "c3d"
        convs = [layer for layer in body.layers if isinstance(layer, layers.Conv3D)]
        assert convs and all(c.kernel_size == (3, 3, 3) for c in convs)
        assert not any(isinstance(layer, layers.Conv2D) for layer in body.layers)
        # Spatial-only pooling keeps the 6 time steps.
        assert all(p.pool_size == (1, 2, 2) for p in body.layers if isinstance(p, layers.MaxPooling3D))
        assert tuple(body.output.shape)[:2] == (None, 6)
    else:
        # A frame network applied frame-wise with TimeDistributed.
        assert isinstance(body, layers.TimeDistributed)
        frame_net = body.layer
        assert isinstance(frame_net, keras.Model) and frame_net.name == backbone
        assert tuple(frame_net.input.shape) == (None, 64, 64, 3)
        kinds = {type(layer) for layer in frame_net.layers}
        assert {layers.Conv2D, layers.BatchNormalization} <= kinds
        if backbone == "vgg":
            assert layers.MaxPooling2D in kinds and layers.Add not in kinds
        else:
            assert layers.Add in kinds  # residual connections
            adds = [layer for layer in frame_net.layers if isinstance(layer, layers.Add)]
            assert len(adds) >= 3
        assert tuple(body.output.shape)[:2] == (None, 6)
    expected_pool = {"max": layers.GlobalMaxPooling1D, "gru": layers.GRU, "lstm": layers.LSTM}[temporal]
    assert type(pool) is expected_pool
    if temporal != "max":
        assert pool.units == 128 and pool.return_sequences is False
    assert dense.units == 128 and dense.activation.__name__ == "relu"


def _check_head(model: keras.Model, num_classes: int) -> None:
    fusion_dense = model.get_layer("fusion_dense")
    output = model.get_layer("emotion")
    assert fusion_dense.units == 256 and fusion_dense.activation.__name__ == "relu"
    assert output.units == num_classes and output.activation.__name__ == "softmax"
    assert model.layers[-1] is output
    assert tuple(model.output.shape) == (None, num_classes)


@pytest.mark.parametrize("backbone,temporal", list(itertools.product(model_choices.OWN_BACKBONES, models.TEMPORALS)))
def test_fusion_model_matches_spec(backbone, temporal):
    model = models.build_model("fusion", audio_frames=M, visual_backbone=backbone, temporal=temporal)
    assert models.input_names(model) == ("audio", "video")
    assert [tuple(t.shape) for t in model.inputs] == [(None, 24, M, 1), (None, 6, 64, 64, 3)]
    audio, visual = model.get_layer("audio_branch"), model.get_layer("visual_branch")
    _check_audio_branch(audio)
    _check_visual_branch(visual, backbone, temporal)
    concat = model.get_layer("fusion_concat")
    assert isinstance(concat, layers.Concatenate)
    # The concatenation joins exactly the two branches' final hidden representations.
    assert tuple(concat.output.shape) == (None, 256)
    inbound = concat._inbound_nodes[0].input_tensors
    assert [t._keras_history.operation.name for t in inbound] == ["audio_branch", "visual_branch"]
    _check_head(model, 7)


@pytest.mark.parametrize("backbone", model_choices.OWN_BACKBONES)  # the applications: test_backbone.py
def test_forward_pass_gives_probabilities(backbone):
    model = models.build_model("fusion", audio_frames=M, visual_backbone=backbone, filters=(8, 16))
    rng = np.random.default_rng(0)
    audio_x = rng.standard_normal((2, 24, M, 1)).astype("float32")
    video_x = rng.random((2, 6, 64, 64, 3)).astype("float32")
    probs = model.predict([audio_x, video_x], verbose=0)
    assert probs.shape == (2, 7) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs >= 0).all()


def test_unimodal_baselines_take_one_input_and_share_the_head():
    audio_model = models.build_model("audio", audio_frames=M)
    video_model = models.build_model("video", audio_frames=M, visual_backbone="vgg", temporal="gru")
    assert models.input_names(audio_model) == ("audio",)
    assert models.input_names(video_model) == ("video",)
    _check_audio_branch(audio_model.get_layer("audio_branch"))
    _check_visual_branch(video_model.get_layer("visual_branch"), "vgg", "gru")
    for model in (audio_model, video_model):
        _check_head(model, 7)
        assert not any(isinstance(layer, layers.Concatenate) for layer in model.layers)
    with pytest.raises(ValueError):
        audio_model.get_layer("visual_branch")
    with pytest.raises(ValueError):
        video_model.get_layer("audio_branch")


def test_eight_classes_and_bad_options():
    model = models.build_model("fusion", audio_frames=M, num_classes=8)
    _check_head(model, 8)
    with pytest.raises(ValueError, match="visual_backbone"):
        models.build_model(audio_frames=M, visual_backbone="inception")
    with pytest.raises(ValueError, match="temporal"):
        models.build_model(audio_frames=M, temporal="attention")
    with pytest.raises(ValueError, match="model must be"):
        models.build_model("text", audio_frames=M)


def test_audio_time_axis_is_m():
    """Reversing the time axis (M) changes the audio branch output; a BLSTM over the 24 axis would too,
    but only M-length sequences reach the recurrent layers."""
    branch = models.audio_branch(M)
    blstm1 = branch.get_layer("blstm_1")
    assert tuple(blstm1.input.shape) == (None, M, 24)
    x = np.random.default_rng(1).standard_normal((1, 24, M, 1)).astype("float32")
    seq = keras.Model(branch.input, branch.get_layer("mfcc_sequence").output)(x).numpy()
    # Step t of the sequence is column t of the MFCC matrix.
    np.testing.assert_array_equal(seq[0, 3], x[0, :, 3, 0])
    # Reversing the time axis (M) changes the branch's output: the recurrent layers see the frames in order.
    forward = branch(x, training=False).numpy()
    backward = branch(x[:, :, ::-1].copy(), training=False).numpy()
    assert forward.shape == (1, 128)
    assert np.abs(forward - backward).max() > 1e-4
    np.testing.assert_allclose(branch(x, training=False).numpy(), forward, rtol=1e-6)  # no dropout noise


def test_select_inputs():
    audio, video = object(), object()
    assert models.select_inputs(("audio", "video"), audio, video) == [audio, video]
    assert models.select_inputs(("video",), audio, video) is video
    assert models.select_inputs(("audio",), audio, video) is audio
    with pytest.raises(ValueError):
        models.select_inputs(("text",), audio, video)


def test_keras_file_round_trip(tmp_path):
    model = models.build_model("fusion", audio_frames=M, visual_backbone="resnet", temporal="gru", filters=(8, 16))
    rng = np.random.default_rng(2)
    x = [rng.standard_normal((2, 24, M, 1)).astype("float32"), rng.random((2, 6, 64, 64, 3)).astype("float32")]
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


@pytest.mark.parametrize("pooling, input_norm", [("last", "none"), ("mean", "none"), ("mean", "batch")])
def test_a_masked_audio_branch_ignores_the_padding(pooling, input_norm):
    """With ``mask_padding`` the output depends on the real frames only: the same clip pre-padded to M=20 or
    to M=30 (weights do not depend on M) gives the same features; without the mask it does not."""
    rng = np.random.default_rng(0)
    real = rng.normal(0, 1, (2, 24, 12, 1)).astype(np.float32)
    padded = {m: np.concatenate([np.zeros((2, 24, m - 12, 1), np.float32), real], axis=2) for m in (M, 30)}
    outputs = {}
    for masked in (True, False):
        short = models.audio_branch(M, pooling=pooling, mask_padding=masked, input_norm=input_norm)
        long = models.audio_branch(30, pooling=pooling, mask_padding=masked, input_norm=input_norm)
        long.set_weights(short.get_weights())
        outputs[masked] = (np.asarray(short(padded[M])), np.asarray(long(padded[30])))
    np.testing.assert_allclose(*outputs[True], atol=1e-5)
    assert np.abs(outputs[False][0] - outputs[False][1]).max() > 1e-3


def test_audio_branch_options_are_checked():
    with pytest.raises(ValueError, match="pooling"):
        models.audio_branch(M, pooling="attention")
    with pytest.raises(ValueError, match="input norm"):
        models.audio_branch(M, input_norm="layer")
    kinds = [type(layer) for layer in _inner_layers(models.audio_branch(M, pooling="mean", mask_padding=True))]
    assert layers.Masking in kinds and layers.GlobalAveragePooling1D in kinds
