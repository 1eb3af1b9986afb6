"""What a trained model leaves for serving and prediction: ``model.keras``, SavedModel, ONNX, ``model_info.json``.

Both serving exports take the inputs ``audio`` ``(B, 24, M, 1)`` and/or ``video``
``(B, 6, 64, 64, 3)`` (float32, video in [0, 1]) and return one output,
``probabilities`` ``(B, num_classes)``, in ``model_info.json``'s ``class_names`` order
(the ONNX file also carries them in its metadata, key ``class_names``).
The ONNX export needs the ``[onnx]`` extra (tf2onnx, onnx, onnxruntime); without it
the run says so in one line and goes on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow import keras

import ravdess_tfrecords
from ravdess_tfrecords import _cli, labels, models, schema, storage
from trainers.cluster import stop_for_test
from trainers.config import TrainConfig
from trainers.model_dir import (
    KERAS_FILE,
    MODEL_INFO_FILE,
    ONNX_FILE,
    SAVED_MODEL_DIR,
    _read_json,
    _write_json,
    require_saved,
)

OUTPUT_NAME = "probabilities"  # the one output of both serving exports
CLASS_NAMES_KEY = "class_names"  # the ONNX metadata_props key: a JSON list
ONNX_EXTRA = "onnx"
# What the ONNX export imports, import name -> distribution (setup.cfg's [onnx] extra; onnxruntime only serves).
ONNX_NEEDS = {"tf2onnx": "tf2onnx", "onnx": "onnx", "onnxruntime": "onnxruntime"}
# How far an export's probabilities may be from the float32 Keras model's on the probe batch (float rounding of
# another runtime's kernels; a wrong graph is off by far more).
EXPORT_ATOL = 1e-3
PROBE_BATCH = 2  # examples of the probe batch each export is checked on
# Dtype policies of 16-bit computation, as a model's config names them (--mixed_precision's, and their compute dtypes).
HALF_PRECISION = frozenset({"mixed_bfloat16", "mixed_float16", "bfloat16", "float16"})
_warned: set[str] = set()  # messages already printed by this process (a cross-validation exports once per fold)


def model_info(config: TrainConfig, model: keras.Model, info: ravdess_tfrecords.DatasetInfo) -> dict[str, Any]:
    """What ``predict`` and ``evaluate`` need besides the weights."""
    return {
        "class_names": list(labels.class_names(config.num_classes)),
        "num_classes": config.num_classes,
        "audio_frames": info.audio_frames,
        "audio_shape": list(schema.audio_shape(info.audio_frames)),
        "video_shape": list(schema.VIDEO_SHAPE),
        "video_scale": "uint8 / 255.0",
        "inputs": list(models.input_names(model)),
        "model": config.model,
        "visual_backbone": config.visual_backbone,
        "temporal": config.temporal,
        "ravdess_tfrecords_version": ravdess_tfrecords.__version__,
    }


def save_model(
    model: keras.Model, model_dir: str, config: TrainConfig, info: ravdess_tfrecords.DatasetInfo
) -> dict[str, str]:
    """Write ``model.keras``, ``saved_model/`` and ``model.onnx`` (if ``config.export``; ONNX only with the
    ``[onnx]`` extra), ``ravdess_info.json``, ``model_info.json``. Exports an earlier model left in
    ``model_dir`` are removed first (without ``config.export``: with one line saying so).

    Returns:
      ``{what: path}`` of everything written.
    """
    onnx_path = os.path.join(model_dir, ONNX_FILE)
    saved_model_path = os.path.join(model_dir, SAVED_MODEL_DIR)
    # An earlier model's exports (an extended run's) must not outlive it: gone before model.keras changes.
    stale = [path for path in (saved_model_path, onnx_path) if storage.exists(path)]
    for path in stale:
        storage.remove_any(path)
    if not config.export and stale and config.verbose:
        print(f"--noexport: removed the earlier model's exports ({', '.join(stale)})", flush=True)
    say = print if config.verbose else (lambda *_, **__: None)
    out = {"keras": os.path.join(model_dir, KERAS_FILE)}
    say(f"saving {out['keras']}...", flush=True)
    model.save(out["keras"])
    stop_for_test("export")
    if config.export:
        serving = float32_clone(model)  # a 16-bit graph is no serving format: bfloat16 is invalid ONNX
        probe = probe_inputs(serving, seed=config.seed or 0)
        want = serving.predict(_as_inputs(serving, probe), verbose=0)
        say("exporting the SavedModel...", flush=True)
        if export_saved_model(serving, saved_model_path, check=(probe, want)):
            out["saved_model"] = saved_model_path
        if onnx_missing_message() is None:
            say("exporting ONNX...", flush=True)
        if export_onnx(serving, onnx_path, labels.class_names(config.num_classes), check=(probe, want)):
            out["onnx"] = onnx_path
    out["dataset_info"] = os.path.join(model_dir, schema.INFO_FILENAME)
    storage.copy(os.path.join(info.data_dir, schema.INFO_FILENAME), out["dataset_info"])
    out["model_info"] = os.path.join(model_dir, MODEL_INFO_FILE)
    _write_json(out["model_info"], model_info(config, model, info))
    return out


def load_saved(model_dir: str) -> tuple[keras.Model, dict[str, Any]]:
    """``(model.keras, model_info.json)`` of a trained model directory."""
    keras_path, info_path = require_saved(model_dir)
    return keras.models.load_model(keras_path, compile=False), _read_json(info_path)


def input_signature(model: keras.Model) -> list[tf.TensorSpec]:
    """One float32 ``tf.TensorSpec`` per model input, named as the input (``audio``, ``video``), any batch size."""
    return [tf.TensorSpec((None, *tensor.shape[1:]), tf.float32, name=tensor.name) for tensor in model.inputs]


def float32_clone(model: keras.Model) -> keras.Model:
    """``model`` itself if it computes in float32, else a float32 copy with the same (float32) weights.

    A ``--mixed_precision`` model computes in bfloat16 or float16: its serving graph would too (onnxruntime
    refuses a bfloat16 ``Loop`` input; float16 loses precision a client never asked for). The copy is
    built from the model's config with every 16-bit dtype policy (``HALF_PRECISION``) made ``float32``.
    """
    if not any(layer.dtype_policy.name in HALF_PRECISION for layer in model._flatten_layers()):
        return model
    clone = model.__class__.from_config(_float32_config(model.get_config()))
    clone.set_weights(model.get_weights())
    return clone


def _float32_config(value: Any) -> Any:
    """A Keras config with each 16-bit dtype policy or dtype (``HALF_PRECISION``) replaced by float32."""
    if isinstance(value, dict):
        if value.get("class_name") == "DTypePolicy" and value.get("config", {}).get("name") in HALF_PRECISION:
            return dict(value, config=dict(value["config"], name="float32"))
        return {k: "float32" if k == "dtype" and isinstance(v, str) and v in HALF_PRECISION else _float32_config(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_float32_config(v) for v in value]
    return value


def probe_inputs(model: keras.Model, seed: int = 0) -> list[np.ndarray]:
    """One float32 array per model input, ``PROBE_BATCH`` examples, for checking an export against Keras.

    Audio: standard normal (MFCC-like after the converter's normalization); video: uniform in [0, 1].
    """
    rng = np.random.default_rng(seed)
    out = []
    for tensor in model.inputs:
        shape = (PROBE_BATCH, *tensor.shape[1:])
        video = tensor.name.startswith("video")
        out.append((rng.random(shape) if video else rng.standard_normal(shape)).astype(np.float32))
    return out


def _check_failed(what: str, path: str, got: np.ndarray | None, want: np.ndarray, error: str = "") -> bool:
    """Whether an export's outputs ``got`` fail the check against Keras' ``want``; if so one ``warning:``
    line (``error``: why it could not even run) and ``path`` is removed."""
    if not error:
        diff = float(np.max(np.abs(got - want))) if got is not None and got.shape == want.shape else np.inf
        if diff <= EXPORT_ATOL:
            return False
        error = f"its probabilities differ from Keras' by {diff:.3g} (> {EXPORT_ATOL:g})"
    storage.remove_any(path)
    _cli.print_warning(f"{what} export failed its check, not written ({path}): {error}")
    return True


def _as_inputs(model: keras.Model, arrays: Sequence[np.ndarray]) -> Any:
    return list(arrays) if len(model.inputs) > 1 else arrays[0]


def export_saved_model(model: keras.Model, path: str,
                       check: tuple[Sequence[np.ndarray], np.ndarray] | None = None) -> bool:
    """A SavedModel whose ``serving_default`` (alias ``serve``) maps ``audio=``/``video=`` to ``{"probabilities"}``.

    ``model.export`` alone would name the output ``output_0``; a serving function that
    returns a dict gives the signature a name a client can rely on.

    Args:
      check: ``(probe inputs, Keras' probabilities)``: the written SavedModel is loaded and its signature run
        on them; a failure or a difference over ``EXPORT_ATOL`` is one ``warning:`` line and no SavedModel.

    Returns:
      Whether ``path`` holds the SavedModel (True without ``check``).
    """
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(*inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)}

    archive.add_endpoint(name="serve", fn=serve, input_signature=input_signature(model))
    archive.write_out(path, verbose=False)
    if check is None:
        return True
    probe, want = check
    try:
        signature = tf.saved_model.load(path).signatures["serving_default"]
        names = models.input_names(model)
        got = signature(**{n: tf.constant(a) for n, a in zip(names, probe, strict=True)})[OUTPUT_NAME].numpy()
    except Exception as e:  # noqa: BLE001 - whatever fails, the file is not left as if good
        return not _check_failed("SavedModel", path, None, want, f"{type(e).__name__}: {e}")
    return not _check_failed("SavedModel", path, got, want)


def onnx_missing_message() -> str | None:
    """``None`` if the ONNX export can run, else the one line that names the extra to install."""
    absent = [name for name in ONNX_NEEDS if importlib.util.find_spec(name) is None]
    if not absent:
        return None
    return (f'ONNX export skipped: pip install "ravdess-tfrecords[{ONNX_EXTRA}]" '
            f"(missing: {', '.join(ONNX_NEEDS[name] for name in absent)})")


def export_onnx(model: keras.Model, path: str, class_names: Sequence[str],
                check: tuple[Sequence[np.ndarray], np.ndarray] | None = None) -> bool:
    """Write ``model`` as ONNX to ``path`` (any ``tf.io.gfile`` path); ``False`` (one warning line) without the extra,
    or (``check``: probe inputs, Keras' probabilities) when onnxruntime cannot run the graph or its probabilities
    differ from Keras' by more than ``EXPORT_ATOL``: then nothing is written.

    Keras' own exporter (``model.export(format="onnx")``) does the conversion: under
    TensorFlow it drives tf2onnx on the model's serving function and patches tf2onnx for
    NumPy 2, so this stays on Keras' tested path. The graph then gets the names of the
    SavedModel signature (inputs ``audio``/``video``, output ``probabilities``, batch
    dimension ``batch``) and the class names as metadata (key ``class_names``, a JSON list).
    """
    outputs = int(model.outputs[0].shape[-1])
    if len(class_names) != outputs:
        raise ValueError(f"{len(class_names)} class names for a model of {outputs} outputs")
    message = onnx_missing_message()
    if message:
        if message not in _warned:
            _warned.add(message)
            _cli.print_warning(message)
        return False
    import onnx  # the [onnx] extra: imported here only, so the trainers run without it

    with tempfile.TemporaryDirectory(prefix="ravdess-onnx-") as tmp:
        local = os.path.join(tmp, ONNX_FILE)  # tf2onnx writes local files only; storage uploads the result
        with warnings.catch_warnings(), _quiet_logger("tf2onnx.optimizer"):
            # Keras' NumPy-2 patch of tf2onnx reads np.object, which NumPy 2 warns about. tf2onnx logs a
            # traceback when one of its optional graph rewrites fails (its transpose pass on an Add of a scalar,
            # as in MobileNetV3's hard sigmoid) and goes on without it: the graph stays valid (checked below).
            warnings.filterwarnings("ignore", category=FutureWarning)
            # An explicit signature: Keras refuses to infer one for a model never called (a freshly built one).
            specs = input_signature(model)
            model.export(local, format="onnx", verbose=False, input_signature=[specs] if len(specs) > 1 else specs)
        proto = onnx.load(local)
        _name_graph(proto.graph, models.input_names(model))
        del proto.metadata_props[:]
        proto.metadata_props.add(key=CLASS_NAMES_KEY, value=json.dumps(list(class_names)))
        onnx.checker.check_model(proto)
        data = proto.SerializeToString()
        if check is not None:
            probe, want = check
            try:
                got = _run_onnx(data, models.input_names(model), probe)
            except Exception as e:  # noqa: BLE001 - onnxruntime refuses the graph (INVALID_GRAPH, ...)
                return not _check_failed("ONNX", path, None, want, f"{type(e).__name__}: {e}")
            if _check_failed("ONNX", path, got, want):
                return False
    storage.write_bytes(path, data)
    return True


def _run_onnx(data: bytes, input_names: Sequence[str], arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The ``probabilities`` of the serialized ONNX model ``data`` for ``arrays``, in onnxruntime on the CPU."""
    import onnxruntime  # the [onnx] extra

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], dict(zip(input_names, arrays, strict=True)))[0]


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Within the block, the Python logger ``name`` shows errors only."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _name_graph(graph: Any, input_names: Sequence[str]) -> None:
    """Rename an ONNX graph's inputs to ``input_names`` (in order) and its one output to ``OUTPUT_NAME``.

    tf2onnx names the output after the TensorFlow tensor (``Identity:0``). Every reference
    is renamed, subgraphs included (a loop body may read an outer name), and the first
    dimension of each input and the output becomes ``batch``.
    """
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != len(input_names) or len(graph.output) != 1:
        raise ValueError(f"unexpected ONNX graph: inputs {[v.name for v in inputs]}, "
                         f"outputs {[v.name for v in graph.output]}; expected {list(input_names)} -> one output")
    renames = {value.name: name for value, name in zip(inputs, input_names, strict=True)}
    renames[graph.output[0].name] = OUTPUT_NAME
    _rename(graph, {old: new for old, new in renames.items() if old != new})
    for value in (*inputs, graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"


def _rename(graph: Any, renames: dict[str, str]) -> None:
    """Apply ``{old: new}`` to every value name of ``graph`` and of its subgraphs."""
    if not renames:
        return
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
        for attribute in node.attribute:
            subgraphs = [attribute.g] if attribute.HasField("g") else []
            for sub in (*subgraphs, *attribute.graphs):
                _rename(sub, renames)
