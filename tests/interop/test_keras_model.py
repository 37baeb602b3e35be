"""Whole Keras models from files written by Keras 3 and by tf-keras 2 / TensorFlow 2.

The fixtures (``fixtures/``, written by ``make_fixtures.py`` in an environment with
TensorFlow) hold each model's input and the output the framework that wrote it computed;
here they are read and run without TensorFlow or Keras.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from convlstm.interop import load_keras_model
from convlstm.models import KerasGraph, create_model

FIXTURES = Path(__file__).parent / "fixtures"
INDEX = json.loads((FIXTURES / "index.json").read_text())
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}


def _inverse(permutation):
    return None if permutation is None else [int(i) for i in np.argsort(permutation)]


def run_fixture(model: KerasGraph, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(our output, the framework's output) on the fixture's input."""
    data = np.load(FIXTURES / f"{name}.npz")
    x = torch.from_numpy(data["x"])
    back = _inverse(model.input_permutation)
    if back is not None:
        x = x.permute(back)  # Keras's channels-last input -> the library's channels-first
    with torch.no_grad():
        y = model(x)
    return y.numpy(), data["y"]


@pytest.mark.parametrize("name", sorted(INDEX))
def test_fixture_outputs_equal_the_frameworks(name):
    entry = INDEX[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every fixture records its Keras version
        model = load_keras_model(FIXTURES / entry["file"])
    assert isinstance(model, KerasGraph) and not model.training
    ours, expected = run_fixture(model, name)
    assert ours.dtype == expected.dtype == np.dtype(entry["dtype"])
    assert ours.shape == expected.shape
    error = float(np.abs(ours - expected).max())
    print(f"{name}: max |difference| {error:.2e}")
    assert error <= TOLERANCE[entry["dtype"]], error
    # Not a constant: the two samples' outputs differ.
    assert np.abs(expected[0] - expected[1]).max() > 1e-3


def test_every_format_and_model_kind_is_covered():
    kinds = {(n.split("-keras")[0], e["format"], e["keras_version"][0]) for n, e in INDEX.items()}
    for model in ("fish2", "fish1"):
        for fmt, major in (("keras", "3"), ("h5", "3"), ("h5", "2"), ("savedmodel", "2")):
            assert (model, fmt, major) in kinds
    assert {"conv1d", "conv3d", "bidirectional", "fish2-study"} <= {k[0] for k in kinds}
    assert {e["dtype"] for e in INDEX.values()} == {"float32", "float64"}
    assert any(e["format"] == "savedmodel" and e["dtype"] == "float64" for e in INDEX.values())
    assert "fish2-study-tf23-savedmodel" in INDEX
    assert not (FIXTURES / "fish2-study-tf23-savedmodel" / "keras_metadata.pb").exists()
    # Keras 2 configs serialise tuples as {"class_name": "__tuple__", ...}.
    metadata = (FIXTURES / "fish2-study-keras2-savedmodel" / "keras_metadata.pb").read_bytes()
    assert b'"__tuple__"' in metadata
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 2_000_000


def test_study_savedmodel_matches_the_fish_preset():
    """The study's layout imported as a graph and the fish-2layer preset with the same
    weights compute the same probabilities (the preset's default Keras 2 gates)."""
    graph = load_keras_model(FIXTURES / "fish2-study-keras2-savedmodel")
    preset = create_model("fish-2layer", hidden_channels=[4, 6]).eval()
    convs = [m.convlstm.cell for m in graph.layers.values() if hasattr(m, "convlstm")]
    norms = [m.layer for m in graph.layers.values() if hasattr(getattr(m, "layer", None),
                                                                "moving_mean")]  # fmt: skip
    dense = next(m for m in graph.layers.values() if hasattr(m, "kernel"))
    with torch.no_grad():
        for ours, theirs in zip(preset.layers, convs, strict=True):
            ours.cell(0).weight_ih.copy_(theirs.weight_ih)
            ours.cell(0).weight_hh.copy_(theirs.weight_hh)
        norm = preset.between[0][1]
        norm.running_mean.copy_(norms[0].moving_mean)
        norm.running_var.copy_(norms[0].moving_variance)
        preset.head[-1].weight.copy_(dense.kernel.T)
        preset.head[-1].bias.copy_(dense.bias)
    ours, expected = run_fixture(graph, "fish2-study-keras2-savedmodel")
    x = torch.from_numpy(np.load(FIXTURES / "fish2-study-keras2-savedmodel.npz")["x"])
    with torch.no_grad():
        probability = torch.sigmoid(preset(x.permute(0, 1, 4, 2, 3))).numpy()
    np.testing.assert_allclose(probability, expected, rtol=0, atol=1e-5)
    keras3 = create_model("fish-2layer", hidden_channels=[4, 6],
                          recurrent_activation="hard_sigmoid").eval()  # fmt: skip
    keras3.load_state_dict(preset.state_dict())
    with torch.no_grad():
        wrong = torch.sigmoid(keras3(x.permute(0, 1, 4, 2, 3))).numpy()
    assert np.abs(wrong - expected).max() > 1e-3


@pytest.mark.parametrize("name", ["fish2-keras2-h5", "bidirectional-keras3-keras"])
def test_rebuilt_from_json_options(name, tmp_path):
    """The module's options are plain JSON and rebuild it through the registry."""
    from safetensors.torch import load_file, save_file

    model = load_keras_model(FIXTURES / INDEX[name]["file"])
    options = json.loads(json.dumps(model_options(name)))
    with torch.device("meta"):
        rebuilt = create_model("keras-graph", **options)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.st")
    rebuilt.load_state_dict(load_file(tmp_path / "w.st"), assign=True)
    ours, expected = run_fixture(rebuilt.eval(), name)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


def model_options(name: str) -> dict:
    from convlstm.interop._graph import graph_options, open_model_file

    reader = open_model_file(FIXTURES / INDEX[name]["file"])
    options, _ = graph_options(reader, keras_version=reader.keras_version)
    return options


def test_logits_leave_out_the_final_sigmoid():
    name = "fish1-keras3-keras"
    model = load_keras_model(FIXTURES / INDEX[name]["file"], logits=True)
    ours, expected = run_fixture(model, name)
    np.testing.assert_allclose(1 / (1 + np.exp(-ours)), expected, rtol=0, atol=1e-6)
    softmax = load_keras_model(FIXTURES / INDEX["conv1d-keras3-keras"]["file"], logits=True)
    ours, expected = run_fixture(softmax, "conv1d-keras3-keras")
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(ours), -1), expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"'dense.*\(Dense\).*logits.*'linear'"):
        load_keras_model(FIXTURES / INDEX["conv3d-keras3-keras"]["file"], logits=True)


def test_keras_layout_option():
    name = "fish2-keras3-keras"
    model = load_keras_model(FIXTURES / INDEX[name]["file"], channels_first=False)
    assert model.input_permutation is None
    data = np.load(FIXTURES / f"{name}.npz")
    with torch.no_grad():
        y = model(torch.from_numpy(data["x"])).numpy()
    np.testing.assert_allclose(y, data["y"], rtol=0, atol=1e-5)


def test_loading_imports_neither_tensorflow_nor_keras():
    code = (
        "import sys\n"
        "from convlstm.interop import load_keras_model\n"
        f"for name in {sorted(p.name for p in FIXTURES.iterdir() if p.suffix != '.npz')!r}:\n"
        "    if name != 'index.json':\n"
        f"        load_keras_model({str(FIXTURES)!r} + '/' + name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ------------------------------------------------------------------------------ errors


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def _save(model, path):
    model.save(path)
    return path


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_unsupported_layer_is_named_with_its_position(keras, tmp_path, suffix):
    L = keras.layers
    model = keras.Sequential([
        keras.Input((3, 6, 6, 2)),
        L.ConvLSTM2D(2, 3, padding="same", return_sequences=True),
        L.TimeDistributed(L.Flatten()),
        L.LSTM(4, name="recurrent"),
        L.Dense(1),
    ])  # fmt: skip
    path = _save(model, tmp_path / f"lstm{suffix}")
    with pytest.raises(ValueError, match=r"layer 3 'recurrent' \(LSTM\).*'LSTM' is not supported"):
        load_keras_model(path)
    inner = keras.Sequential([
        keras.Input((3, 6, 6, 2)),
        L.TimeDistributed(L.Conv2DTranspose(2, 3), name="upsample"),
    ])  # fmt: skip
    path = _save(inner, tmp_path / f"transpose{suffix}")
    with pytest.raises(ValueError, match=r"layer 1 'upsample' \(TimeDistributed\) > "
                                         r"Conv2DTranspose.*'Conv2DTranspose' is not supported"):
        load_keras_model(path)


def test_several_inputs_and_nested_models_are_refused(keras, tmp_path):
    L = keras.layers
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    two = keras.Model([a, b], L.Dense(1)(a) + L.Dense(1)(b))
    with pytest.raises(ValueError, match=r"\(Add\): layer class 'Add' is not supported"):
        load_keras_model(_save(two, tmp_path / "two.keras"))
    encoder = keras.Sequential([keras.Input((4,)), L.Dense(3)], name="encoder")
    x = keras.Input((4,))
    nested = keras.Model(x, L.Dense(1)(encoder(x)))
    with pytest.raises(ValueError, match=r"layer 1 'encoder' \(Sequential\) is a nested model"):
        load_keras_model(_save(nested, tmp_path / "nested.keras"))


def test_missing_path_and_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or SavedModel folder"):
        load_keras_model(tmp_path / "missing.keras")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match=r"neither a \.keras archive"):
        load_keras_model(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match=r"no saved_model\.pb"):
        load_keras_model(tmp_path)


def test_damaged_savedmodel_is_named(tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / "fish1-keras2-savedmodel", folder)
    index = folder / "variables" / "variables.index"
    index.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"variables.index is not a TensorFlow checkpoint index"):
        load_keras_model(folder)


def test_graph_without_recorded_version_warns(keras, tmp_path):
    import zipfile

    source = FIXTURES / INDEX["bidirectional-keras3-keras"]["file"]  # uses hard_sigmoid
    rewritten = tmp_path / "old.keras"
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(rewritten, "w") as out:
        for item in archive.namelist():
            data = archive.read(item)
            if item == "metadata.json":
                data = json.dumps({"date_saved": "unknown"}).encode()
            out.writestr(item, data)
    with pytest.warns(UserWarning, match=r"old.keras does not record the Keras version"):
        model = load_keras_model(rewritten)
    ours, expected = run_fixture(model, "bidirectional-keras3-keras")
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


# -------------------------------------------------------------- more options, live Keras 3


def _live_models(keras):
    L = keras.layers

    def channels_first():
        cf = {"data_format": "channels_first"}
        return keras.Sequential([
            keras.Input((3, 2, 7, 9)),
            L.ConvLSTM2D(3, 3, padding="same", strides=2, return_sequences=True, **cf),
            L.TimeDistributed(L.Conv2D(4, 2, padding="same", **cf)),
            L.TimeDistributed(L.MaxPooling2D(2, padding="same", **cf)),
            L.ConvLSTM2D(2, 2, padding="valid", **cf),
            L.Flatten(**cf),
            L.Dense(2, activation="softmax"),
        ])  # fmt: skip

    def causal_groups_keepdims():
        return keras.Sequential([
            keras.Input((4, 12, 4)),
            L.TimeDistributed(L.Conv1D(4, 3, padding="causal", dilation_rate=2, groups=2)),
            L.ConvLSTM1D(4, 3, padding="same", return_sequences=True, go_backwards=True,
                         activation="relu", recurrent_activation="hard_sigmoid"),
            L.TimeDistributed(L.Conv1D(6, 3, padding="same", strides=2, groups=2,
                                       activation="elu")),
            L.TimeDistributed(L.GlobalMaxPooling1D(keepdims=True)),
            L.TimeDistributed(L.AveragePooling1D(1)),
            L.Flatten(),
            L.Dense(1, activation="sigmoid"),
        ])  # fmt: skip

    def states_and_merges():
        inputs = keras.Input((3, 6, 6, 2))
        x = L.Bidirectional(L.ConvLSTM2D(2, 3, padding="same", return_sequences=True),
                            merge_mode="mul")(inputs)  # fmt: skip
        x = L.BatchNormalization(scale=False)(x)
        x = L.Bidirectional(L.ConvLSTM2D(2, 3, padding="same", return_sequences=True),
                            merge_mode="ave")(x)  # fmt: skip
        _, h, c = L.ConvLSTM2D(3, 3, padding="valid", return_state=True)(x)
        y = L.GlobalAveragePooling2D()(h)
        return keras.Model(inputs, L.Dense(2)(y))

    def frame_sequence_output():
        inputs = keras.Input((3, 5, 6, 2))
        x = L.ConvLSTM2D(4, 3, padding="same", return_sequences=True)(inputs)
        x = L.TimeDistributed(L.Dense(3, activation="swish"))(x)
        return keras.Model(inputs, L.Dense(2)(x))

    def frame_output():
        return keras.Sequential([
            keras.Input((3, 5, 6, 2)),
            L.ConvLSTM2D(4, 3, padding="same"),
            L.Conv2D(2, 3, padding="same", strides=2),
            L.Activation("tanh"),
        ])  # fmt: skip

    return {f.__name__: f for f in (channels_first, causal_groups_keepdims, states_and_merges,
                                     frame_sequence_output, frame_output)}  # fmt: skip


LIVE = ["channels_first", "causal_groups_keepdims", "states_and_merges",
        "frame_sequence_output", "frame_output"]  # fmt: skip


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("kind", LIVE)
def test_live_keras3_models(keras, tmp_path, kind, suffix):
    model = _live_models(keras)[kind]()
    rng = np.random.default_rng(LIVE.index(kind))
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.normal(0.0, 0.5, w.shape).astype(w.dtype) if w.ndim > 1
                               else rng.uniform(0.5, 1.5, w.shape).astype(w.dtype)
                               for w in weights])  # fmt: skip
    x = rng.normal(size=(2, *model.inputs[0].shape[1:])).astype("float32")
    expected = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))
    path = _save(model, tmp_path / f"{kind}{suffix}")
    imported = load_keras_model(path)
    back = _inverse(imported.input_permutation)
    data = torch.from_numpy(x)
    with torch.no_grad():
        ours = imported(data.permute(back) if back else data)
    if imported.output_permutation is not None:
        # Channels-first out: (B, T, C, H, W) for frame sequences, (B, C, H, W) for frames.
        ours = ours.permute(_inverse(imported.output_permutation))
    assert tuple(ours.shape) == expected.shape
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-5)
    assert np.abs(expected[0] - expected[1]).max() > 1e-3
    if kind == "channels_first":
        assert imported.input_permutation is None  # Keras's layout is channels-first already
    if kind == "frame_sequence_output":
        assert imported.output_permutation == [0, 1, 4, 2, 3]
    if kind == "frame_output":
        assert imported.output_permutation == [0, 3, 1, 2]


def test_load_keras_convlstm_reads_savedmodel_folders():
    from convlstm.interop import load_keras_convlstm

    folder = FIXTURES / "fish2-study-tf23-savedmodel"
    graph = load_keras_model(folder)
    names = [m.keras_name for m in graph.layers.values() if m.class_name == "ConvLSTM2D"]
    assert len(names) == 2
    with pytest.raises(ValueError, match="holds 2 ConvLSTM layers"):
        load_keras_convlstm(folder)
    for name in names:
        layer = load_keras_convlstm(folder, name)
        assert layer.cell.recurrent_activation_name == "hard_sigmoid_keras2"
        expected = graph.layer(name).convlstm.cell
        torch.testing.assert_close(layer.cell.weight_ih, expected.weight_ih, rtol=0, atol=0)
        torch.testing.assert_close(layer.cell.weight_hh, expected.weight_hh, rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="no such file or SavedModel folder"):
        load_keras_convlstm(FIXTURES / "missing")
