"""KerasGraph: a whole Keras model (Sequential or functional) rebuilt from plain JSON.

``convlstm.interop.keras.load_keras_model`` reads a Keras file into one; a run folder
stores its options (the Keras layer configs, the shapes of their weights and the graph)
in ``model.json`` and its weights in ``model.safetensors``, so that
``create_model("keras-graph", **options)`` rebuilds it without Keras or the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..interop.keras_layers import KerasLayer, build_layer
from .registry import register_model

__all__ = ["KerasGraph"]

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
           "float64": torch.float64}  # fmt: skip


def _key(name: str, used: set[str]) -> str:
    """A module name for a Keras layer name (no dots; unique)."""
    key = re.sub(r"\W", "_", name) or "layer"
    base, n = key, 1
    while key in used:
        n += 1
        key = f"{base}_{n}"
    used.add(key)
    return key


def _permutation(value: Any, what: str) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or sorted(value) != list(range(len(value))):
        raise ValueError(f"keras-graph option {what} must be a permutation list, got {value!r}")
    return list(value)


@register_model("keras-graph")
class KerasGraph(nn.Module):
    """A Keras model's layers and graph, computing what Keras computes.

    Args:
        layers: one entry per Keras layer (``InputLayer`` excluded):
            ``{"name", "class_name", "config", "weights": [shape, ...], "position"}``,
            the Keras config as saved and the shapes of ``layer.get_weights()``.
        nodes: the layer calls in an order where inputs come first:
            ``{"layer": name, "inputs": [[node, tensor], ...]}``; node ``-1`` is the
            model input, ``tensor`` indexes a call's outputs.
        output: ``[node, tensor]`` of the model's output.
        input_dtype: the Keras input's dtype; inputs are cast to it.
        input_shape: the Keras input shape (batch first, ``None`` where free).
        input_permutation, output_permutation: applied to the input before the first
            layer and to the output after the last, turning the library's channels-first
            layout (``(B, T, C, *S)`` for sequences) into Keras's channels-last and back;
            ``None`` keeps Keras's layout.
        keras_version: the Keras version that wrote the model (``hard_sigmoid`` differs).
        logits: leave out the output layer's final ``sigmoid``/``softmax``.
        source: where the model was imported from (kept for the record only).
    """

    def __init__(
        self,
        layers: Sequence[dict[str, Any]],
        nodes: Sequence[dict[str, Any]],
        output: Sequence[int],
        *,
        input_dtype: str = "float32",
        input_shape: Sequence[int | None] | None = None,
        input_permutation: list[int] | None = None,
        output_permutation: list[int] | None = None,
        keras_version: str | None = None,
        logits: bool = False,
        source: str | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        # The options as given, so that a run folder can store them (see ``options``).
        self._options = json.loads(json.dumps({
            "layers": list(layers), "nodes": list(nodes), "output": list(output),
            "input_dtype": input_dtype, "input_shape": input_shape,
            "input_permutation": input_permutation, "output_permutation": output_permutation,
            "keras_version": keras_version, "logits": logits, "source": source,
        }))  # fmt: skip
        if input_dtype not in _DTYPES:
            raise ValueError(f"keras-graph option input_dtype must be one of {sorted(_DTYPES)}, "
                             f"got {input_dtype!r}")  # fmt: skip
        self.input_dtype = _DTYPES[input_dtype]
        self.input_shape = None if input_shape is None else list(input_shape)
        self.input_permutation = _permutation(input_permutation, "input_permutation")
        self.output_permutation = _permutation(output_permutation, "output_permutation")
        self.keras_version = keras_version
        self.logits = bool(logits)
        if not nodes:
            raise ValueError("keras-graph option nodes is empty: the model computes nothing")
        out_node = int(output[0])
        output_layer = nodes[out_node]["layer"] if 0 <= out_node < len(nodes) else None
        self.layers = nn.ModuleDict()
        self._keys: dict[str, str] = {}
        used: set[str] = set()
        for index, entry in enumerate(layers):
            name, class_name = str(entry["name"]), str(entry["class_name"])
            position = entry.get("position", index)
            where = f"layer {position} {name!r} ({class_name})"
            module = build_layer(
                class_name, entry["config"], entry.get("weights", []), where, keras_version,
                logits=self.logits and name == output_layer,
            )  # fmt: skip
            key = _key(name, used)
            self._keys[name] = key
            self.layers[key] = module
        self.nodes: list[tuple[str, list[tuple[int, int]]]] = []
        for index, node in enumerate(nodes):
            name = str(node["layer"])
            if name not in self._keys:
                raise ValueError(f"keras-graph node {index} calls unknown layer {name!r}")
            inputs = [(int(n), int(t)) for n, t in node["inputs"]]
            if any(not -1 <= n < index for n, _ in inputs):
                raise ValueError(f"keras-graph node {index} ({name}) takes a later node's output")
            self.nodes.append((self._keys[name], inputs))
        if not 0 <= out_node < len(self.nodes):
            raise ValueError(f"keras-graph output {list(output)} names no node")
        self.output = (out_node, int(output[1]))

    @property
    def options(self) -> dict[str, Any]:
        """Plain JSON options that rebuild this module: ``create_model("keras-graph", **o)``."""
        return json.loads(json.dumps(self._options))

    def layer(self, name: str) -> KerasLayer:
        """The module of the Keras layer called ``name``."""
        return self.layers[self._keys[name]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_permutation is not None:
            if x.dim() != len(self.input_permutation):
                raise ValueError(
                    f"expected an input of {len(self.input_permutation)} dims "
                    f"(Keras input {self.input_shape} in channels-first order), "
                    f"got shape {tuple(x.shape)}"
                )
            x = x.permute(self.input_permutation)
        if x.is_floating_point():
            x = x.to(self.input_dtype)
        values: list[tuple[torch.Tensor, ...]] = []
        for key, inputs in self.nodes:
            args = [x if n == -1 else values[n][t] for n, t in inputs]
            values.append(self.layers[key](*args))
        node, tensor = self.output
        y = values[node][tensor]
        if self.output_permutation is not None:
            y = y.permute(self.output_permutation)
        return y
