"""A pretrained visual branch (issue 17, item 5): keras.applications backbones, ``--visual_weights``
(none, imagenet, a weights file by path) and staged fine-tuning (``--freeze_epochs``).

ImageNet weights need a download, which this machine cannot do: the tests start from ``none`` and from a
weights file they save themselves. In-process, on ``fake_shards`` directories; nothing is timed.
"""

from __future__ import annotations

import json

import helpers
import numpy as np
import pytest
from fake_shards import write_shards
from tensorflow import keras

from ravdess_tfrecords import models
from ravdess_tfrecords.errors import UserError
from trainers import loop, train_lib

M = 12


def _randomize(net: keras.Model, seed: int) -> list[np.ndarray]:
    """Give every weight of ``net`` (batch-norm statistics included) a known value; return them."""
    rng = np.random.default_rng(seed)
    for w in net.weights:
        value = rng.uniform(0.5, 1.5, w.shape) if "variance" in w.path else rng.normal(0, 0.05, w.shape)
        w.assign(value.astype("float32"))
    return [w.numpy() for w in net.weights]


@pytest.mark.parametrize("backbone", ["mobilenet_v3_small"])  # mobilenet_v3_large: the same code path
def test_application_backbones_run_framewise_on_frames_times_255(backbone):
    model = models.build_model("fusion", audio_frames=M, visual_backbone=backbone)
    net = models.visual_backbone(model)
    assert net.name == models.APPLICATIONS[backbone]  # the keras.applications model itself
    assert tuple(net.input.shape) == (None, 64, 64, 3) and len(net.output.shape) == 2
    branch = model.get_layer("visual_branch")
    # The applications take [0, 255] and rescale it themselves: the branch multiplies the [0, 1] frames.
    assert branch.get_layer("to_0_255").scale == 255.0
    assert isinstance(branch.get_layer("framewise"), keras.layers.TimeDistributed)
    frames = np.random.default_rng(0).random((1, 6, 64, 64, 3)).astype("float32")
    features = keras.Model(branch.input, branch.get_layer("framewise").output)(frames, training=False).numpy()
    expected = net(frames[0] * 255.0, training=False).numpy()  # frame by frame, in [0, 255]
    np.testing.assert_allclose(features[0], expected, rtol=1e-4, atol=1e-5)
    probs = model.predict([np.zeros((1, 24, M, 1), "float32"), frames], verbose=0)
    assert probs.shape == (1, 7)
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)


def test_visual_weights_load_a_saved_file_by_path_and_refuse_other_networks(tmp_path):
    source = models.visual_backbone(models.build_model("video", audio_frames=M, visual_backbone="mobilenet_v3_small"))
    saved = _randomize(source, seed=1)
    path = tmp_path / "face.weights.h5"
    source.save_weights(str(path))
    for given in (str(path), f"file://{path}"):  # a local path and a tf.io.gfile URI
        model = models.build_model("video", audio_frames=M, visual_backbone="mobilenet_v3_small",
                                   visual_weights=given)
        loaded = [w.numpy() for w in models.visual_backbone(model).weights]
        assert len(loaded) == len(saved)
        for a, b in zip(loaded, saved, strict=True):
            np.testing.assert_array_equal(a, b)
    fresh = models.visual_backbone(models.build_model("video", audio_frames=M, visual_backbone="mobilenet_v3_small"))
    assert not np.array_equal(fresh.weights[0].numpy(), saved[0])  # none: not the file's weights
    # Another network's weights, a missing file, a file that is not HDF5, ImageNet for an own backbone.
    with pytest.raises(UserError, match=rf"{path}: not weights of the vgg visual backbone \(.*shape"):
        models.build_model("video", audio_frames=M, visual_backbone="vgg", visual_weights=str(path))
    with pytest.raises(FileNotFoundError, match="no such file"):
        models.build_model("video", audio_frames=M, visual_backbone="mobilenet_v3_small",
                           visual_weights=str(tmp_path / "missing.weights.h5"))
    junk = tmp_path / "junk.weights.h5"
    junk.write_text("not HDF5")
    with pytest.raises(UserError, match="junk.weights.h5: not weights of the mobilenet_v3_small"):
        models.build_model("video", audio_frames=M, visual_backbone="mobilenet_v3_small", visual_weights=str(junk))
    with pytest.raises(UserError, match="imagenet needs a pretrained backbone"):
        models.build_model("video", audio_frames=M, visual_backbone="resnet", visual_weights="imagenet")


def test_config_checks_the_fine_tuning_settings():
    with pytest.raises(UserError, match="frozen random backbone"):
        train_lib.TrainConfig("d", "m", freeze_epochs=2)
    with pytest.raises(UserError, match="audio model has none"):
        train_lib.TrainConfig("d", "m", model="audio", visual_weights="imagenet")
    with pytest.raises(UserError, match="freeze_epochs=-1: must be an integer >= 0"):
        train_lib.TrainConfig("d", "m", visual_weights="imagenet", freeze_epochs=-1)
    assert train_lib.TrainConfig("d", "m", visual_weights="~/w.weights.h5").visual_weights.startswith("/")


class _Snapshots(keras.callbacks.Callback):
    """The backbone's weights and the visual head's kernel at each epoch's end."""

    def __init__(self):
        super().__init__()
        self.backbone, self.head = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.backbone.append([w.numpy() for w in models.visual_backbone(self.model).weights])
        self.head.append(self.model.get_layer("visual_branch").get_layer("visual_hidden").kernel.numpy())


def test_a_frozen_backbone_does_not_move_then_trains_and_a_resume_keeps_the_stages(tmp_path, monkeypatch):
    """``--freeze_epochs=1`` of 2, from a weights file: after epoch 1 every backbone weight (batch-norm
    statistics included) is still the file's while the layers above it trained; after epoch 2 the backbone
    has trained too. Killed after the frozen epoch and started again, the run ends where the unbroken one
    does (one batch per epoch, as in ``test_recipe``), and the saved model is not frozen."""
    data = str(tmp_path / "data")
    write_shards(data, actors=range(1, 5), audio_frames=M)
    source = models.visual_backbone(models.build_model("video", audio_frames=M, visual_backbone="vgg",
                                                       filters=(8, 16)))
    start = _randomize(source, seed=2)
    weights_file = str(tmp_path / "vgg.weights.h5")
    source.save_weights(weights_file)

    def config(name: str) -> train_lib.TrainConfig:
        return train_lib.TrainConfig(
            data, str(tmp_path / name), split="actors", actors={"train": (1, 2), "validation": (3,), "test": (4,)},
            model="video", filters=(8, 16), epochs=2, batch_size=16, augment=(), seed=0, export=False, verbose=0,
            visual_weights=weights_file, freeze_epochs=1, jit_compile="false",
        )

    snapshots = _Snapshots()
    make_callbacks = loop.make_callbacks
    monkeypatch.setattr(loop, "make_callbacks", lambda c, d: [*make_callbacks(c, d), snapshots])
    unbroken = train_lib.train(config("unbroken"))
    frozen, tuned = snapshots.backbone
    assert len(frozen) == len(start) and any("moving" in w.path for w in source.weights)
    for a, b in zip(frozen, start, strict=True):
        np.testing.assert_array_equal(a, b)  # not one weight moved, batch-norm statistics included
    assert not np.array_equal(snapshots.head[0], snapshots.head[1])  # the layers above it trained
    assert sum(not np.array_equal(a, b) for a, b in zip(tuned, start, strict=True)) == len(start)

    monkeypatch.setattr(loop, "make_callbacks", lambda c, d: [*make_callbacks(c, d), helpers.kill_after(1)])
    with pytest.raises(helpers.Killed):
        train_lib.train(config("resumed"))
    monkeypatch.setattr(loop, "make_callbacks", make_callbacks)
    resumed = train_lib.train(config("resumed"))
    assert resumed["epochs_trained"] == unbroken["epochs_trained"] == 2
    models_saved = [keras.models.load_model(str(tmp_path / name / "model.keras")) for name in ("unbroken", "resumed")]
    for a, b in zip(*(m.get_weights() for m in models_saved), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    assert all(models.visual_backbone(m).trainable for m in models_saved)  # saved unfrozen
    with open(tmp_path / "resumed" / "config.json") as f:
        saved = json.load(f)
    assert (saved["visual_weights"], saved["freeze_epochs"]) == (weights_file, 1)
    assert resumed["visual_weights"] == weights_file
