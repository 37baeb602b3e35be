"""Import Keras ``ConvLSTM1D/2D/3D`` layers: weights, configs and saved model files.

Two entry points, neither of which needs TensorFlow or Keras itself:

* ``from_keras_weights(config, weights)`` builds a module from a Keras layer's
  ``get_config()`` dict and ``get_weights()`` list.
* ``load_keras_convlstm(path, layer_name=None)`` does the same from a saved model: a
  Keras 3 ``.keras`` archive or a legacy ``.h5`` model file (read with ``zipfile``,
  ``json`` and ``h5py``; ``pip install convlstm[keras]`` provides h5py).

Both return a ``KerasConvLSTM``, which reproduces the Keras layer's inference
outputs (full sequence) and final states. Our layers are channels-first: whatever
``data_format`` the Keras layer used (the weights do not depend on it), the module
takes ``(B, T, C, *spatial)``. Turn channels-last data around first, e.g. for
frames ``(B, T, H, W, C)``: ``x.permute(0, 1, 4, 2, 3)``.

Weight layout. Keras stores ``kernel (*k, C_in, 4F)``, ``recurrent_kernel
(*k, F, 4F)`` and ``bias (4F,)`` with the gates in order ``i, f, c, o``; our cells
hold ``weight_ih (4F, C_in, *k)``, ``weight_hh (4F, F, *k)`` and ``bias (4F,)`` in
the same gate order, so the import is a transpose, no gate shuffling.
"""

from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..nn.activations import ACTIVATIONS
from ..nn.cell import ConvLSTMCellNd
from ..nn.layer import ConvLSTMNd
from ..runtime import ConvLSTMWarning

__all__ = [
    "CONVLSTM_CLASSES",
    "KERAS_ACTIVATIONS",
    "KerasConvLSTM",
    "from_keras_weights",
    "import_keras_run",
    "load_keras_convlstm",
    "load_keras_model",
]

#: Keras class names of the layers this module imports, with their rank.
CONVLSTM_CLASSES: dict[str, int] = {"ConvLSTM1D": 1, "ConvLSTM2D": 2, "ConvLSTM3D": 3}


def _keras_leaky_relu(x: torch.Tensor) -> torch.Tensor:
    """Keras 3 ``leaky_relu`` with its default slope 0.2."""
    return torch.nn.functional.leaky_relu(x, 0.2)


#: Keras activation names accepted in a config, and the function each maps to
#: (Keras 3 definitions; each is checked against Keras in the tests).
KERAS_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    **{k: v for k, v in ACTIVATIONS.items() if k != "hard_sigmoid_keras2"},
    "softplus": torch.nn.functional.softplus,
    "exponential": torch.exp,
    "leaky_relu": _keras_leaky_relu,
    "mish": torch.nn.functional.mish,
    "hard_silu": torch.nn.functional.hardswish,
    "hard_swish": torch.nn.functional.hardswish,
    "celu": torch.nn.functional.celu,
    "log_sigmoid": torch.nn.functional.logsigmoid,
}


class KerasConvLSTM(nn.Module):
    """A ConvLSTM layer imported from Keras, with Keras's output conventions.

    Wraps one of our ``ConvLSTM1d/2d/3d`` layers (``self.layer``) holding the Keras
    weights, and keeps the Keras layer config as ``self.keras_config``.

    Shapes (``N`` = 1, 2 or 3 spatial dimensions; always channels-first, whatever the
    Keras ``data_format`` was)::

        input   x         (B, T, C_in, *spatial)
        state   h_0, c_0  (1, B, F, *spatial')     optional; zeros when omitted
        output  output    (B, T, F, *spatial')     every step, as Keras's
                                                   return_sequences=True gives it
                h_n, c_n  (1, B, F, *spatial')     Keras's return_state=True states

    ``spatial'`` is the Keras output size (smaller with ``padding="valid"`` or strides).
    With ``go_backwards=True`` the sequence is processed last step first and, like
    Keras, ``output`` is in processing order: ``output[:, 0]`` follows input step
    ``T-1``, and ``output[:, -1]`` (Keras's ``return_sequences=False`` output) follows
    input step 0.

    Dropout and recurrent dropout of the Keras layer are not applied: the module
    reproduces the Keras layer at inference.

    Args:
        layer: the ``ConvLSTMNd`` holding the weights (one layer, one direction).
        keras_config: the Keras ``get_config()`` dict it was built from.
        go_backwards: process time backwards and return outputs in processing order.
    """

    def __init__(
        self, layer: ConvLSTMNd, keras_config: Mapping[str, Any], *, go_backwards: bool = False
    ) -> None:
        super().__init__()
        if layer.num_layers != 1 or layer.bidirectional or not layer.batch_first:
            raise ValueError(
                "KerasConvLSTM wraps a single-layer, unidirectional, batch_first ConvLSTM"
            )
        self.layer = layer
        self.keras_config = dict(keras_config)
        self.go_backwards = bool(go_backwards)

    @property
    def cell(self) -> ConvLSTMCellNd:
        """The ``ConvLSTMCellNd`` holding ``weight_ih``, ``weight_hh`` and ``bias``."""
        return self.layer.cell(0)

    def extra_repr(self) -> str:
        name = self.keras_config.get("name")
        parts = [] if name is None else [f"name={name!r}"]
        if self.go_backwards:
            parts.append("go_backwards=True")
        return ", ".join(parts)

    def forward(
        self,
        x: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the whole sequence.

        Args:
            x: ``(B, T, C_in, *spatial)``, channels-first.
            state: ``(h_0, c_0)``, each ``(1, B, F, *spatial')`` (Keras's
                ``initial_state=[h_0[0], c_0[0]]`` in channels-first), or ``None``.

        Returns:
            ``(output, (h_n, c_n))``: ``output`` ``(B, T, F, *spatial')`` in Keras's
            order, ``h_n`` and ``c_n`` ``(1, B, F, *spatial')``.
        """
        output, (h_n, c_n) = self.layer(x, state, reverse=self.go_backwards)
        if self.go_backwards:
            # Ours stays aligned with input time; Keras returns processing order.
            output = output.flip(1)
        return output, (h_n, c_n)


# ---------------------------------------------------------------------------- config


def _config_error(key: str, expected: str, given: Any, where: str | None = None) -> ValueError:
    what = where or "unsupported Keras ConvLSTM config"
    return ValueError(f"{what}: {key!r} must be {expected}, got {given!r}")


def _int_tuple(
    config: Mapping[str, Any], key: str, rank: int, default: int | None, where: str | None = None
) -> tuple:
    value = config.get(key, default)
    if value is None:
        raise _config_error(key, f"an int or a list of {rank} positive ints", value, where)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value),) * rank
    if (
        not isinstance(value, (list, tuple))
        or len(value) != rank
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
        or any(v < 1 for v in value)
    ):
        raise _config_error(key, f"an int or a list of {rank} positive ints", value, where)
    return tuple(int(v) for v in value)


def _activation_name(value: Any) -> Any:
    """The activation name in a serialised activation (a str, None or a Keras dict)."""
    if value is None:
        return "linear"
    if isinstance(value, Mapping):
        # Keras serialises functions as {"class_name": "function", "config": "relu", ...}.
        inner = value.get("config")
        if isinstance(inner, str):
            return inner
        return value
    return value


def _activation(
    config: Mapping[str, Any],
    key: str,
    default: str,
    keras_version: str | None,
    where: str | None = None,
):
    given = config.get(key, default)
    name = _activation_name(given)
    if isinstance(name, str) and name.lower() in KERAS_ACTIVATIONS:
        name = name.lower()
        if name == "hard_sigmoid" and major_version(keras_version) == 2:
            return "hard_sigmoid_keras2"
        # Our layers' own names where they have them (readable repr), else the function.
        return name if name in ACTIVATIONS else KERAS_ACTIVATIONS[name]
    raise _config_error(key, f"one of {sorted(KERAS_ACTIVATIONS)}", given, where)


def major_version(version: str | None) -> int | None:
    """The major version in a version string (``"2.4.0"`` -> 2), or None."""
    if not version:
        return None
    match = re.match(r"\s*(\d+)", str(version))
    return int(match.group(1)) if match else None


def uses_hard_sigmoid(config: Any) -> bool:
    """Whether a (nested) Keras config names ``hard_sigmoid`` anywhere: the one name whose
    meaning changed between Keras 2 and 3."""
    if isinstance(config, Mapping):
        return any(uses_hard_sigmoid(v) for v in config.values())
    if isinstance(config, (list, tuple)):
        return any(uses_hard_sigmoid(v) for v in config)
    return isinstance(config, str) and config.lower() == "hard_sigmoid"


def warn_version_guess(config: Any, source: str) -> None:
    """Warn that ``hard_sigmoid`` in ``config`` is read as Keras 3's without knowing the
    version that wrote it (``source`` says why it is unknown)."""
    if uses_hard_sigmoid(config):
        warnings.warn(
            f"{source}: 'hard_sigmoid' read as Keras 3's relu6(x + 3) / 6; a model written by "
            "Keras 2 meant clip(0.2 x + 0.5, 0, 1): pass keras_version='2' if it was",
            ConvLSTMWarning,
            stacklevel=3,
        )


#: Keras dtype names -> torch dtypes (a layer's variables and computation).
DTYPES = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64,
}  # fmt: skip


def keras_dtype(value: Any, where: str | None = None) -> torch.dtype:
    """The dtype of a Keras layer config's ``dtype`` (a name, or a Keras 3 / Keras 2 dtype
    policy dict); float32 when absent. Mixed-precision policies are refused."""
    name = value
    if isinstance(value, Mapping):
        name = value.get("config", {}).get("name") if isinstance(value.get("config"), Mapping) \
            else value.get("name")
    if name is None:
        return torch.float32
    if isinstance(name, str) and name in DTYPES:
        return DTYPES[name]
    raise ValueError(
        f"{where or 'Keras config'}: 'dtype' must be one of {sorted(DTYPES)} "
        f"(mixed-precision policies are not supported), got {value!r}"
    )


def untuple(config: Any) -> Any:
    """``config`` with Keras 2's serialised tuples (``{"class_name": "__tuple__",
    "items": [...]}``) turned into lists, at any depth."""
    if isinstance(config, Mapping):
        if config.get("class_name") == "__tuple__" and "items" in config:
            return [untuple(v) for v in config["items"]]
        return {k: untuple(v) for k, v in config.items()}
    if isinstance(config, list):
        return [untuple(v) for v in config]
    return config


def _bool(config: Mapping[str, Any], key: str, default: bool, where: str | None = None) -> bool:
    value = config.get(key, default)
    if not isinstance(value, (bool, np.bool_)):
        raise _config_error(key, "True or False", value, where)
    return bool(value)


def _infer_rank(config: Mapping[str, Any], weights: Sequence[Any], rank: int | None) -> int:
    if rank is None:
        for key in ("kernel_size", "strides", "dilation_rate"):
            value = config.get(key)
            if isinstance(value, (list, tuple)):
                rank = len(value)
                break
    if rank is None and weights:
        rank = np.ndim(weights[0]) - 2
    if rank not in (1, 2, 3):
        raise ValueError(
            "cannot tell the ConvLSTM rank (1, 2 or 3) from the Keras config "
            f"(kernel_size={config.get('kernel_size')!r}) or the kernel's shape; got {rank!r}"
        )
    return rank


def _as_array(value: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except Exception as error:  # e.g. a ragged list
        raise ValueError(f"{what} is not an array: {error}") from error
    if array.dtype.kind not in "fiu":
        try:
            array = array.astype(np.float32)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{what} must hold numbers, got dtype {array.dtype}") from error
    return array


def build_convlstm(
    config: Mapping[str, Any],
    shapes: Sequence[Sequence[int]],
    keras_version: str | None,
    rank: int,
    where: str | None = None,
) -> KerasConvLSTM:
    """A ``KerasConvLSTM`` for a Keras ConvLSTM config and its weights' shapes, with
    freshly initialised parameters in the config's dtype (``from_keras_weights`` then
    copies the weights in). ``where`` names the layer in errors."""
    if _bool(config, "stateful", False, where):
        raise _config_error("stateful", "False (stateful layers are not supported)", True, where)
    if _bool(config, "time_major", False, where):
        raise _config_error("time_major", "False", True, where)
    go_backwards = _bool(config, "go_backwards", False, where)
    use_bias = _bool(config, "use_bias", True, where)

    filters = config.get("filters")
    if not isinstance(filters, (int, np.integer)) or isinstance(filters, bool) or filters < 1:
        raise _config_error("filters", "a positive int", filters, where)
    filters = int(filters)
    kernel_size = _int_tuple(config, "kernel_size", rank, None, where)
    strides = _int_tuple(config, "strides", rank, 1, where)
    dilation = _int_tuple(config, "dilation_rate", rank, 1, where)

    padding = config.get("padding", "valid")
    if not isinstance(padding, str) or padding.lower() not in ("same", "valid"):
        raise _config_error("padding", "'same' or 'valid'", padding, where)
    data_format = config.get("data_format")
    if data_format not in (None, "channels_last", "channels_first"):
        raise _config_error(
            "data_format", "'channels_last' or 'channels_first'", data_format, where
        )
    activation = _activation(config, "activation", "tanh", keras_version, where)
    recurrent_activation = _activation(
        config, "recurrent_activation", "sigmoid", keras_version, where
    )
    dtype = keras_dtype(config.get("dtype"), where)

    prefix = f"{where}: " if where else ""
    names = ["kernel", "recurrent_kernel"] + (["bias"] if use_bias else [])
    if len(shapes) != len(names):
        raise ValueError(
            f"{prefix}expected {len(names)} Keras weight arrays [{', '.join(names)}] "
            f"(use_bias={use_bias}), got {len(shapes)}"
        )
    shapes = [tuple(int(v) for v in shape) for shape in shapes]
    kernel = shapes[0]
    gates = 4 * filters
    in_channels = kernel[-2] if len(kernel) == rank + 2 else None
    expected_kernel = (*kernel_size, "C_in", gates)
    if in_channels is None or in_channels < 1 or kernel != (*kernel_size, in_channels, gates):
        raise ValueError(
            f"{prefix}Keras weight 'kernel' must have shape {_fmt(expected_kernel)} "
            f"(kernel_size + (C_in, 4 * filters)), got {kernel}"
        )
    expected = {"recurrent_kernel": (*kernel_size, filters, gates), "bias": (gates,)}
    for name, shape in zip(names[1:], shapes[1:]):
        if shape != expected[name]:
            raise ValueError(
                f"{prefix}Keras weight {name!r} must have shape {_fmt(expected[name])}, "
                f"got {shape}"
            )

    layer = ConvLSTMNd(
        int(in_channels),
        filters,
        kernel_size,
        ndim=rank,
        stride=strides,
        padding=padding.lower(),
        dilation=dilation,
        bias=use_bias,
        batch_first=True,
        activation=activation,
        recurrent_activation=recurrent_activation,
        unit_forget_bias=bool(config.get("unit_forget_bias", True)),
    ).to(dtype)
    return KerasConvLSTM(layer, config, go_backwards=go_backwards).eval()


def from_keras_weights(
    config: Mapping[str, Any],
    weights: Sequence[Any],
    *,
    keras_version: str | None = None,
    rank: int | None = None,
) -> KerasConvLSTM:
    """Build a ``KerasConvLSTM`` from a Keras ConvLSTM layer's config and weights.

    Example::

        >>> k = keras.layers.ConvLSTM2D(8, 3, padding="same")     # built on (B, T, H, W, C)
        >>> module = from_keras_weights(k.get_config(), k.get_weights())
        >>> out, (h_n, c_n) = module(x.permute(0, 1, 4, 2, 3))    # channels-first input

    Args:
        config: ``layer.get_config()`` of a Keras ``ConvLSTM1D``, ``ConvLSTM2D`` or
            ``ConvLSTM3D`` (Keras 3, or tf.keras 2 with ``time_major=False``). Used
            keys: ``filters``, ``kernel_size``, ``strides``, ``padding``
            (``"same"``/``"valid"``), ``dilation_rate``, ``activation``,
            ``recurrent_activation``, ``use_bias``, ``go_backwards``, ``data_format``
            (either value: the weights do not depend on it), ``stateful`` (must be
            False), ``dtype`` (the parameters' dtype: a float64 layer stays float64).
            Initialisers, regularisers, constraints and dropout are ignored.
        weights: ``layer.get_weights()``: ``kernel (*k, C_in, 4F)``,
            ``recurrent_kernel (*k, F, 4F)`` and, with ``use_bias``, ``bias (4F,)``.
        keras_version: the Keras version that wrote the config. Keras 2 defined
            ``hard_sigmoid`` as ``clip(0.2 x + 0.5, 0, 1)`` (imported as
            ``"hard_sigmoid_keras2"``), Keras 3 as ``relu6(x + 3) / 6``. When it is not
            given and the config uses ``hard_sigmoid``, Keras 3 is assumed, with a warning.
        rank: spatial rank (1, 2 or 3), when known from the class name; otherwise
            taken from ``kernel_size`` or the kernel's shape.

    Returns:
        A ``KerasConvLSTM`` (parameters in the config's dtype) mapping
        ``(B, T, C_in, *spatial)`` to
        ``(output (B, T, F, *spatial'), (h_n, c_n) (1, B, F, *spatial'))``.

    Raises:
        ValueError: an unsupported config value (naming the key, the accepted and the
            given value) or a weight array of the wrong shape (naming the array, the
            expected and the given shape).
    """
    if keras_version is None:
        warn_version_guess(config, "from_keras_weights: keras_version not given")
    return _from_keras_weights(config, weights, keras_version, rank)


def _from_keras_weights(
    config: Mapping[str, Any],
    weights: Sequence[Any],
    keras_version: str | None,
    rank: int | None,
) -> KerasConvLSTM:
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict from layer.get_config(), got {type(config)}")
    if not isinstance(weights, (list, tuple)):
        raise TypeError(f"weights must be a list from layer.get_weights(), got {type(weights)}")
    rank = _infer_rank(config, weights, rank)
    use_bias = _bool(config, "use_bias", True)
    names = ["kernel", "recurrent_kernel", "bias"]
    arrays = [_as_array(w, name) for w, name in zip(weights, names)] + [
        _as_array(w, f"weight {i}") for i, w in enumerate(weights[3:], 3)
    ]
    module = build_convlstm(config, [a.shape for a in arrays], keras_version, rank)
    cell = module.cell
    # Keras (*k, C, 4F) -> torch (4F, C, *k).
    order = (rank + 1, rank, *range(rank))
    with torch.no_grad():
        for target, array in zip((cell.weight_ih, cell.weight_hh), arrays):
            target.copy_(torch.from_numpy(np.ascontiguousarray(array.transpose(order))))
        if use_bias:
            cell.bias.copy_(torch.from_numpy(np.ascontiguousarray(arrays[2])))
    return module


def _fmt(shape: tuple) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


# ---------------------------------------------------------------------------- files


@dataclass
class _Found:
    """A ConvLSTM layer found in a model config."""

    name: str
    class_name: str
    config: dict
    weights_path: str  # where a Keras 3 ``.keras`` archive stores its variables
    ancestors: tuple[str, ...]  # names of the nested models holding it (top model excluded)


def _to_snake_case(name: str) -> str:
    """Keras's ``naming.to_snake_case`` (paths in ``.keras`` weight files use it)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _walk_model(
    model: Mapping[str, Any], prefix: str, ancestors: tuple[str, ...], wrapped: list[str]
) -> Iterator[_Found]:
    """ConvLSTM layers in a serialised Functional/Sequential model, nested models included.

    ``prefix`` is the model's path in a ``.keras`` weights file. Keras 3 names each
    layer's group after its snake-cased class, numbered in order of ``model.layers``
    (``conv_lstm2d``, ``conv_lstm2d_1``, ...); a Sequential model leaves its
    ``InputLayer`` out of ``model.layers``.
    """
    config = model.get("config")
    layers = config.get("layers") if isinstance(config, Mapping) else None
    if not isinstance(layers, list):
        return
    sequential = model.get("class_name") == "Sequential"
    used: dict[str, int] = {}
    for entry in layers:
        if not isinstance(entry, Mapping):
            continue
        class_name = str(entry.get("class_name", ""))
        layer_config = entry.get("config")
        if not isinstance(layer_config, Mapping):
            layer_config = {}
        if sequential and class_name == "InputLayer":
            continue
        segment = _to_snake_case(class_name)
        if segment in used:
            used[segment] += 1
            segment = f"{segment}_{used[segment]}"
        else:
            used[segment] = 0
        path = f"{prefix}layers/{segment}"
        name = str(layer_config.get("name", entry.get("name", segment)))
        if class_name in CONVLSTM_CLASSES:
            yield _Found(name, class_name, dict(layer_config), path, ancestors)
        elif isinstance(layer_config.get("layers"), list):
            yield from _walk_model(entry, path + "/", (*ancestors, name), wrapped)
        else:
            for key in ("layer", "forward_layer", "backward_layer"):
                inner = layer_config.get(key)
                if isinstance(inner, Mapping) and inner.get("class_name") in CONVLSTM_CLASSES:
                    wrapped.append(f"{name!r} ({class_name})")
                    break


def _select(
    found: list[_Found], wrapped: list[str], layer_name: str | None, path: Path
) -> _Found:
    listing = ", ".join(f"{f.name!r} ({f.class_name})" for f in found)
    if layer_name is None:
        if len(found) == 1:
            return found[0]
        if not found:
            message = f"no ConvLSTM1D/2D/3D layer in {path}"
            if wrapped:
                message += (
                    "; ConvLSTM layers inside wrappers are not supported: " + ", ".join(wrapped)
                )
            raise ValueError(message)
        raise ValueError(
            f"{path} holds {len(found)} ConvLSTM layers: {listing}; "
            "choose one with layer_name="
        )
    matches = [f for f in found if f.name == layer_name]
    if not matches:
        raise ValueError(
            f"no ConvLSTM layer named {layer_name!r} in {path}; "
            f"ConvLSTM layers found: {listing or 'none'}"
        )
    if len(matches) > 1:
        raise ValueError(
            f"{len(matches)} ConvLSTM layers are named {layer_name!r} in {path} "
            "(in different nested models); cannot tell them apart"
        )
    return matches[0]


def _require_h5py():
    try:
        import h5py
    except ImportError as error:  # pragma: no cover - h5py is a test dependency
        raise ImportError(
            "reading Keras model files needs h5py: pip install 'convlstm[keras]'"
        ) from error
    return h5py


def _decode(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _read_vars(group: Any) -> list[np.ndarray]:
    """Datasets ``0, 1, 2, ...`` of a Keras 3 ``vars`` group, in order."""
    keys = sorted(group.keys(), key=lambda k: int(k) if str(k).isdigit() else 1 << 30)
    return [np.asarray(group[k]) for k in keys]


def _load_keras_v3(path: Path, layer_name: str | None) -> KerasConvLSTM:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if "config.json" not in names:
            raise ValueError(f"{path} is a zip file without config.json: not a .keras model")
        model = untuple(json.loads(archive.read("config.json")))
        version = None
        if "metadata.json" in names:
            version = json.loads(archive.read("metadata.json")).get("keras_version")
        if "model.weights.h5" not in names:
            stored = sorted(n for n in names if n.startswith("model.weights"))
            raise ValueError(
                f"{path} has no model.weights.h5 (found {stored or 'no weights'}); "
                "only unsharded HDF5 weights are supported"
            )
        weights_bytes = archive.read("model.weights.h5")

    wrapped: list[str] = []
    if isinstance(model, Mapping) and model.get("class_name") in CONVLSTM_CLASSES:
        config = model.get("config", {})
        found = [_Found(str(config.get("name")), model["class_name"], dict(config), "", ())]
    else:
        found = list(_walk_model(model, "", (), wrapped))
    chosen = _select(found, wrapped, layer_name, path)

    h5py = _require_h5py()
    with h5py.File(io.BytesIO(weights_bytes), "r") as h5:
        group = _locate_v3(h5, chosen)
        if group is None:
            raise ValueError(
                f"{path}: no weights found for ConvLSTM layer {chosen.name!r} "
                f"(looked for {chosen.weights_path or '/'}/cell/vars)"
            )
        weights = _read_vars(group)
    if version is None:
        warn_version_guess(chosen.config, f"{path} does not record the Keras version that wrote it")
    return _from_keras_weights(
        chosen.config, weights, version, CONVLSTM_CLASSES[chosen.class_name]
    )


def _locate_v3(h5: Any, chosen: _Found) -> Any:
    """The ``cell/vars`` group of ``chosen`` in a Keras 3 weights file.

    The path follows Keras's naming; files written by Keras 3.x releases that record
    each layer's name (attribute ``name`` of its ``vars`` group) are checked against it,
    and searched by it when the path does not match.
    """
    def recorded_name(layer_group: Any) -> str | None:
        vars_group = layer_group.get("vars")
        if vars_group is None or "name" not in vars_group.attrs:
            return None
        return _decode(vars_group.attrs["name"])

    base = chosen.weights_path
    candidate = h5.get(base) if base else h5
    if (
        candidate is not None
        and "cell/vars" in candidate
        and recorded_name(candidate) in (None, chosen.name)
    ):
        return candidate["cell/vars"]

    hits: list[Any] = []

    def visit(_: str, obj: Any) -> None:
        if (
            hasattr(obj, "keys")
            and "cell" in obj
            and "vars" in obj["cell"]
            and recorded_name(obj) == chosen.name
        ):
            hits.append(obj["cell/vars"])

    h5.visititems(visit)
    return hits[0] if len(hits) == 1 else None


def _load_legacy_h5(path: Path, layer_name: str | None) -> KerasConvLSTM:
    h5py = _require_h5py()
    with h5py.File(path, "r") as h5:
        if "model_config" not in h5.attrs:
            raise ValueError(
                f"{path} has no model_config attribute: a weights-only file? Build the "
                "module with from_keras_weights(config, weights) instead"
            )
        model = untuple(json.loads(_decode(h5.attrs["model_config"])))
        version = _decode(h5.attrs["keras_version"]) if "keras_version" in h5.attrs else None
        wrapped: list[str] = []
        found = list(_walk_model(model, "", (), wrapped))
        chosen = _select(found, wrapped, layer_name, path)
        root = h5.get("model_weights", h5)
        if version is None and "keras_version" in root.attrs:
            version = _decode(root.attrs["keras_version"])
        top = chosen.ancestors[0] if chosen.ancestors else chosen.name
        if top not in root:
            raise ValueError(f"{path}: no weight group {top!r} for layer {chosen.name!r}")
        group = root[top]
        weight_names = [_decode(n) for n in group.attrs.get("weight_names", [])]
        if chosen.ancestors:
            # A nested model's group holds every weight of every layer inside it, named
            # like "seq/layer/conv_lstm_cell/kernel": keep those of the chosen layer.
            weight_names = [n for n in weight_names if chosen.name in n.split("/")[:-1]]
        weights = [np.asarray(group[n]) for n in _order_weight_names(weight_names)]
    if version is None:
        warn_version_guess(chosen.config, f"{path} does not record the Keras version that wrote it")
    return _from_keras_weights(
        chosen.config, weights, version, CONVLSTM_CLASSES[chosen.class_name]
    )


def _load_savedmodel(path: Path, layer_name: str | None) -> KerasConvLSTM:
    from ._graph import SavedModelFolderReader

    reader = SavedModelFolderReader(path)
    layers = reader.model.get("config", {}).get("layers", [])
    entries = [
        {"name": str(e.get("name") or e.get("config", {}).get("name")), "position": i,
         "class_name": str(e.get("class_name")), "config": dict(e.get("config", {}))}
        for i, e in enumerate(layers) if isinstance(e, Mapping)
    ]  # fmt: skip
    found = [
        _Found(e["name"], e["class_name"], e["config"], "", ())
        for e in entries
        if e["class_name"] in CONVLSTM_CLASSES
    ]
    chosen = _select(found, [], layer_name, path)
    entry = next(e for e in entries if e["name"] == chosen.name)
    # Only Keras 2 writes Keras SavedModels, whatever version the metadata records.
    version = reader.keras_version or "2"
    rank = CONVLSTM_CLASSES[chosen.class_name]
    return _from_keras_weights(chosen.config, reader.weights(entry, 0), version, rank)


def _order_weight_names(names: list[str]) -> list[str]:
    """kernel, recurrent_kernel, bias, by name when the names say so, else as stored."""
    rank = {"kernel": 0, "recurrent_kernel": 1, "bias": 2}
    keys = [n.split("/")[-1].split(":")[0] for n in names]
    if len(set(keys)) == len(keys) and all(k in rank for k in keys):
        return [n for _, n in sorted(zip(keys, names), key=lambda pair: rank[pair[0]])]
    return names


def load_keras_convlstm(
    path: str | PathLike[str], layer_name: str | None = None
) -> KerasConvLSTM:
    """Load one ConvLSTM layer of a saved Keras model as a ``KerasConvLSTM``.

    Reads the file directly (``zipfile``, ``json``, ``h5py``): neither TensorFlow nor
    Keras is imported.

    Args:
        path: a Keras 3 ``.keras`` archive (``model.save("m.keras")``), a legacy
            HDF5 model file (``model.save("m.h5")``, Keras 3 or tf.keras 2), holding a
            Functional or Sequential model (ConvLSTM layers inside nested models are
            found too), or a SavedModel folder written by tf.keras 2
            (``model.save("folder")``; its top-level layers). Weights-only files carry no
            config and are not accepted.
        layer_name: the Keras name of the ConvLSTM layer to load; ``None`` takes the
            only ConvLSTM layer of the model.

    Returns:
        A ``KerasConvLSTM``: channels-first input ``(B, T, C_in, *spatial)``, output
        ``(B, T, F, *spatial')`` and states ``(1, B, F, *spatial')`` (see its docs).

    Raises:
        ValueError: no ConvLSTM layer (or none named ``layer_name``), several with
            ``layer_name=None`` (the message lists them), or an unsupported file, config
            or weight shape.
    """
    path = Path(path)
    if path.is_dir():
        return _load_savedmodel(path, layer_name)
    if not path.is_file():
        raise FileNotFoundError(f"no such file or SavedModel folder: {path}")
    if zipfile.is_zipfile(path):
        return _load_keras_v3(path, layer_name)
    if _require_h5py().is_hdf5(path):
        return _load_legacy_h5(path, layer_name)
    raise ValueError(f"{path} is neither a .keras archive nor an HDF5 (.h5) model file")


# ---------------------------------------------------------------------------- models


def load_keras_model(
    path: str | PathLike[str],
    *,
    logits: bool = False,
    channels_first: bool = True,
    keras_version: str | None = None,
) -> nn.Module:
    """Load a whole Keras model as a ``KerasGraph`` (an ``nn.Module``) with its outputs.

    Reads the file directly (``zipfile``, ``json``, ``h5py`` and, for SavedModels, the
    protobuf and checkpoint formats): neither TensorFlow nor Keras is imported.

    Args:
        path: a ``.keras`` archive (Keras 3, or tf.keras 2.13+), a legacy ``.h5`` model
            file (Keras 2 or 3) or a SavedModel folder written by Keras 2 / TF 2.x
            (``model.save(folder)``), holding a Sequential or functional model with one
            input and one output, built from the layers listed in
            ``convlstm.interop.keras_layers.LAYER_CLASSES``.
        logits: leave out the final ``sigmoid``/``softmax`` of the output layer (a Dense or
            Activation layer), so that the module returns logits.
        channels_first: take and return the library's channels-first layout
            (``(B, T, C, *S)`` for sequences, ``(B, C, *S)`` for frames) where the Keras
            model is channels-last; ``False`` keeps Keras's layout.
        keras_version: overrides the version the file records. Files that record none
            are read as Keras 3 (SavedModels: Keras 2, the only writer of Keras
            SavedModels), with a warning if that changes the result (``hard_sigmoid``).

    Returns:
        A ``convlstm.models.keras_graph.KerasGraph`` in eval mode, parameters in the
        dtypes of the Keras layers (a float64 model stays float64).

    Raises:
        ValueError: a layer that cannot be imported (naming its class, name and
            position), several inputs or outputs, or a damaged file.
    """
    from ..models.keras_graph import KerasGraph
    from ._graph import SavedModelFolderReader, graph_options, open_model_file

    path = Path(path)
    reader = open_model_file(path)
    version = keras_version or reader.keras_version
    if version is None:
        if isinstance(reader, SavedModelFolderReader):
            version = "2"
        else:
            warn_version_guess(reader.model, f"{path} does not record the Keras version")
    options, weights = graph_options(
        reader, keras_version=version, logits=logits, channels_first=channels_first
    )
    model = KerasGraph(**options, source=str(path))
    for name, arrays in weights.items():
        model.layer(name).set_keras_weights(arrays)
    return model.eval()


def import_keras_run(
    path: str | PathLike[str],
    output_dir: str | PathLike[str],
    *,
    classes: Sequence[str] | None = None,
    preprocessing: Any = None,
    keras_version: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a run folder for a Keras classifier, as ``convlstm train`` writes one.

    The folder holds ``model.safetensors`` and ``model.json`` (the ``keras-graph`` model:
    the Keras layer configs and graph as plain options) and ``config.yaml`` (task
    ``classification``, ``data: {name: none}``), so that ``convlstm predict``,
    ``export`` and ``evaluate --data other.yaml`` work on it as on a trained run.

    Output convention: the run folder's model returns logits and ``model.json``'s output
    transform (``sigmoid`` for one output, ``softmax`` for several) turns them into
    probabilities, once. A Keras model ending in a ``sigmoid``/``softmax`` (a Dense or
    Activation layer) is imported without it; one ending without an activation is taken
    to output logits already, with a warning.

    Args:
        path: a Keras model file or SavedModel folder (see ``load_keras_model``) whose
            input is a sequence of frames ``(T, *S, C)`` of fixed size and whose output is
            ``(K,)`` class scores.
        output_dir: the run folder to write (created; must be empty unless ``overwrite``).
        classes: class names (``K`` of them, 2 for one sigmoid output); default none.
        preprocessing: a ``convlstm.data.Preprocessing`` describing the input the Keras
            model expects (reader, 8-bit scaling, normalisation, time stacking); default
            the identity on float frames.
        keras_version: overrides the version the file records (see ``load_keras_model``).
        overwrite: replace the model files of an existing run folder.

    Returns:
        The run folder's path.
    """
    from ..data.preprocessing import Preprocessing
    from ..training.config import DataConfig, ModelConfig, RunConfig, dump_config
    from ..training.run import package_versions
    from ..training.run_folder import CONFIG_FILE, ModelSpec, save_model

    path, run_dir = Path(path), Path(output_dir)
    if run_dir.exists() and (not run_dir.is_dir() or (any(run_dir.iterdir()) and not overwrite)):
        raise FileExistsError(
            f"{run_dir} already exists and is not an empty folder; pass overwrite=True "
            "(--overwrite) to replace its model files"
        )
    probe = load_keras_model(path, keras_version=keras_version)
    final = _final_activation(probe)
    model = load_keras_model(path, keras_version=keras_version, logits=final is not None)
    shape = model.input_shape
    if model.input_permutation is None or shape is None or len(shape) < 4:
        raise ValueError(
            f"{path}: a run folder needs a channels-last sequence input (T, *S, C) "
            f"with 1 to 3 spatial axes; the Keras input is {shape}"
        )
    frames, *size, channels = shape[1:]
    missing = [n for n, v in (("frames", frames), ("channels", channels)) if v is None]
    if missing or any(s is None for s in size):
        raise ValueError(
            f"{path}: the Keras input shape {shape} leaves {missing or 'the frame size'} "
            "free; a run folder records one input size"
        )
    ours = [frames, channels, *size]
    with torch.no_grad():
        out = model(torch.zeros(1, *ours, dtype=model.input_dtype))
    if out.dim() != 2:
        raise ValueError(
            f"{path}: the model's output has shape {tuple(out.shape)}; a classification "
            "run needs (B, K) class scores"
        )
    k = int(out.shape[1])
    if final == "sigmoid" and k != 1:
        raise ValueError(f"{path}: {k} sigmoid outputs (multi-label) have no run-folder "
                         "transform; only one sigmoid or a softmax output")  # fmt: skip
    if final == "softmax" and k == 1:
        raise ValueError(f"{path}: a softmax over one output is constant")
    if final is None:
        warnings.warn(
            f"{path}: the output layer has no sigmoid/softmax; its outputs are taken as "
            f"logits ({'sigmoid' if k == 1 else 'softmax'} gives the probabilities)",
            ConvLSTMWarning,
            stacklevel=2,
        )
    if classes is not None and len(classes) != max(k, 2):
        raise ValueError(
            f"classes: expected {max(k, 2)} names for {k} outputs, got {list(classes)}"
        )
    options = model.options
    spec = ModelSpec(
        task="classification", name="keras-graph", options=options,
        frames=int(frames), channels=int(channels), size=[int(s) for s in size],
        any_size=False, transform="sigmoid" if k == 1 else "softmax",
        classes=None if classes is None else [str(c) for c in classes],
        preprocessing=preprocessing if preprocessing is not None else Preprocessing(),
    )  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, run_dir, spec)
    config = RunConfig(
        task="classification", model=ModelConfig(name="keras-graph", options=options),
        data=DataConfig(name="none"),
    )  # fmt: skip
    dump_config(config, run_dir / CONFIG_FILE, extra={"versions": package_versions()})
    return run_dir


def _final_activation(model: nn.Module) -> str | None:
    """``"sigmoid"``/``"softmax"`` when the output layer ends in one, else None."""
    index, _ = model.output
    key = model.nodes[index][0]
    layer = model.layers[key]
    entry = next(e for e in model.options["layers"] if e["name"] == layer.keras_name)
    if entry["class_name"] not in ("Dense", "Activation"):
        return None
    value = entry["config"].get("activation")
    name = value.get("config") if isinstance(value, Mapping) else value
    return name.lower() if isinstance(name, str) and name.lower() in ("sigmoid", "softmax") \
        else None  # fmt: skip

