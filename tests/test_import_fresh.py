"""Another TF project's view: import the package from elsewhere and train on ``load(...)``.

Also checks the reading half's dependency rule: it imports only TensorFlow, numpy,
the standard library and ravdess_tfrecords' own reading modules (never librosa,
dlib or the writing half), and uses no py_function / numpy_function.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap

from fake_shards import write_shards

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "ravdess_tfrecords")
READING = os.path.join(PACKAGE, "reading")
READING_HALF = ("splits", "augment", "augment_ops", "augment_layer", "pipeline", "builder", "verify", "info",
                "selection", "data_source", "example_proto", "augment_choices")
# The TF-free reader (rt.data_source, the [grain] install): imports no TensorFlow, directly or through another.
TF_FREE = ("splits", "info", "selection", "data_source", "example_proto", "augment_choices")
# The contract: what both halves may import (errors and storage are standard-library modules of the contract).
ALLOWED_OWN = {"ravdess_tfrecords", "ravdess_tfrecords.schema", "ravdess_tfrecords.labels", "ravdess_tfrecords._cli",
               "ravdess_tfrecords.errors", "ravdess_tfrecords.storage", "ravdess_tfrecords.reading",
               *(f"ravdess_tfrecords.reading.{m}" for m in READING_HALF)}

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import ravdess_tfrecords as rt
    after_import = sorted(m for m in ("librosa", "dlib", "tensorflow") if m in sys.modules)
    import ravdess_tfrecords.reading.builder, ravdess_tfrecords.reading.pipeline, ravdess_tfrecords.reading.augment
    import ravdess_tfrecords.reading.splits, ravdess_tfrecords.reading.verify, ravdess_tfrecords.verify
    import keras
    ds = rt.load(sys.argv[1], "train", batch_size=8, seed=0)
    (audio, video), label = ds.element_spec
    a_in = keras.Input(audio.shape[1:], name="audio")
    v_in = keras.Input(video.shape[1:], name="video")
    x = keras.layers.Concatenate()([
        keras.layers.Flatten()(a_in),
        keras.layers.GlobalAveragePooling3D()(v_in),
    ])
    model = keras.Model([a_in, v_in], keras.layers.Dense(7, activation="softmax")(x))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(ds.take(1), epochs=1, verbose=0)
    changed = [not np.array_equal(b, a) for b, a in zip(before, model.get_weights())]
    print(json.dumps({
        "file": rt.__file__,
        "after_import": after_import,
        "loss": history.history["loss"][0],
        "changed": changed,
        "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("librosa", "dlib", "cv2")),
        "writing_half": sorted(m for m in sys.modules if m.startswith("ravdess_tfrecords.conversion")),
    }))
    """
)


def test_fresh_process_imports_from_elsewhere_and_trains_one_step(tmp_path):
    data = tmp_path / "shards"
    write_shards(str(data), actors=range(1, 25), audio_frames=12)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(data)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["file"].startswith(PACKAGE)
    assert out["after_import"] == []  # a bare import loads neither TF nor the writing half's libraries
    assert out["heavy"] == [] and out["writing_half"] == []
    assert 0.0 < out["loss"] < 100.0  # finite, and a real cross-entropy
    assert all(out["changed"]), out["changed"]


def _imports(path: str) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module in ("ravdess_tfrecords", "ravdess_tfrecords.reading"):
                found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_reading_half_imports_only_tensorflow_numpy_stdlib_and_schema():
    for name in READING_HALF:
        path = os.path.join(READING, f"{name}.py")
        for module in _imports(path):
            top = module.split(".")[0]
            if top == "ravdess_tfrecords":
                assert module in ALLOWED_OWN, f"{name}.py imports {module}"
            else:
                # absl: verify's command line; google (protobuf), array_record: the data source (base
                # dependencies); keras: Keras 3 (augment_ops and augment_layer use it alone, on any backend).
                allowed = ("tensorflow", "keras", "numpy", "absl", "google", "array_record", "__future__")
                assert top in allowed or top in sys.stdlib_module_names, f"{name}.py imports {module}"
    for name in TF_FREE:
        for module in _imports(os.path.join(READING, f"{name}.py")):
            assert module.split(".")[0] != "tensorflow", f"{name}.py imports {module}"
            if module.startswith("ravdess_tfrecords.reading."):
                assert module.split(".")[-1] in TF_FREE, f"{name}.py imports {module}"


def test_no_py_function_in_the_library():
    for name in sorted(os.path.relpath(os.path.join(folder, f), PACKAGE)
                       for folder, _, files in os.walk(PACKAGE) for f in files):
        if name.endswith(".py"):
            with open(os.path.join(PACKAGE, name)) as f:
                source = f.read()
            for banned in ("py_function", "numpy_function"):
                assert banned not in source, f"ravdess_tfrecords/{name} uses {banned}"
            # Pickled arrays can run code on load: every np.load keeps allow_pickle off.
            assert not re.search(r"allow_pickle\s*=\s*True", source), f"ravdess_tfrecords/{name} unpickles"
