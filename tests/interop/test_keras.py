"""Parity of ``convlstm.interop.keras`` with Keras 3's ConvLSTM1D/2D/3D (torch backend)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

keras = pytest.importorskip("keras")

from convlstm.interop import KerasConvLSTM, from_keras_weights, load_keras_convlstm  # noqa: E402
from convlstm.interop.keras import KERAS_ACTIVATIONS  # noqa: E402

TOL = 1e-5
B, T, F = 2, 4, 3
KERAS_CLASSES = {1: "ConvLSTM1D", 2: "ConvLSTM2D", 3: "ConvLSTM3D"}


# ---------------------------------------------------------------------------- helpers


def _numpy(value) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def _randomize(layer, rng: np.random.Generator, scale: float = 0.5) -> None:
    """Random weights, bias included (Keras initialises the bias to 0/1)."""
    layer.set_weights(
        [(rng.standard_normal(w.shape) * scale).astype("float32") for w in layer.get_weights()]
    )


def _keras_layer(rank: int, x: np.ndarray, rng: np.random.Generator, scale=0.5, **kwargs):
    kwargs.setdefault("filters", F)
    cls = getattr(keras.layers, KERAS_CLASSES[rank])
    layer = cls(return_sequences=True, return_state=True, **kwargs)
    layer(x)  # build
    _randomize(layer, rng, scale)
    return layer


def _run_ours(module: KerasConvLSTM, x_first: np.ndarray, state=None):
    with torch.no_grad():
        out, (h, c) = module(torch.from_numpy(np.ascontiguousarray(x_first)), state)
    return out.numpy(), h.numpy(), c.numpy()


def _assert_parity(layer, x: np.ndarray, module: KerasConvLSTM, channels_first=False):
    """Full output sequence and final states of ``module`` equal ``layer``'s."""
    k_out, k_h, k_c = (_numpy(v) for v in layer(x))
    x_first = x if channels_first else np.moveaxis(x, -1, 2)
    out, h, c = _run_ours(module, x_first)
    assert h.shape[0] == 1 and c.shape[0] == 1
    h, c = h[0], c[0]
    if not channels_first:
        out, h, c = np.moveaxis(out, 2, -1), np.moveaxis(h, 1, -1), np.moveaxis(c, 1, -1)
    assert out.shape == k_out.shape
    assert h.shape == k_h.shape and c.shape == k_c.shape
    np.testing.assert_allclose(out, k_out, rtol=0, atol=TOL)
    np.testing.assert_allclose(h, k_h, rtol=0, atol=TOL)
    np.testing.assert_allclose(c, k_c, rtol=0, atol=TOL)
    return k_out


# ---------------------------------------------------------------------------- parity

CASES = {
    # id: (rank, spatial size, Keras kwargs)
    "same": (2, (7, 9), dict(kernel_size=3, padding="same")),
    "valid": (2, (7, 9), dict(kernel_size=3, padding="valid")),
    "stride2-same-odd": (2, (7, 9), dict(kernel_size=3, padding="same", strides=2)),
    "stride2-same-even": (2, (8, 10), dict(kernel_size=3, padding="same", strides=2)),
    "stride2x1-valid": (2, (7, 9), dict(kernel_size=3, padding="valid", strides=(2, 1))),
    "dilation2-same": (2, (7, 9), dict(kernel_size=3, padding="same", dilation_rate=2)),
    "dilation2-valid": (2, (7, 9), dict(kernel_size=(3, 2), padding="valid", dilation_rate=2)),
    "hard_sigmoid": (
        2, (7, 9), dict(kernel_size=3, padding="same", recurrent_activation="hard_sigmoid")
    ),
    "no-bias": (2, (7, 9), dict(kernel_size=3, padding="same", use_bias=False)),
    "go_backwards": (2, (7, 9), dict(kernel_size=3, padding="same", go_backwards=True)),
    "go_backwards-valid-stride2": (
        2, (7, 9), dict(kernel_size=3, padding="valid", strides=2, go_backwards=True)
    ),
    "relu": (2, (7, 9), dict(kernel_size=3, padding="same", activation="relu")),
    "kernel2-same": (2, (7, 9), dict(kernel_size=2, padding="same")),
    "kernel4-same": (2, (7, 9), dict(kernel_size=4, padding="same")),
    "kernel4-same-stride2": (2, (7, 9), dict(kernel_size=4, padding="same", strides=2)),
    "kernel2x3-same-dilation2": (
        2, (7, 9), dict(kernel_size=(2, 3), padding="same", dilation_rate=2)
    ),
    "1d-same": (1, (11,), dict(kernel_size=3, padding="same")),
    "1d-valid-kernel4-stride2": (1, (11,), dict(kernel_size=4, padding="valid", strides=2)),
    "1d-even-same-hard_sigmoid-backwards": (
        1, (10,), dict(kernel_size=2, padding="same", recurrent_activation="hard_sigmoid",
                       go_backwards=True),
    ),
    "3d-same": (3, (3, 5, 6), dict(kernel_size=3, padding="same")),
    "3d-valid-kernel2-stride2": (3, (4, 5, 6), dict(kernel_size=2, padding="valid", strides=2)),
    "3d-same-kernel2-elu": (3, (3, 4, 5), dict(kernel_size=2, padding="same", activation="elu")),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_parity_with_keras(case):
    rank, spatial, kwargs = CASES[case]
    rng = np.random.default_rng(sorted(CASES).index(case))
    x = rng.standard_normal((B, T, *spatial, 2)).astype("float32")
    layer = _keras_layer(rank, x, rng, **kwargs)
    module = from_keras_weights(
        layer.get_config(), layer.get_weights(), keras_version=keras.__version__
    )
    assert isinstance(module, KerasConvLSTM)
    assert module.cell.ndim == rank
    assert module.go_backwards == kwargs.get("go_backwards", False)
    k_out = _assert_parity(layer, x, module)
    # The sequences are not trivial: every step differs from the last one.
    assert np.abs(k_out[:, 0] - k_out[:, -1]).max() > 1e-2


def test_go_backwards_returns_processing_order():
    """Keras's go_backwards output is reversed in time relative to our ``reverse=True``."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, 7, 9, 2)).astype("float32")
    layer = _keras_layer(2, x, rng, kernel_size=3, padding="same", go_backwards=True)
    k_out, k_h, _ = (_numpy(v) for v in layer(x))
    module = from_keras_weights(layer.get_config(), layer.get_weights())
    with torch.no_grad():
        aligned, _ = module.layer(torch.from_numpy(np.moveaxis(x, -1, 2).copy()), reverse=True)
    aligned = np.moveaxis(aligned.numpy(), 2, -1)
    np.testing.assert_allclose(k_out, aligned[:, ::-1], rtol=0, atol=TOL)
    # Keras's last output (return_sequences=False) follows input step 0 and is h_n.
    np.testing.assert_allclose(k_out[:, -1], k_h, rtol=0, atol=TOL)
    assert np.abs(k_out - aligned).max() > 1e-2


def test_channels_first_layer():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((B, T, 2, 7, 9)).astype("float32")
    layer = _keras_layer(
        2, x, rng, kernel_size=3, padding="same", strides=2, data_format="channels_first"
    )
    assert layer.get_config()["data_format"] == "channels_first"
    module = from_keras_weights(layer.get_config(), layer.get_weights())
    _assert_parity(layer, x, module, channels_first=True)


@pytest.mark.parametrize("go_backwards", [False, True])
def test_initial_state(go_backwards):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((B, T, 7, 9, 2)).astype("float32")
    layer = _keras_layer(2, x, rng, kernel_size=3, padding="valid", go_backwards=go_backwards)
    h0 = rng.standard_normal((B, 5, 7, F)).astype("float32")
    c0 = rng.standard_normal((B, 5, 7, F)).astype("float32")
    k_out, k_h, k_c = (_numpy(v) for v in layer(x, initial_state=[h0, c0]))
    module = from_keras_weights(layer.get_config(), layer.get_weights())
    state = tuple(torch.from_numpy(np.moveaxis(s, -1, 1)[None].copy()) for s in (h0, c0))
    out, h, c = _run_ours(module, np.moveaxis(x, -1, 2), state)
    np.testing.assert_allclose(np.moveaxis(out, 2, -1), k_out, rtol=0, atol=TOL)
    np.testing.assert_allclose(np.moveaxis(h[0], 1, -1), k_h, rtol=0, atol=TOL)
    np.testing.assert_allclose(np.moveaxis(c[0], 1, -1), k_c, rtol=0, atol=TOL)
    # The initial state matters.
    zero_out, _, _ = _run_ours(module, np.moveaxis(x, -1, 2))
    assert np.abs(zero_out - out).max() > 1e-2


@pytest.mark.parametrize("name", sorted(KERAS_ACTIVATIONS))
def test_activation_matches_keras(name):
    """Every activation name we accept computes what Keras computes under that name."""
    config = dict(filters=1, kernel_size=[1], activation=name, recurrent_activation=name)
    weights = [np.zeros((1, 1, 4), "float32"), np.zeros((1, 1, 4), "float32")]
    config["use_bias"] = False
    cell = from_keras_weights(config, weights, keras_version=keras.__version__).cell
    x = torch.linspace(-7, 7, 281)
    expected = _numpy(keras.activations.get(name)(keras.ops.convert_to_tensor(x.numpy())))
    np.testing.assert_allclose(cell.activation(x).numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        cell.recurrent_activation(x).numpy(), expected, rtol=1e-6, atol=1e-6
    )


def test_keras2_hard_sigmoid():
    """Files from Keras 2 mean clip(0.2 x + 0.5, 0, 1) by "hard_sigmoid"."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((B, T, 7, 9, 2)).astype("float32")

    def keras2_hard_sigmoid(v):
        return keras.ops.clip(0.2 * v + 0.5, 0.0, 1.0)

    layer = _keras_layer(
        2, x, rng, scale=0.8, kernel_size=3, padding="same",
        recurrent_activation=keras2_hard_sigmoid,
    )
    config = {**layer.get_config(), "recurrent_activation": "hard_sigmoid"}
    module = from_keras_weights(config, layer.get_weights(), keras_version="2.15.0")
    _assert_parity(layer, x, module)
    keras3 = from_keras_weights(config, layer.get_weights(), keras_version="3.5.0")
    out2, _, _ = _run_ours(module, np.moveaxis(x, -1, 2))
    out3, _, _ = _run_ours(keras3, np.moveaxis(x, -1, 2))
    assert np.abs(out2 - out3).max() > 1e-3


def test_module_attributes():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((B, T, 7, 9, 2)).astype("float32")
    layer = _keras_layer(2, x, rng, kernel_size=(3, 2), padding="same", name="frames")
    config, weights = layer.get_config(), layer.get_weights()
    module = from_keras_weights(config, weights)
    assert module.keras_config == config
    assert not module.training
    assert "frames" in repr(module)
    cell = module.cell
    assert tuple(cell.weight_ih.shape) == (4 * F, 2, 3, 2)
    assert tuple(cell.weight_hh.shape) == (4 * F, F, 3, 2)
    assert cell.weight_ih.dtype == torch.float32
    np.testing.assert_array_equal(cell.weight_ih.detach().numpy(), weights[0].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(cell.weight_hh.detach().numpy(), weights[1].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(cell.bias.detach().numpy(), weights[2])


# ---------------------------------------------------------------------------- errors


def _small_config(**overrides):
    config = dict(
        filters=2, kernel_size=[3, 3], strides=[1, 1], padding="same",
        data_format="channels_last", dilation_rate=[1, 1], activation="tanh",
        recurrent_activation="sigmoid", use_bias=True, go_backwards=False, stateful=False,
    )
    config.update(overrides)
    return config


def _small_weights(c_in=4, f=2, k=(3, 3), bias=True):
    weights = [np.zeros((*k, c_in, 4 * f), "float32"), np.zeros((*k, f, 4 * f), "float32")]
    return weights + ([np.zeros(4 * f, "float32")] if bias else [])


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("stateful", True, "False"),
        ("activation", "softmax", "one of"),
        ("recurrent_activation", "my_custom_fn", "one of"),
        ("padding", "causal", "'same' or 'valid'"),
        ("data_format", "channels_middle", "channels_last"),
        ("filters", 0, "a positive int"),
        ("strides", [1, 1, 1], "list of 2 positive ints"),
        ("dilation_rate", [0, 1], "list of 2 positive ints"),
        ("use_bias", "yes", "True or False"),
        ("time_major", True, "False"),
    ],
)
def test_unsupported_config_values(key, value, expected):
    with pytest.raises(ValueError) as info:
        from_keras_weights(_small_config(**{key: value}), _small_weights())
    message = str(info.value)
    assert repr(key) in message
    assert expected in message
    assert repr(value) in message


@pytest.mark.parametrize(
    "weights, name, expected, given",
    [
        (_small_weights(k=(3, 2)), "'kernel'", "(3, 3, C_in, 8)", "(3, 2, 4, 8)"),
        (
            [np.zeros((3, 3, 4, 8)), np.zeros((3, 3, 3, 8)), np.zeros(8)],
            "'recurrent_kernel'", "(3, 3, 2, 8)", "(3, 3, 3, 8)",
        ),
        (
            [np.zeros((3, 3, 4, 8)), np.zeros((3, 3, 2, 8)), np.zeros(6)],
            "'bias'", "(8,)", "(6,)",
        ),
        ([np.zeros((3, 3, 4, 6)), *_small_weights()[1:]], "'kernel'", "(3, 3, C_in, 8)", "6)"),
        (_small_weights(bias=False), "3 Keras weight arrays", "bias", "got 2"),
    ],
)
def test_wrong_weight_shapes(weights, name, expected, given):
    with pytest.raises(ValueError) as info:
        from_keras_weights(_small_config(), weights)
    message = str(info.value)
    assert name in message and expected in message and given in message


# ---------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def nested_model():
    """Functional model: a nested Sequential with two ConvLSTM2D, then a third, then Dense."""
    rng = np.random.default_rng(6)
    seq = keras.Sequential(
        [
            keras.Input((T, 7, 9, 2)),
            keras.layers.ConvLSTM2D(F, 3, padding="same", return_sequences=True, name="first"),
            keras.layers.ConvLSTM2D(
                F, 2, padding="valid", return_sequences=True, go_backwards=True, name="second"
            ),
        ],
        name="encoder",
    )
    inputs = keras.Input((T, 7, 9, 2))
    hidden = seq(inputs)
    hidden = keras.layers.ConvLSTM2D(
        2, 3, padding="same", strides=2, activation="relu", return_sequences=True, name="third"
    )(hidden)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(hidden))
    model = keras.Model(inputs, outputs)
    for layer in (*seq.layers, *model.layers):
        if layer.get_weights() and layer is not seq:
            _randomize(layer, rng)
    x = rng.standard_normal((B, T, 7, 9, 2)).astype("float32")
    # Each ConvLSTM's own input and output (return_sequences=True, no states).
    first, second, third = seq.get_layer("first"), seq.get_layer("second"), model.get_layer("third")
    cases = {}
    current = x
    for layer in (first, second, third):
        out = _numpy(layer(current))
        cases[layer.name] = (current, out)
        current = out
    return model, cases


def _check_loaded(module: KerasConvLSTM, x: np.ndarray, expected: np.ndarray):
    out, h, _ = _run_ours(module, np.moveaxis(x, -1, 2))
    np.testing.assert_allclose(np.moveaxis(out, 2, -1), expected, rtol=0, atol=TOL)
    # h_n is the last output Keras returns.
    np.testing.assert_allclose(h[0], out[:, -1], rtol=0, atol=0)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_load_nested_model(nested_model, tmp_path, suffix):
    model, cases = nested_model
    path = tmp_path / f"model{suffix}"
    model.save(path)
    for name, (x, expected) in cases.items():
        module = load_keras_convlstm(path, layer_name=name)
        assert module.keras_config["name"] == name
        _check_loaded(module, x, expected)
    assert load_keras_convlstm(path, "second").go_backwards
    with pytest.raises(ValueError, match=r"3 ConvLSTM layers: 'first' \(ConvLSTM2D\), "
                                         r"'second' \(ConvLSTM2D\), 'third' \(ConvLSTM2D\)"):
        load_keras_convlstm(path)
    with pytest.raises(ValueError, match=r"no ConvLSTM layer named 'dense'.*'first'"):
        load_keras_convlstm(str(path), layer_name="dense")


def test_load_keras_file_without_recorded_names(nested_model, tmp_path):
    """Files from Keras releases that do not record layer names in the weights file are
    found by Keras's path naming (class names, numbered; Sequential skips its Input)."""
    model, cases = nested_model
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    h5py = pytest.importorskip("h5py")
    buffer = io.BytesIO(entries["model.weights.h5"])
    with h5py.File(buffer, "a") as h5:
        stripped = []

        def strip(name, obj):
            if "name" in obj.attrs:
                del obj.attrs["name"]
                stripped.append(name)

        h5.visititems(strip)
    assert any(name.endswith("conv_lstm2d_1/vars") for name in stripped)
    entries["model.weights.h5"] = buffer.getvalue()
    rewritten = tmp_path / "old.keras"
    with zipfile.ZipFile(rewritten, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    for name, (x, expected) in cases.items():
        _check_loaded(load_keras_convlstm(rewritten, name), x, expected)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_load_single_layer_sequential(tmp_path, suffix):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((B, T, 11, 2)).astype("float32")
    layer = keras.layers.ConvLSTM1D(
        F, 4, padding="same", strides=2, go_backwards=True, recurrent_activation="hard_sigmoid",
        return_sequences=True, return_state=True, name="clstm",
    )
    model = keras.Sequential([keras.Input((T, 11, 2)), layer])
    _randomize(layer, rng)
    path = tmp_path / f"seq{suffix}"
    model.save(path)
    module = load_keras_convlstm(path)
    _assert_parity(layer, x, module)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_load_without_convlstm(tmp_path, suffix):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2, name="dense")])
    path = tmp_path / f"dense{suffix}"
    model.save(path)
    with pytest.raises(ValueError, match="no ConvLSTM1D/2D/3D layer"):
        load_keras_convlstm(path)


def test_load_rejects_other_files(tmp_path, nested_model):
    weights_only = tmp_path / "model.weights.h5"
    nested_model[0].save_weights(weights_only)
    with pytest.raises(ValueError, match="no model_config"):
        load_keras_convlstm(weights_only)
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    with pytest.raises(ValueError, match=r"neither a \.keras archive nor an HDF5"):
        load_keras_convlstm(text)
    with pytest.raises(FileNotFoundError):
        load_keras_convlstm(tmp_path / "missing.keras")


def test_loading_imports_neither_tensorflow_nor_keras(nested_model, tmp_path):
    path = tmp_path / "model.keras"
    nested_model[0].save(path)
    code = (
        "import sys\n"
        "from convlstm.interop import load_keras_convlstm\n"
        f"module = load_keras_convlstm({str(path)!r}, 'third')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not loaded, loaded\n"
        "print(type(module).__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
        cwd=Path(__file__).parent,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "KerasConvLSTM"


# ------------------------------------------------------------------ Keras 2 / 3 versions


def test_activation_table_names_both_hard_sigmoids():
    """"hard_sigmoid" is Keras 3's; "hard_sigmoid_keras2" is Keras 2's, by name."""
    from convlstm.nn.activations import ACTIVATIONS

    x = torch.tensor([-3.0, -2.5, 0.0, 1.0, 2.5, 3.0])
    torch.testing.assert_close(ACTIVATIONS["hard_sigmoid"](x), torch.clamp(x / 6 + 0.5, 0, 1))
    torch.testing.assert_close(
        ACTIVATIONS["hard_sigmoid_keras2"](x), torch.clamp(0.2 * x + 0.5, 0, 1)
    )
    config = _small_config(recurrent_activation="hard_sigmoid")
    cell2 = from_keras_weights(config, _small_weights(), keras_version="2.4.0").cell
    cell3 = from_keras_weights(config, _small_weights(), keras_version="3.5.0").cell
    assert cell2.recurrent_activation_name == "hard_sigmoid_keras2"
    assert cell3.recurrent_activation_name == "hard_sigmoid"
    # A Keras config never says "hard_sigmoid_keras2": the version decides.
    assert "hard_sigmoid_keras2" not in KERAS_ACTIVATIONS


def test_guessing_the_keras_version_warns():
    config = _small_config(recurrent_activation="hard_sigmoid")
    with pytest.warns(UserWarning, match=r"keras_version.*hard_sigmoid.*Keras 3"):
        cell = from_keras_weights(config, _small_weights()).cell
    assert cell.recurrent_activation_name == "hard_sigmoid"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_keras_weights(config, _small_weights(), keras_version="2.4.0")
        # Without a hard sigmoid the version changes nothing: nothing to warn about.
        from_keras_weights(_small_config(), _small_weights())


def _hard_sigmoid_model(tmp_path, suffix):
    rng = np.random.default_rng(8)
    layer = keras.layers.ConvLSTM1D(
        F, 3, padding="same", recurrent_activation="hard_sigmoid", return_sequences=True
    )
    model = keras.Sequential([keras.Input((T, 11, 2)), layer])
    _randomize(layer, rng, scale=2.0)
    path = tmp_path / f"model{suffix}"
    model.save(path)
    return path


def test_keras_version_recorded_in_keras_file(tmp_path):
    """A .keras archive records the version that wrote it (tf.keras 2.13+ writes them too)."""
    path = _hard_sigmoid_model(tmp_path, ".keras")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras3 = load_keras_convlstm(path)
    assert keras3.cell.recurrent_activation_name == "hard_sigmoid"
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    import json

    metadata = json.loads(entries["metadata.json"])
    rewritten = tmp_path / "keras2.keras"
    for version, name in (("2.15.0", "hard_sigmoid_keras2"), (None, "hard_sigmoid")):
        if version is None:
            metadata.pop("keras_version")
        else:
            metadata["keras_version"] = version
        entries["metadata.json"] = json.dumps(metadata).encode()
        with zipfile.ZipFile(rewritten, "w") as archive:
            for entry, data in entries.items():
                archive.writestr(entry, data)
        if version is None:
            with pytest.warns(UserWarning, match="keras2.keras.*does not record"):
                module = load_keras_convlstm(rewritten)
        else:
            module = load_keras_convlstm(rewritten)
        assert module.cell.recurrent_activation_name == name


def test_keras_version_recorded_in_h5_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = _hard_sigmoid_model(tmp_path, ".h5")
    assert load_keras_convlstm(path).cell.recurrent_activation_name == "hard_sigmoid"
    with h5py.File(path, "a") as h5:
        h5.attrs["keras_version"] = "2.4.0"
        if "keras_version" in h5["model_weights"].attrs:
            h5["model_weights"].attrs["keras_version"] = "2.4.0"
    assert load_keras_convlstm(path).cell.recurrent_activation_name == "hard_sigmoid_keras2"
    with h5py.File(path, "a") as h5:
        del h5.attrs["keras_version"]
        if "keras_version" in h5["model_weights"].attrs:
            del h5["model_weights"].attrs["keras_version"]
    with pytest.warns(UserWarning, match=r"model\.h5.*does not record"):
        load_keras_convlstm(path)


def test_float64_layer_stays_float64():
    """The config's dtype is honoured: float64 Keras layers give float64 modules that agree
    with Keras to 1e-10 (a float32 import cannot, whatever is done to it afterwards)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((B, T, 7, 9, 2))
    layer = keras.layers.ConvLSTM2D(
        F, 3, padding="same", return_sequences=True, dtype="float64", name="f64"
    )
    layer(x)
    layer.set_weights([rng.standard_normal(w.shape) * 0.5 for w in layer.get_weights()])
    expected = _numpy(layer(x))
    assert expected.dtype == np.float64
    module = from_keras_weights(layer.get_config(), layer.get_weights(), keras_version="3")
    assert module.cell.weight_ih.dtype == torch.float64
    with torch.no_grad():
        out, _ = module(torch.from_numpy(np.moveaxis(x, -1, 2).copy()))
    assert out.dtype == torch.float64
    np.testing.assert_allclose(np.moveaxis(out.numpy(), 2, -1), expected, rtol=0, atol=1e-10)
