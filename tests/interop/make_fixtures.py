"""Write the Keras model fixtures of ``tests/interop/fixtures`` (run once, outside ``make test``).

Needs TensorFlow, Keras 3 and tf-keras (Keras 2), which the project's environment does
not have; use a separate one::

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu tf-keras keras h5py
    /tmp/tfenv/bin/python tests/interop/make_fixtures.py

Every model is tiny (a few filters, frames of at most 12 x 12) with random weights,
random biases and random batch-norm statistics. For each it writes the model file(s) and
``<name>.npz`` holding ``x`` (the Keras input, channels-last) and ``y`` (the Keras
output), both computed by the framework that wrote the file. ``index.json`` lists every
fixture: its file, format, writer, dtype and Keras version.

Formats: ``.keras`` (Keras 3, and tf-keras 2's own v3 format), ``.h5`` (Keras 3 and
Keras 2) and SavedModel folders written by tf-keras 2 with ``model.save(folder)``. One
SavedModel is rewritten the way TF 2.3 / Keras 2.4 stored it (the layers' metadata
inside ``saved_model.pb`` instead of ``keras_metadata.pb``), the format of the study's
published models.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np

OUT = Path(__file__).resolve().parent / "fixtures"
B = 2


def randomize(model, rng: np.random.Generator, scale: float = 0.5) -> None:
    """Random kernels and biases; batch-norm variances in [0.5, 2] and means near 0."""
    for layer in _all_layers(model):
        weights = layer.get_weights()
        if not weights or _all_layers(layer)[1:]:
            continue
        names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
        new = []
        for name, w in zip(names, weights):
            if "variance" in name:
                new.append(rng.uniform(0.5, 2.0, w.shape))
            elif "mean" in name:
                new.append(rng.normal(0.0, 0.2, w.shape))
            elif name == "gamma":
                new.append(rng.uniform(0.5, 1.5, w.shape))
            else:
                new.append(rng.normal(0.0, scale, w.shape))
        layer.set_weights([n.astype(w.dtype) for n, w in zip(new, weights)])


def _all_layers(layer) -> list:
    """``layer`` and every layer inside it (wrapped layers, Bidirectional halves)."""
    found = [layer]
    for attr in ("layers", "layer", "forward_layer", "backward_layer"):
        inner = getattr(layer, attr, None)
        if inner is None:
            continue
        for child in inner if isinstance(inner, list) else [inner]:
            found.extend(_all_layers(child))
    return found


# ------------------------------------------------------------------------------ models
# ``k`` is the Keras module (keras 3 or tf_keras); ``gate`` the recurrent activation.


def fish_2layer(k, gate="hard_sigmoid", functional=False, td_norm=False, dtype=None):
    """The study's fish-2layer at 3 slices of 10 x 12 frames, 4 and 6 filters."""
    L = k.layers
    kw = {} if dtype is None else {"dtype": dtype}
    inputs = k.Input((3, 10, 12, 4), dtype=dtype or "float32")
    layers = [
        L.ConvLSTM2D(4, 3, padding="valid", recurrent_activation=gate, use_bias=False,
                     return_sequences=True, **kw),
        L.TimeDistributed(L.MaxPooling2D(2, **kw), **kw),
        L.TimeDistributed(L.BatchNormalization(center=False, scale=False, **kw), **kw)
        if td_norm else L.BatchNormalization(center=False, scale=False, **kw),
        L.ConvLSTM2D(6, 3, padding="valid", recurrent_activation=gate, use_bias=False, **kw),
        L.GlobalMaxPooling2D(**kw),
        L.Dense(1, activation="sigmoid", **kw),
    ]
    if not functional:
        return k.Sequential([inputs, *layers])
    x = inputs
    for layer in layers:
        x = layer(x)
    return k.Model(inputs, x)


def fish_1layer(k, gate="hard_sigmoid", dtype=None):
    L = k.layers
    kw = {} if dtype is None else {"dtype": dtype}
    return k.Sequential([
        k.Input((3, 10, 12, 4), dtype=dtype or "float32"),
        L.ConvLSTM2D(4, 3, padding="valid", recurrent_activation=gate, use_bias=False, **kw),
        L.BatchNormalization(center=False, scale=False, **kw),
        L.GlobalMaxPooling2D(**kw),
        L.Dense(1, activation="sigmoid", **kw),
    ])  # fmt: skip


def conv1d(k):
    """ConvLSTM1D with strides, per-step Conv1D and pooling, GlobalMaxPooling1D, softmax."""
    L = k.layers
    inputs = k.Input((4, 16, 2))
    x = L.ConvLSTM1D(3, 3, padding="same", strides=2, return_sequences=True)(inputs)
    x = L.TimeDistributed(L.Conv1D(4, 3, padding="same", strides=2, activation="relu"))(x)
    x = L.TimeDistributed(L.AveragePooling1D(3, strides=2, padding="same"))(x)
    x = L.TimeDistributed(L.GlobalMaxPooling1D())(x)
    x = L.Dense(5, activation="tanh")(x)
    x = L.Flatten()(x)
    x = L.Dropout(0.5)(x)
    x = L.Dense(3)(x)
    outputs = L.Activation("softmax")(x)
    return k.Model(inputs, outputs)


def conv3d(k):
    """ConvLSTM3D both directions, per-step Conv3D and MaxPooling3D ("same"), affine BN."""
    L = k.layers
    return k.Sequential([
        k.Input((3, 4, 6, 5, 2)),
        L.ConvLSTM3D(3, 2, padding="same", return_sequences=True, activation="relu"),
        L.TimeDistributed(L.Conv3D(2, 2, padding="valid")),
        L.TimeDistributed(L.MaxPooling3D(2, padding="same")),
        L.BatchNormalization(),
        L.ConvLSTM3D(2, (1, 2, 2), padding="valid", dilation_rate=1, go_backwards=True),
        L.GlobalAveragePooling3D(),
        L.Dense(2),
    ])  # fmt: skip


def bidirectional(k):
    """Bidirectional ConvLSTM2D (concat, then sum), per-step BN with scale only, Reshape."""
    L = k.layers
    inputs = k.Input((3, 8, 8, 2))
    x = L.Bidirectional(L.ConvLSTM2D(3, 3, padding="same", return_sequences=True))(inputs)
    x = L.TimeDistributed(L.BatchNormalization(center=False))(x)
    x = L.TimeDistributed(L.AveragePooling2D(2))(x)
    x = L.Bidirectional(
        L.ConvLSTM2D(2, 3, padding="same", strides=2, recurrent_activation="hard_sigmoid"),
        merge_mode="sum",
    )(x)
    x = L.Reshape((2, 4))(x)
    x = L.Flatten()(x)
    x = L.Dense(4, activation="relu")(x)
    outputs = L.Dense(1, activation="sigmoid")(x)
    return k.Model(inputs, outputs)


# ------------------------------------------------------------------------------ writing


def _input(model, rng: np.random.Generator, dtype: str) -> np.ndarray:
    shape = tuple(model.inputs[0].shape)[1:]
    return rng.normal(size=(B, *shape)).astype(dtype)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def write(index, name, model, k, writer, fmt, rng, dtype="float32", scale=0.5, **save):
    randomize(model, rng, scale)
    x = _input(model, rng, dtype)
    y = np.asarray(model(x, training=False))
    suffix = {"keras": ".keras", "h5": ".h5", "savedmodel": ""}[fmt]
    if fmt == "savedmodel":
        # Traced functions are 0.3-0.6 MB per model and never read by the importer; only
        # the study-like fixture keeps them, to be byte-for-byte what model.save(dir) gives.
        save.setdefault("save_traces", False)
    path = OUT / f"{name}{suffix}"
    if path.is_dir():
        shutil.rmtree(path)
    model.save(str(path), **save)
    np.savez(OUT / f"{name}.npz", x=x, y=y)
    index[name] = {
        "file": path.name, "format": fmt, "writer": writer, "dtype": dtype,
        "keras_version": k.__version__, "output_shape": list(y.shape),
    }
    print(f"{name:32s} {fmt:10s} {_size(path):>9d} bytes  y{y.shape} {y.dtype}")
    return path


def move_metadata_into_saved_model(folder: Path) -> None:
    """Store the Keras metadata the way TF 2.3 / Keras 2.4 did: in each layer's
    ``SavedUserObject.metadata`` in ``saved_model.pb``, with no ``keras_metadata.pb``."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tf_keras.protobuf import saved_metadata_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    metadata.ParseFromString((folder / "keras_metadata.pb").read_bytes())
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((folder / "saved_model.pb").read_bytes())
    nodes = saved.meta_graphs[0].object_graph_def.nodes
    for entry in metadata.nodes:
        node = nodes[entry.node_id]
        assert node.WhichOneof("kind") == "user_object", entry.node_path
        node.user_object.metadata = entry.metadata
    (folder / "saved_model.pb").write_bytes(saved.SerializeToString())
    (folder / "keras_metadata.pb").unlink()


def main() -> None:
    import keras
    import tensorflow as tf
    import tf_keras

    tf.config.experimental.enable_op_determinism()
    OUT.mkdir(exist_ok=True)
    index: dict[str, dict] = {}
    rng = np.random.default_rng(20240517)
    k3 = f"keras {keras.__version__}"
    k2 = f"tf-keras {tf_keras.__version__} (TensorFlow {tf.__version__})"

    # Every format for the two fish models; the others where their layers' storage differs
    # (and the whole under 2 MB).
    def both(name, build, fmts3, fmts2, scale=0.5, dtype="float32"):
        for fmt in fmts3:
            write(index, f"{name}-keras3-{fmt}", build(keras), keras, k3, fmt, rng, dtype, scale)
        for fmt in fmts2:
            write(index, f"{name}-keras2-{fmt}", build(tf_keras), tf_keras, k2, fmt, rng, dtype,
                  scale)

    all3, all2 = ("keras", "h5"), ("h5", "savedmodel")
    both("fish2", fish_2layer, all3, all2, scale=1.5)
    both("fish1", fish_1layer, all3, (*all2, "keras"), scale=1.5)
    # The study's own way: functional, per-step batch norm and pooling, model.save(folder).
    study = write(
        index, "fish2-study-keras2-savedmodel",
        fish_2layer(tf_keras, functional=True, td_norm=True), tf_keras, k2, "savedmodel", rng,
        scale=1.5, save_traces=True,
    )
    old = write(
        index, "fish2-study-tf23-savedmodel",
        fish_2layer(tf_keras, functional=True, td_norm=True), tf_keras, k2, "savedmodel", rng,
        scale=1.5,
    )
    move_metadata_into_saved_model(old)
    index[old.name]["note"] = "metadata moved into saved_model.pb, as TF 2.3 / Keras 2.4 wrote it"
    assert study.is_dir()
    both("conv1d", conv1d, ("keras",), ("savedmodel",))
    both("conv3d", conv3d, ("keras",), ("h5", "savedmodel"))
    both("bidirectional", bidirectional, ("keras", "h5"), ("savedmodel",))

    write(index, "fish1-float64-keras3-keras", fish_1layer(keras, dtype="float64"), keras, k3,
          "keras", rng, "float64", 1.5)
    tf_keras.backend.set_floatx("float64")
    write(index, "fish2-float64-keras2-h5", fish_2layer(tf_keras, dtype="float64"), tf_keras, k2,
          "h5", rng, "float64", 1.5)
    write(index, "fish2-float64-keras2-savedmodel", fish_2layer(tf_keras, dtype="float64"),
          tf_keras, k2, "savedmodel", rng, "float64", 1.5)
    tf_keras.backend.set_floatx("float32")

    (OUT / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    total = sum(_size(p) for p in OUT.iterdir())
    print(f"total {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
