"""PyTorch modules that compute what Keras layers compute, in Keras's tensor layout.

Each module is built from a Keras layer's config and the shapes of its weights (so that
it can be rebuilt from JSON without the weights), takes and returns tensors laid out as
Keras lays them out (channels-last unless the layer's ``data_format`` says otherwise),
and takes its weights with ``set_keras_weights(arrays)`` in ``layer.get_weights()`` order.
Every module returns a tuple of tensors (most layers: one).

Keras semantics reproduced: TensorFlow's "same" padding (odd totals padded at the end),
average pooling over the valid elements only, the ``tf.nn.batch_normalization``
formula, ``Bidirectional``'s time-aligned backward outputs, ``Flatten`` of
channels-first data in channels-last order, and each layer's dtype (its inputs are cast
to it, as Keras autocasts them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nn.activations import ACTIVATIONS
from .keras import (
    CONVLSTM_CLASSES,
    KERAS_ACTIVATIONS,
    KerasConvLSTM,
    build_convlstm,
    keras_dtype,
    major_version,
)

__all__ = [
    "LAYER_CLASSES",
    "KerasLayer",
    "build_layer",
    "layer_activation",
    "weight_paths",
]

# Layers that compute nothing at inference.
IDENTITY_CLASSES = (
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization",
)  # fmt: skip
CONV_CLASSES = {"Conv1D": 1, "Conv2D": 2, "Conv3D": 3}
POOL_CLASSES = {
    f"{kind}Pooling{rank}D": (kind, rank)
    for kind in ("Max", "Average")
    for rank in (1, 2, 3)
}
GLOBAL_POOL_CLASSES = {
    f"Global{kind}Pooling{rank}D": (kind, rank)
    for kind in ("Max", "Average")
    for rank in (1, 2, 3)
}
#: Every Keras layer class ``load_keras_model`` imports (``InputLayer`` is the graph input).
LAYER_CLASSES = (
    "InputLayer", *CONVLSTM_CLASSES, "Bidirectional", "TimeDistributed", *CONV_CLASSES,
    *POOL_CLASSES, *GLOBAL_POOL_CLASSES, "BatchNormalization", "Dense", "Flatten", "Activation",
    "Reshape", *IDENTITY_CLASSES,
)  # fmt: skip


class LayerError(ValueError):
    """A Keras layer that cannot be imported (the message names it)."""


def _inner(config: Mapping[str, Any], key: str, where: str) -> tuple[str, dict[str, Any]]:
    inner = config.get(key)
    if not isinstance(inner, Mapping) or not isinstance(inner.get("config"), Mapping):
        raise LayerError(f"{where}: config key {key!r} must hold a serialised layer, got {inner!r}")
    return str(inner.get("class_name")), dict(inner["config"])


def weight_paths(class_name: str, config: Mapping[str, Any], where: str) -> list[tuple[str, ...]]:
    """The names of a layer's weights in ``get_weights()`` order, as paths of attribute
    names (``("cell", "kernel")``): how SavedModels and HDF5 files name them."""
    if class_name in CONVLSTM_CLASSES:
        names = ["kernel", "recurrent_kernel"] + (["bias"] if config.get("use_bias", True) else [])
        return [("cell", n) for n in names]
    if class_name in CONV_CLASSES or class_name == "Dense":
        return [("kernel",)] + ([("bias",)] if config.get("use_bias", True) else [])
    if class_name == "BatchNormalization":
        names = (["gamma"] if config.get("scale", True) else []) + (
            ["beta"] if config.get("center", True) else []
        )
        return [(n,) for n in (*names, "moving_mean", "moving_variance")]
    if class_name == "TimeDistributed":
        inner_class, inner = _inner(config, "layer", where)
        return [("layer", *p) for p in weight_paths(inner_class, inner, where)]
    if class_name == "Bidirectional":
        forward_class, forward = _inner(config, "layer", where)
        paths = weight_paths(forward_class, forward, where)
        return [("forward_layer", *p) for p in paths] + [("backward_layer", *p) for p in paths]
    return []


def layer_activation(
    value: Any, key: str, where: str, keras_version: str | None, logits: bool = False
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function a layer's ``activation`` names (softmax included, over the last axis).

    With ``logits`` a final ``sigmoid``/``softmax`` is left out (see ``KerasGraph``).
    """
    name = value.get("config") if isinstance(value, Mapping) else value
    name = "linear" if name is None else name
    if not isinstance(name, str):
        raise LayerError(f"{where}: {key} must name an activation, got {value!r}")
    name = name.lower()
    if logits:
        if name not in ("sigmoid", "softmax"):
            raise LayerError(
                f"{where}: asked for logits, but the output's activation is {name!r}, "
                "not sigmoid or softmax"
            )
        return ACTIVATIONS["linear"]
    if name == "softmax":
        return _softmax
    if name == "hard_sigmoid" and major_version(keras_version) == 2:
        return ACTIVATIONS["hard_sigmoid_keras2"]
    if name in KERAS_ACTIVATIONS:
        return KERAS_ACTIVATIONS[name]
    raise LayerError(
        f"{where}: unsupported {key} {name!r}; expected one of "
        f"{sorted({*KERAS_ACTIVATIONS, 'softmax'})}"
    )


def _softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


def _ints(config: Mapping[str, Any], key: str, rank: int, where: str, default: Any = None):
    value = config.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value] * rank
    if (
        not isinstance(value, (list, tuple))
        or len(value) != rank
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise LayerError(f"{where}: config key {key!r} must be {rank} positive ints, got {value!r}")
    return tuple(value)


def _choice(config: Mapping[str, Any], key: str, choices: Sequence[str], where: str, default):
    value = config.get(key, default)
    value = value.lower() if isinstance(value, str) else value
    if value not in choices:
        raise LayerError(
            f"{where}: config key {key!r} must be one of {list(choices)}, got {value!r}"
        )
    return value


def _shape(shapes: Sequence[Sequence[int]], index: int, where: str, what: str) -> list[int]:
    if index >= len(shapes):
        raise LayerError(f"{where}: expected a weight {what!r}, the layer has {len(shapes)}")
    return [int(s) for s in shapes[index]]


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's "same" padding: the output has ceil(size / stride) steps and the odd
    one of the total padding goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _pad_spec(
    x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> list[int]:
    """``F.pad`` amounts (last dim first) for "same" over the trailing ``len(kernel)`` dims."""
    pads: list[int] = []
    sizes = x.shape[-len(kernel) :]
    for size, k, s, d in reversed(list(zip(sizes, kernel, stride, dilation))):
        pads.extend(_same_padding(int(size), k, s, d))
    return pads


class KerasLayer(nn.Module):
    """Base: ``forward(*inputs) -> tuple`` in Keras layout; ``set_keras_weights(arrays)``."""

    def __init__(self, class_name: str, name: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.class_name, self.keras_name, self.dtype = class_name, name, dtype

    def extra_repr(self) -> str:
        return f"{self.class_name} {self.keras_name!r}"

    def cast(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.dtype) if x.is_floating_point() and x.dtype != self.dtype else x

    def set_keras_weights(self, arrays: Sequence[np.ndarray]) -> None:
        if arrays:
            raise LayerError(f"layer {self.keras_name!r} ({self.class_name}) has no weights")

    def _copy(self, target: torch.Tensor, array: np.ndarray, what: str) -> None:
        array = np.asarray(array)
        if tuple(array.shape) != tuple(target.shape):
            raise LayerError(
                f"layer {self.keras_name!r} ({self.class_name}): weight {what!r} has shape "
                f"{tuple(array.shape)}, expected {tuple(target.shape)}"
            )
        with torch.no_grad():
            target.copy_(torch.from_numpy(np.ascontiguousarray(array)).to(target.dtype))


class Identity(KerasLayer):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (x,)


class Activation(KerasLayer):
    def __init__(self, class_name, name, dtype, activation) -> None:
        super().__init__(class_name, name, dtype)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.activation(self.cast(x)),)


class ConvLSTM(KerasLayer):
    """ConvLSTM1D/2D/3D: outputs ``[output]`` or, with ``return_state``, ``[output, h, c]``."""

    def __init__(self, class_name, name, dtype, module: KerasConvLSTM, config) -> None:
        super().__init__(class_name, name, dtype)
        self.convlstm = module
        self.rank = CONVLSTM_CLASSES[class_name]
        self.channels_last = config.get("data_format") in (None, "channels_last")
        self.return_sequences = bool(config.get("return_sequences", False))
        self.return_state = bool(config.get("return_state", False))

    def _out(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        return x.movedim(axis, -1) if self.channels_last else x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.cast(x)
        if self.channels_last:
            x = x.movedim(-1, 2)
        out, (h, c) = self.convlstm(x)
        # KerasConvLSTM returns outputs in processing order, so the last one is h_n.
        output = self._out(out, 2) if self.return_sequences else self._out(out[:, -1], 1)
        if not self.return_state:
            return (output,)
        return output, self._out(h[0], 1), self._out(c[0], 1)

    def set_keras_weights(self, arrays: Sequence[np.ndarray]) -> None:
        names = ["kernel", "recurrent_kernel", "bias"][: len(arrays)]
        cell = self.convlstm.cell
        targets = [cell.weight_ih, cell.weight_hh] + ([cell.bias] if cell.bias is not None else [])
        if len(arrays) != len(targets):
            raise LayerError(
                f"layer {self.keras_name!r} ({self.class_name}): {len(arrays)} weights, "
                f"expected {len(targets)}"
            )
        order = (self.rank + 1, self.rank, *range(self.rank))
        for target, array, what in zip(targets, arrays, names):
            array = np.asarray(array)
            self._copy(target, array.transpose(order) if array.ndim > 1 else array, what)


class Bidirectional(KerasLayer):
    """Keras's Bidirectional(ConvLSTM): the backward outputs are flipped back into input
    time order (with ``return_sequences``) and merged; states follow, forward first."""

    def __init__(self, class_name, name, dtype, forward, backward, merge_mode) -> None:
        super().__init__(class_name, name, dtype)
        self.forward_layer, self.backward_layer = forward, backward
        self.merge_mode = merge_mode

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y, *states_f = self.forward_layer(x)
        y_rev, *states_b = self.backward_layer(x)
        if self.forward_layer.return_sequences:
            y_rev = y_rev.flip(1)
        if self.merge_mode == "concat":
            merged: tuple[torch.Tensor, ...] = (torch.cat([y, y_rev], dim=-1),)
        elif self.merge_mode == "sum":
            merged = (y + y_rev,)
        elif self.merge_mode == "mul":
            merged = (y * y_rev,)
        elif self.merge_mode == "ave":
            merged = ((y + y_rev) / 2,)
        else:
            merged = (y, y_rev)
        return (*merged, *states_f, *states_b)

    def set_keras_weights(self, arrays: Sequence[np.ndarray]) -> None:
        half = len(arrays) // 2
        self.forward_layer.set_keras_weights(arrays[:half])
        self.backward_layer.set_keras_weights(arrays[half:])


class TimeDistributed(KerasLayer):
    def __init__(self, class_name, name, dtype, inner: KerasLayer) -> None:
        super().__init__(class_name, name, dtype)
        self.layer = inner

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        batch, steps = x.shape[:2]
        (y,) = self.layer(x.reshape(batch * steps, *x.shape[2:]))
        return (y.reshape(batch, steps, *y.shape[1:]),)

    def set_keras_weights(self, arrays: Sequence[np.ndarray]) -> None:
        self.layer.set_keras_weights(arrays)


class Conv(KerasLayer):
    def __init__(self, class_name, name, dtype, config, shapes, where, keras_version) -> None:
        super().__init__(class_name, name, dtype)
        rank = self.rank = CONV_CLASSES[class_name]
        kernel_shape = _shape(shapes, 0, where, "kernel")
        self.kernel_size = _ints(config, "kernel_size", rank, where)
        self.strides = _ints(config, "strides", rank, where, 1)
        self.dilation = _ints(config, "dilation_rate", rank, where, 1)
        self.groups = int(config.get("groups", 1) or 1)
        self.padding = _choice(config, "padding", ("valid", "same", "causal"), where, "valid")
        if self.padding == "causal" and rank != 1:
            raise LayerError(f"{where}: padding 'causal' exists for Conv1D only")
        self.channels_last = config.get("data_format") in (None, "channels_last")
        if len(kernel_shape) != rank + 2 or tuple(kernel_shape[:rank]) != self.kernel_size:
            raise LayerError(
                f"{where}: kernel shape {kernel_shape} does not match kernel_size "
                f"{list(self.kernel_size)} + (C_in / groups, filters)"
            )
        filters = kernel_shape[-1]
        self.weight = nn.Parameter(
            torch.empty(filters, kernel_shape[-2], *self.kernel_size, dtype=dtype)
        )
        self.bias = (
            nn.Parameter(torch.empty(filters, dtype=dtype))
            if config.get("use_bias", True)
            else None
        )
        self.activation = layer_activation(config.get("activation"), "activation", where,
                                           keras_version)  # fmt: skip
        self._conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = self.cast(x)
        if self.channels_last:
            x = x.movedim(-1, 1)
        if self.padding == "same":
            x = F.pad(x, _pad_spec(x, self.kernel_size, self.strides, self.dilation))
        elif self.padding == "causal":
            x = F.pad(x, [(self.kernel_size[0] - 1) * self.dilation[0], 0])
        y = self._conv(x, self.weight, self.bias, self.strides, 0, self.dilation, self.groups)
        y = self.activation(y)
        return (y.movedim(1, -1) if self.channels_last else y,)

    def set_keras_weights(self, arrays: Sequence[np.ndarray]) -> None:
        order = (self.rank + 1, self.rank, *range(self.rank))
        self._copy(self.weight, np.asarray(arrays[0]).transpose(order), "kernel")
        if self.bias is not None:
            self._copy(self.bias, arrays[1], "bias")


class Pool(KerasLayer):
    def __init__(self, class_name, name, dtype, config, where) -> None:
        super().__init__(class_name, name, dtype)
        kind, rank = POOL_CLASSES[class_name]
        self.kind, self.rank = kind, rank
        self.pool_size = _ints(config, "pool_size", rank, where)
        strides = config.get("strides")
        self.strides = self.pool_size if strides is None else _ints(config, "strides", rank, where)
        self.padding = _choice(config, "padding", ("valid", "same"), where, "valid")
        self.channels_last = config.get("data_format") in (None, "channels_last")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = self.cast(x)
        if self.channels_last:
            x = x.movedim(-1, 1)
        rank = self.rank
        pool = {
            "Max": (F.max_pool1d, F.max_pool2d, F.max_pool3d),
            "Average": (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d),
        }[self.kind][rank - 1]
        if self.padding == "valid":
            y = pool(x, self.pool_size, self.strides)
        else:
            pads = _pad_spec(x, self.pool_size, self.strides, (1,) * rank)
            if self.kind == "Max":
                y = pool(F.pad(x, pads, value=-math.inf), self.pool_size, self.strides)
            else:
                # TensorFlow averages over the window's elements inside the input only.
                ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
                total = pool(F.pad(x, pads), self.pool_size, self.strides)
                count = pool(F.pad(ones, pads), self.pool_size, self.strides)
                y = total / count
        return (y.movedim(1, -1) if self.channels_last else y,)


class GlobalPool(KerasLayer):
    def __init__(self, class_name, name, dtype, config) -> None:
        super().__init__(class_name, name, dtype)
        self.kind, self.rank = GLOBAL_POOL_CLASSES[class_name]
        self.channels_last = config.get("data_format") in (None, "channels_last")
        self.keepdims = bool(config.get("keepdims", False))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = self.cast(x)
        first = 1 if self.channels_last else 2
        dims = tuple(range(first, first + self.rank))
        if self.kind == "Max":
            return (x.amax(dim=dims, keepdim=self.keepdims),)
        return (x.mean(dim=dims, keepdim=self.keepdims),)


class BatchNorm(KerasLayer):
    """Inference batch norm as ``tf.nn.batch_normalization`` computes it."""

    def __init__(self, class_name, name, dtype, config, shapes, where) -> None:
        super().__init__(class_name, name, dtype)
        axis = config.get("axis", -1)
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if len(axes) != 1 or not isinstance(axes[0], int):
            raise LayerError(f"{where}: config key 'axis' must be one int axis, got {axis!r}")
        self.axis = int(axes[0])
        self.epsilon = float(config.get("epsilon", 1e-3))
        self.center, self.scale = bool(config.get("center", True)), bool(config.get("scale", True))
        size = _shape(shapes, len(shapes) - 1, where, "moving_variance")
        self.gamma = nn.Parameter(torch.empty(size, dtype=dtype)) if self.scale else None
        self.beta = nn.Parameter(torch.empty(size, dtype=dtype)) if self.center else None
        self.register_buffer("moving_mean", torch.empty(size, dtype=dtype))
        self.register_buffer("moving_variance", torch.empty(size, dtype=dtype))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = self.cast(x)
        axis = self.axis % x.dim()
        shape = [1] * x.dim()
        shape[axis] = -1
        inv = torch.rsqrt(self.moving_variance + self.epsilon)
        if self.gamma is not None:
            inv = inv * self.gamma
        shift = -self.moving_mean * inv
        if self.beta is not None:
            shift = shift + self.beta
        return (x * inv.view(shape) + shift.view(shape),)

    def set_keras_weights(self, arrays: Sequence[np.ndarray]) -> None:
        targets = [("gamma", self.gamma), ("beta", self.beta)]
        targets = [(n, t) for n, t in targets if t is not None]
        targets += [("moving_mean", self.moving_mean), ("moving_variance", self.moving_variance)]
        if len(arrays) != len(targets):
            raise LayerError(
                f"layer {self.keras_name!r} (BatchNormalization): {len(arrays)} weights, "
                f"expected {len(targets)} ({', '.join(n for n, _ in targets)})"
            )
        for (what, target), array in zip(targets, arrays):
            self._copy(target, array, what)


class Dense(KerasLayer):
    def __init__(self, class_name, name, dtype, config, shapes, where, keras_version,
                 logits=False) -> None:  # fmt: skip
        super().__init__(class_name, name, dtype)
        kernel = _shape(shapes, 0, where, "kernel")
        if len(kernel) != 2:
            raise LayerError(f"{where}: kernel must be (inputs, units), got shape {kernel}")
        self.kernel = nn.Parameter(torch.empty(*kernel, dtype=dtype))
        self.bias = (
            nn.Parameter(torch.empty(kernel[1], dtype=dtype))
            if config.get("use_bias", True)
            else None
        )
        self.activation = layer_activation(
            config.get("activation"), "activation", where, keras_version, logits
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        y = torch.matmul(self.cast(x), self.kernel)
        if self.bias is not None:
            y = y + self.bias
        return (self.activation(y),)

    def set_keras_weights(self, arrays: Sequence[np.ndarray]) -> None:
        self._copy(self.kernel, arrays[0], "kernel")
        if self.bias is not None:
            self._copy(self.bias, arrays[1], "bias")


class Flatten(KerasLayer):
    def __init__(self, class_name, name, dtype, config) -> None:
        super().__init__(class_name, name, dtype)
        self.channels_first = config.get("data_format") == "channels_first"

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        if self.channels_first and x.dim() > 2:
            x = x.movedim(1, -1)
        return (x.reshape(x.shape[0], -1),)


class Reshape(KerasLayer):
    def __init__(self, class_name, name, dtype, config, where) -> None:
        super().__init__(class_name, name, dtype)
        target = config.get("target_shape")
        if not isinstance(target, (list, tuple)) or not all(
            isinstance(v, int) and (v >= 1 or v == -1) for v in target
        ):
            raise LayerError(f"{where}: config key 'target_shape' must be ints, got {target!r}")
        self.target_shape = [int(v) for v in target]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (x.reshape(x.shape[0], *self.target_shape),)


def build_layer(
    class_name: str,
    config: Mapping[str, Any],
    shapes: Sequence[Sequence[int]],
    where: str,
    keras_version: str | None,
    *,
    logits: bool = False,
) -> KerasLayer:
    """The module for one Keras layer (``where`` names it in errors: class, name, position).

    ``shapes`` are its weights' shapes in ``get_weights()`` order; the module's parameters
    are allocated (uninitialised) with them, in the layer's dtype.
    """
    name = str(config.get("name", class_name))
    dtype = keras_dtype(config.get("dtype"), where)
    if logits and class_name not in ("Dense", "Activation"):
        raise LayerError(
            f"{where}: asked for logits, but the output layer is a {class_name}, not a Dense "
            "or Activation layer with a sigmoid or softmax"
        )
    if class_name in IDENTITY_CLASSES:
        return Identity(class_name, name, dtype)
    if class_name == "Activation":
        activation = layer_activation(config.get("activation"), "activation", where,
                                      keras_version, logits)  # fmt: skip
        return Activation(class_name, name, dtype, activation)
    if class_name in CONVLSTM_CLASSES:
        module = build_convlstm(config, shapes, keras_version, CONVLSTM_CLASSES[class_name], where)
        return ConvLSTM(class_name, name, dtype, module, config)
    if class_name == "Bidirectional":
        inner_class, inner = _inner(config, "layer", where)
        if inner_class not in CONVLSTM_CLASSES:
            raise LayerError(f"{where}: Bidirectional({inner_class}) is not supported, only "
                             "Bidirectional(ConvLSTM1D/2D/3D)")  # fmt: skip
        if "backward_layer" in config and config["backward_layer"] is not None:
            backward_class, backward = _inner(config, "backward_layer", where)
        else:  # Keras then builds the backward layer as a copy running the other way
            backward_class = inner_class
            backward = {**inner, "go_backwards": not inner.get("go_backwards", False)}
        if inner.get("return_state") or backward.get("return_state"):
            raise LayerError(f"{where}: Bidirectional with return_state is not supported")
        half = len(shapes) // 2
        forward = build_layer(inner_class, inner, shapes[:half], f"{where} forward", keras_version)
        backward_layer = build_layer(backward_class, backward, shapes[half:], f"{where} backward",
                                     keras_version)  # fmt: skip
        merge_mode = config.get("merge_mode", "concat")
        if merge_mode not in ("concat", "sum", "mul", "ave", None):
            raise LayerError(f"{where}: unsupported merge_mode {merge_mode!r}")
        return Bidirectional(class_name, name, dtype, forward, backward_layer, merge_mode)
    if class_name == "TimeDistributed":
        inner_class, inner = _inner(config, "layer", where)
        if inner_class in CONVLSTM_CLASSES or inner_class in ("Bidirectional", "InputLayer"):
            raise LayerError(f"{where}: TimeDistributed({inner_class}) is not supported")
        inner_layer = build_layer(inner_class, inner, shapes, f"{where} > {inner_class}",
                                  keras_version)  # fmt: skip
        return TimeDistributed(class_name, name, dtype, inner_layer)
    if class_name in CONV_CLASSES:
        return Conv(class_name, name, dtype, config, shapes, where, keras_version)
    if class_name in POOL_CLASSES:
        return Pool(class_name, name, dtype, config, where)
    if class_name in GLOBAL_POOL_CLASSES:
        return GlobalPool(class_name, name, dtype, config)
    if class_name == "BatchNormalization":
        return BatchNorm(class_name, name, dtype, config, shapes, where)
    if class_name == "Dense":
        return Dense(class_name, name, dtype, config, shapes, where, keras_version, logits)
    if class_name == "Flatten":
        return Flatten(class_name, name, dtype, config)
    if class_name == "Reshape":
        return Reshape(class_name, name, dtype, config, where)
    supported = ", ".join(c for c in LAYER_CLASSES if c != "InputLayer")
    raise LayerError(
        f"{where}: layer class {class_name!r} is not supported; supported: {supported}"
    )
