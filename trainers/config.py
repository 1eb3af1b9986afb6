"""``TrainConfig``: every setting of one run; the check that a model directory is reused with the same settings
and the same data."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from typing import Any

import ravdess_tfrecords
from ravdess_tfrecords import _cli, labels, model_choices, schema, storage
from ravdess_tfrecords.errors import UserError
from ravdess_tfrecords.reading import splits
from ravdess_tfrecords.reading.augment_choices import AUGMENT_ON, AUGMENTATIONS
from ravdess_tfrecords.reading.info import DatasetInfo
from trainers.cluster import DEFAULT_DATA_SERVICE_TIMEOUT_S, DEFAULT_WORKER_TIMEOUT_S
from trainers.model_dir import CONFIG_FILE, _read_json

# --cache -> the pipeline's cache argument: None lets it decide (pipeline.autocache), True caches in memory, False not.
CACHE_MODES = {"auto": None, "always": True, "never": False}
DEFAULT_FILTERS = (32, 64, 128, 256)
# The training recipe's choices (fit's DEFINE_enum takes them from here).
# --mixed_precision -> the Keras dtype policy the model is built under.
PRECISION_POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
JIT_COMPILE = ("auto", "true", "false")
CLASS_WEIGHTS = ("none", "balanced")
OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("plateau", "cosine")
DEFAULT_WEIGHT_DECAY = 1e-4
# The numeric settings' ranges (both ends included, _cli.range_problem; None of folds/fold: unset). TrainConfig
# checks them; trainers.fit registers them as flag validators, so a bad value fails before TensorFlow loads.
# learning_rate (> 0) and label_smoothing ([0, 1)) have an open end: checked on their own.
RANGES = {"epochs": (1, None), "batch_size": (1, None), "folds": (2, None), "fold": (0, None),
          "early_stopping_patience": (0, None), "lr_patience": (0, None), "steps_per_execution": (1, None),
          "warmup_epochs": (0, None), "freeze_epochs": (0, None), "weight_decay": (0.0, None), "mixup": (0.0, None),
          "worker_timeout": (0.0, None), "data_service_timeout": (0.0, None)}

# --strategy (trainers.strategy builds them).
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
# Values of the old --distribution_strategy flag that are not STRATEGIES.
ALIASES = {"default": "one_device"}
# --progress -> Keras verbosity; auto: "bar" when stdout is a terminal, else "epoch" (progress_verbosity).
PROGRESS = {"auto": None, "epoch": 2, "bar": 1, "none": 0}


def progress_verbosity(progress: str, terminal: bool) -> int:
    """Keras' ``verbose`` for ``--progress`` (``PROGRESS``); ``auto``: the bar on a terminal (``terminal``),
    one line per epoch in a log file (a bar's redraws would fill it)."""
    verbosity = PROGRESS[progress]
    if verbosity is None:
        return PROGRESS["bar"] if terminal else PROGRESS["epoch"]
    return verbosity


def canonical(name: str) -> str:
    """``name`` as one of ``STRATEGIES`` (aliases resolved).

    Raises:
      ValueError: an unknown name.
    """
    name = ALIASES.get(name, name)
    if name not in STRATEGIES:
        raise UserError(f"strategy must be one of {STRATEGIES} (or {', '.join(ALIASES)}), got {name!r}")
    return name


# Settings that may differ when a run is started again on the same model_dir (runtime, not the experiment):
# where it runs, what it prints, whether the input is cached, and how long it goes on: more epochs continue
# a run (trainers.loop.train), the patiences only say when it stops. mixed_precision only while nothing is resumed
# (trainers.loop._check_precision: another policy cannot take the optimizer state over).
_RESTART_FREE = ("data_dir", "model_dir", "verbose", "export", "strategy", "data_service", "worker_timeout",
                 "data_service_timeout", "cache", "epochs", "early_stopping_patience", "lr_patience",
                 # how fast the steps run, not what they compute (up to float rounding), as official/'s RuntimeConfig
                 "mixed_precision", "jit_compile", "steps_per_execution")
# config.json's key for data_fingerprint(...) of the data the run trained on.
FINGERPRINT_KEY = "data_fingerprint"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs (``trainers.fit`` builds it from its flags).

    Attributes:
      data_dir: converted shards (``ravdess_info.json``).
      model_dir: where the run writes (see ``trainers.model_dir``).
      split: scheme: ``speaker``, ``kfold``, ``luna5``, ``sixfold`` or ``actors``.
      folds, fold: K for ``kfold``; the test fold (None: every fold, in ``cv.run``).
      actors: explicit ``{"train": (...), "validation": (...), "test": (...)}`` (scheme ``actors``).
      num_classes: 7 (neutral and calm merged) or 8.
      model, visual_backbone, temporal, filters: see ``ravdess_tfrecords.models``.
      audio_pooling, mask_padding, audio_input_norm: the audio branch's read-out, padding mask and input
        normalization (``models.audio_branch``).
      augment: the training augmentations switched on (subset of ``AUGMENTATIONS``).
      one_hot: categorical instead of sparse categorical cross-entropy.
      monitor: the validation quantity for the checkpoint and early stopping.
      mixup: > 0: mixup of the training batches with ``lam ~ Beta(mixup, mixup)`` (``augment.mixup``;
        one-hot labels). 0: off.
      shuffle_labels: sanity control: training labels are shuffled within each batch,
        so a model can only reach chance level on test. Validation and test keep true labels.
      augment_on: ``host`` (the input pipeline augments, video arrives in [0, 1]) or ``device``
        (the pipeline ships uint8 video; an ``AugmentLayer`` in front of the model augments inside
        the training step). Saved models never hold the layer (``augment.without_augmentation``).
      strategy: ``auto``, ``one_device``, ``mirrored`` or ``multi_worker`` (``trainers.strategy``;
        ``default`` is ``one_device``); ``batch_size`` is the global batch.
      data_service: ``grpc://HOST:PORT`` of a tf.data service dispatcher that runs the training
        input pipeline (``trainers.data.scale_out``); None: this process reads its own input.
      worker_timeout: seconds a ``multi_worker`` task waits for the cluster's other tasks before it
        gives up (0: for ever; ``trainers.cluster.wait_for_peers``).
      data_service_timeout: seconds to wait for the ``data_service`` dispatcher to answer with a worker
        registered (0: for ever).
      cache: ``auto`` (the pipeline caches the decoded examples in memory when the split is small,
        ``pipeline.autocache``), ``always`` or ``never`` (``CACHE_MODES``). A bool, as a config.json
        written before the modes holds, means what it did then: True ``always``, False ``never``.
      mixed_precision: ``none`` (float32), ``bfloat16`` or ``float16``: the Keras mixed-precision
        policy the model is built under (``PRECISION_POLICIES``); the softmax output and the loss stay
        float32; float16 gets loss scaling. Runtime setting: may change when a run starts over, not on a
        resume (``trainers.loop._check_precision``).
      jit_compile: ``auto`` (XLA when TensorFlow sees a GPU), ``true``, ``false``: XLA for the train step.
      steps_per_execution: training steps per ``tf.function`` call (``model.compile``).
      class_weight: ``none`` or ``balanced``: the loss of class c weighted n / (k * count_c) over the
        training split's counts (after the vocal-channel filter), as sklearn's "balanced".
      optimizer: ``adam`` or ``adamw`` (decoupled ``weight_decay``; biases and norm layers not decayed).
      lr_schedule: ``plateau`` (``ReduceLROnPlateau`` on val_loss) or ``cosine`` (per epoch: linear
        warm-up over ``warmup_epochs``, then cosine decay to ``min_learning_rate`` at ``epochs``).
      label_smoothing: > 0 trains on one-hot labels with ``CategoricalCrossentropy(label_smoothing=...)``.
      visual_weights: where the visual backbone starts: ``none`` (random), ``imagenet`` (the
        ``keras.applications`` backbones, ``models.APPLICATIONS``) or the path of a Keras weights file of
        the backbone (``models.load_backbone_weights``).
      freeze_epochs: the visual backbone is frozen (weights and batch-norm statistics) for the first
        this many epochs, then trained with the rest (``callbacks.StagedFineTuning``); needs ``visual_weights``.
    """

    data_dir: str
    model_dir: str
    split: str = "speaker"
    folds: int | None = None
    fold: int | None = None
    actors: dict[str, tuple[int, ...]] | None = None
    num_classes: int = labels.NUM_CLASSES
    model: str = "fusion"
    visual_backbone: str = "vgg"
    temporal: str = "max"
    audio_pooling: str = "last"
    mask_padding: bool = False
    audio_input_norm: str = "none"
    filters: tuple[int, ...] = DEFAULT_FILTERS
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int | None = 0
    augment: tuple[str, ...] = AUGMENTATIONS
    augment_on: str = "host"
    one_hot: bool = False
    monitor: str = "val_accuracy"
    early_stopping_patience: int = 15
    lr_patience: int = 5
    lr_factor: float = 0.5
    min_learning_rate: float = 1e-5
    vocal_channels: tuple[str, ...] | None = None
    cache: str = "auto"
    shuffle_labels: bool = False
    mixup: float = 0.0
    export: bool = True
    strategy: str = "auto"
    data_service: str | None = None
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT_S
    data_service_timeout: float = DEFAULT_DATA_SERVICE_TIMEOUT_S
    verbose: int = 2
    mixed_precision: str = "none"
    jit_compile: str = "auto"
    steps_per_execution: int = 1
    class_weight: str = "none"
    optimizer: str = "adam"
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    lr_schedule: str = "plateau"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    visual_weights: str = "none"
    freeze_epochs: int = 0

    def __post_init__(self):
        if self.model not in model_choices.MODELS:
            raise UserError(f"model must be one of {model_choices.MODELS}, got {self.model!r}")
        if self.visual_backbone not in model_choices.BACKBONES:
            raise UserError(f"visual_backbone must be one of {model_choices.BACKBONES}, got {self.visual_backbone!r}")
        if self.temporal not in model_choices.TEMPORALS:
            raise UserError(f"temporal must be one of {model_choices.TEMPORALS}, got {self.temporal!r}")
        if self.split not in splits.SCHEMES:
            raise UserError(f"split must be one of {splits.SCHEMES}, got {self.split!r}")
        if (self.split == "actors") != (self.actors is not None):
            raise UserError("explicit actor lists go with split='actors' (and only with it)")
        if self.folds is not None and self.split != "kfold":
            raise UserError(f"folds applies to split 'kfold' only, not {self.split!r}")
        if self.fold is not None and self.split not in splits.FOLD_SCHEMES:
            raise UserError(f"fold applies to {', '.join(splits.FOLD_SCHEMES)} only, not {self.split!r}")
        bad = set(self.augment) - set(AUGMENTATIONS)
        if bad:
            raise UserError(f"unknown augmentations {sorted(bad)}; choose from {', '.join(AUGMENTATIONS)}")
        if self.augment_on not in AUGMENT_ON:
            raise UserError(f"augment_on must be one of {AUGMENT_ON}, got {self.augment_on!r}")
        if self.num_classes not in (7, 8):
            raise UserError(f"num_classes must be 7 or 8, got {self.num_classes}")
        object.__setattr__(self, "strategy", canonical(self.strategy))
        for name in ("data_dir", "model_dir"):  # --model_dir=~/runs/x reaches us unexpanded
            object.__setattr__(self, name, storage.expand(getattr(self, name)))
        if isinstance(self.cache, bool):  # config.json of an older version: --cache=true cached always
            object.__setattr__(self, "cache", "always" if self.cache else "never")
        if self.cache not in CACHE_MODES:
            raise UserError(f"cache must be one of {', '.join(CACHE_MODES)}, got {self.cache!r}")
        if self.data_service is not None:
            address = self.data_service.removeprefix("grpc://")
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise UserError(f"data_service must be grpc://HOST:PORT, got {self.data_service!r}")
            object.__setattr__(self, "data_service", f"grpc://{address}")
        if isinstance(self.jit_compile, bool):  # TrainConfig(jit_compile=True) from Python
            object.__setattr__(self, "jit_compile", str(self.jit_compile).lower())
        for name, choices in (("audio_pooling", model_choices.AUDIO_POOLINGS),
                              ("audio_input_norm", model_choices.AUDIO_INPUT_NORMS),
                              ("mixed_precision", tuple(PRECISION_POLICIES)), ("jit_compile", JIT_COMPILE),
                              ("class_weight", CLASS_WEIGHTS), ("optimizer", OPTIMIZERS),
                              ("lr_schedule", LR_SCHEDULES)):
            if getattr(self, name) not in choices:
                raise UserError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        problem = _cli.out_of_range({name: getattr(self, name) for name in RANGES
                                     if getattr(self, name) is not None}, RANGES)
        if problem:
            raise UserError(problem)
        if not self.learning_rate > 0:  # NaN too
            raise UserError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not self.filters or any(_cli.range_problem(f, 1, None) for f in self.filters):
            raise UserError(f"filters must be one or more integers >= 1, got {list(self.filters)}")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        # Unknown actors, a fold past the last, an actor in two sets: said now, not after TensorFlow has loaded.
        splits.split_actors(**self.split_kwargs())
        if self.visual_weights not in model_choices.NAMED_WEIGHTS:
            object.__setattr__(self, "visual_weights", storage.expand(self.visual_weights))
        if self.model == "audio" and (self.visual_weights != "none" or self.freeze_epochs):
            raise UserError("--visual_weights and --freeze_epochs set up the visual branch; the audio model has none")
        if self.freeze_epochs and self.visual_weights == "none":
            raise UserError("--freeze_epochs keeps the visual backbone as it starts: give it pretrained weights "
                            "(--visual_weights=imagenet or a weights file); a frozen random backbone learns nothing")
        if not self.monitor.startswith("val_"):
            raise UserError(f"monitor must be a validation quantity (val_loss, val_accuracy), got {self.monitor!r}")

    @property
    def pipeline_cache(self) -> bool | None:
        """``cache`` as ``Builder.as_dataset``'s ``cache=`` argument."""
        return CACHE_MODES[self.cache]

    @property
    def one_hot_labels(self) -> bool:
        """Whether the pipeline ships one-hot labels: ``one_hot``, label smoothing (Keras 3's sparse
        cross-entropy has no ``label_smoothing``) or mixup (soft targets)."""
        return self.one_hot or self.label_smoothing > 0 or self.mixup > 0

    @property
    def is_cross_validation(self) -> bool:
        return self.split in splits.FOLD_SCHEMES and self.fold is None

    def split_kwargs(self) -> dict[str, Any]:
        """``scheme``/``folds``/``fold``/``actors`` keyword arguments for ``ravdess_tfrecords.load``."""
        if self.split == "actors":
            return {"actors": {k: list(v) for k, v in self.actors.items()}}
        out: dict[str, Any] = {"scheme": self.split}
        if self.split == "kfold" and self.folds is not None:
            out["folds"] = self.folds
        if self.split in splits.FOLD_SCHEMES:
            out["fold"] = self.fold or 0
        return out

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.actors is not None:
            out["actors"] = {k: list(v) for k, v in self.actors.items()}
        for key in ("filters", "augment", "vocal_channels"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in names}
        if values.get("actors") is not None:
            values["actors"] = {k: tuple(v) for k, v in values["actors"].items()}
        for key in ("filters", "augment", "vocal_channels"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def data_fingerprint(info: ravdess_tfrecords.DatasetInfo) -> str:
    """sha256 of what identifies converted data: its shards' names and sha256 checksums.

    Fields the converter adds to ``ravdess_info.json`` later do not change it; a
    re-conversion that changes any shard's bytes does. Shards listed without a
    checksum (hand-made directories): the sha256 of ``ravdess_info.json`` itself.
    """
    if all(s.sha256 for s in info.shards):
        blob = "".join(sorted(f"{s.file} {s.sha256}\n" for s in info.shards)).encode()
    else:
        with storage.open_file(os.path.join(info.data_dir, schema.INFO_FILENAME), "rb") as f:
            blob = f.read()
    return hashlib.sha256(blob).hexdigest()


def run_record(config: TrainConfig, fingerprint: str) -> dict[str, Any]:
    """What ``config.json`` holds: the config and the data's fingerprint."""
    return dict(config.to_json(), **{FINGERPRINT_KEY: fingerprint})


def check_inputs(input_names: Sequence[str], info: DatasetInfo, what: str) -> None:
    """A ``UserError`` unless ``info``'s dataset holds every input of a model taking ``input_names``.

    ``what`` names the model in the message (``--model=fusion``, ``the model in runs/x``).
    """
    missing = [name for name in input_names if name not in info.input_names]
    if missing:
        raise UserError(
            f"{what} needs {' and '.join(input_names)}, but {info.data_dir} is an {info.modality}-only dataset "
            f"(no {', '.join(missing)}; converted from RAVDESS's audio-only recordings): train --model=audio on "
            "it, or convert the audio-video clips (Video_Speech_Actor_NN.zip) for a model with video")


def check_restart(config: TrainConfig, model_dir: str, fingerprint: str | None = None,
                  unchecked: tuple[str, ...] = ()) -> None:
    """A model_dir already used must have been used with the same settings and, if given, the same data.

    ``unchecked``: settings left out of the comparison (one not known yet).

    Raises:
      ValueError: naming the settings that differ, or saying that the data changed.
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    if not storage.exists(path):
        return
    old, new = _read_json(path), config.to_json()
    # A config.json of an older version lacks the settings added since: they had their default then.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    old = dict(defaults, **old)
    differ = sorted(k for k in new if k not in (*_RESTART_FREE, *unchecked) and old.get(k) != new[k])
    if differ:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in differ)
        raise UserError(
            f"{model_dir} holds a run with other settings ({shown}); "
            "use a new --model_dir, or delete this one to start over"
        )
    trained_on = old.get(FINGERPRINT_KEY)
    if fingerprint is not None and trained_on is not None and trained_on != fingerprint:
        raise UserError(
            f"{model_dir} holds a run trained on other data: the shards in {config.data_dir} are not the ones "
            f"it was trained on (data fingerprint {trained_on[:12]} -> {fingerprint[:12]}; re-converted?); "
            "use a new --model_dir, or delete this one to retrain"
        )


def preflight(config: TrainConfig, augment_on_known: bool = True) -> None:
    """``train``'s checks that need no TensorFlow, made before it loads (``trainers.fit``): a user error then
    costs a second, not TensorFlow's import. The data directory and its info, the inputs ``--model`` takes
    (``check_inputs``), the ``--visual_weights`` file,
    and a model directory's earlier settings and data (one split: a cross-validation's folds are checked by
    ``train``). Local paths only: a URI is read through ``tf.io.gfile``, and ``train`` makes every check again.

    ``augment_on_known``: False while ``--augment_on=auto`` is unresolved (that takes TensorFlow): the
    earlier run's ``augment_on`` is then left to ``train``.

    Raises:
      FileNotFoundError, ValueError: what ``train`` would raise for the same paths.
    """
    if config.visual_weights not in model_choices.NAMED_WEIGHTS and storage.is_local(config.visual_weights):
        model_choices.check_weights_file(config.visual_weights)
    if not storage.is_local(config.data_dir):
        return
    info = DatasetInfo.read(config.data_dir)
    check_inputs(model_choices.MODEL_INPUTS[config.model], info, f"--model={config.model}")
    if not config.is_cross_validation and storage.is_local(config.model_dir):
        check_restart(config, config.model_dir, data_fingerprint(info),
                      unchecked=() if augment_on_known else ("augment_on",))
