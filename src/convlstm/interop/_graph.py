"""Whole Keras models: read a file's config and weights, and turn the graph into the
plain options of ``convlstm.models.keras_graph.KerasGraph``.

Readers (no TensorFlow, no Keras): ``.keras`` archives (Keras 3, and tf.keras 2.13+),
legacy ``.h5`` files (Keras 2 and 3) and SavedModel folders (Keras 2 / TF 2.x). Each
gives the model config, the Keras version it records (or None) and, per layer, its
weights in ``layer.get_weights()`` order, found by the names the format gives them.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._savedmodel import SavedModelError, SavedModelReader
from .keras import CONVLSTM_CLASSES, _decode, _require_h5py, _to_snake_case, untuple
from .keras_layers import (
    GLOBAL_POOL_CLASSES,
    LAYER_CLASSES,
    LayerError,
    weight_paths,
)

MODEL_CLASSES = ("Sequential", "Functional", "Model")


class KerasModelError(ValueError):
    """A Keras model file or graph that cannot be imported (the message names why)."""


# ------------------------------------------------------------------------------ layers


def layer_entries(model: Mapping[str, Any], source: str) -> list[dict[str, Any]]:
    """``[{name, class_name, config, position, entry}]`` of a model config's layers
    (``InputLayer`` included), each checked to be importable."""
    if not isinstance(model, Mapping) or model.get("class_name") not in MODEL_CLASSES:
        given = model.get("class_name") if isinstance(model, Mapping) else type(model).__name__
        raise KerasModelError(
            f"{source}: expected a Sequential or functional Keras model, got {given!r}"
        )
    config = model.get("config")
    layers = config.get("layers") if isinstance(config, Mapping) else None
    if not isinstance(layers, list) or not layers:
        raise KerasModelError(f"{source}: the model config lists no layers")
    out = []
    for position, entry in enumerate(layers):
        class_name = str(entry.get("class_name"))
        layer_config = entry.get("config") if isinstance(entry.get("config"), Mapping) else {}
        name = str(entry.get("name") or layer_config.get("name") or f"{class_name}_{position}")
        where = f"{source}: layer {position} {name!r} ({class_name})"
        if class_name in MODEL_CLASSES:
            raise KerasModelError(
                f"{where} is a nested model, which load_keras_model does not import; "
                "build the model flat, or load its ConvLSTM layers with load_keras_convlstm"
            )
        _check_class(class_name, layer_config, where)
        out.append({"name": name, "class_name": class_name, "config": dict(layer_config),
                    "position": position, "entry": entry})  # fmt: skip
    return out


def _check_class(class_name: str, config: Mapping[str, Any], where: str) -> None:
    if class_name not in LAYER_CLASSES:
        supported = ", ".join(c for c in LAYER_CLASSES if c != "InputLayer")
        raise KerasModelError(
            f"{where}: layer class {class_name!r} is not supported; supported: {supported}"
        )
    for key in ("layer", "backward_layer"):
        inner = config.get(key)
        if class_name in ("TimeDistributed", "Bidirectional") and isinstance(inner, Mapping):
            inner_config = inner.get("config") if isinstance(inner.get("config"), Mapping) else {}
            _check_class(str(inner.get("class_name")), inner_config,
                         f"{where} > {inner.get('class_name')}")  # fmt: skip


# ------------------------------------------------------------------------------ readers


class _Reader:
    source: str
    model: dict[str, Any]
    keras_version: str | None

    def weights(self, layer: dict[str, Any], index: int) -> list[np.ndarray]:
        raise NotImplementedError


def _leaf(name: str) -> str:
    return name.split("/")[-1].split(":")[0]


def _match_names(
    names: list[str], paths: list[tuple[str, ...]], where: str
) -> list[str]:
    """Stored weight names in ``paths`` order, matched by their last part and, for the
    two halves of a Bidirectional layer, by the ``forward_``/``backward_`` they contain."""
    chosen = []
    for path in paths:
        direction = next((p.split("_")[0] for p in path if p.endswith("_layer")), None)
        hits = [
            n for n in names
            if _leaf(n) == path[-1] and n not in chosen
            and (direction is None or any(part.startswith(direction + "_")
                                          for part in n.split("/")[:-1]))
        ]  # fmt: skip
        if not hits:
            raise KerasModelError(
                f"{where}: no stored weight named like {'/'.join(path)!r} (stored: {names})"
            )
        chosen.append(hits[0])
    return chosen


class KerasArchiveReader(_Reader):
    """A ``.keras`` zip archive: ``config.json``, ``metadata.json``, ``model.weights.h5``."""

    def __init__(self, path: Path) -> None:
        self.source = str(path)
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise KerasModelError(f"{path} is a zip file without config.json: not .keras")
            self.model = untuple(json.loads(archive.read("config.json")))
            metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names \
                else {}  # fmt: skip
            self.keras_version = metadata.get("keras_version")
            if "model.weights.h5" not in names:
                raise KerasModelError(
                    f"{path} has no model.weights.h5 (found "
                    f"{sorted(n for n in names if n.startswith('model.weights')) or 'none'}); "
                    "only unsharded HDF5 weights are supported"
                )
            self._bytes = archive.read("model.weights.h5")
        self._h5 = _require_h5py().File(io.BytesIO(self._bytes), "r")
        self._groups: dict[str, str] = {}

    def locate(self, layers: list[dict[str, Any]]) -> None:
        """Keras names each layer's group after its snake-cased class, numbered in the
        order of ``model.layers`` (a Sequential leaves its InputLayer out)."""
        sequential = self.model.get("class_name") == "Sequential"
        used: dict[str, int] = {}
        for layer in layers:
            if sequential and layer["class_name"] == "InputLayer":
                continue
            segment = _to_snake_case(layer["class_name"])
            used[segment] = used.get(segment, -1) + 1
            if used[segment]:
                segment = f"{segment}_{used[segment]}"
            self._groups[layer["name"]] = f"layers/{segment}"

    def weights(self, layer: dict[str, Any], index: int) -> list[np.ndarray]:
        where = f"{self.source}: layer {layer['position']} {layer['name']!r}"
        paths = weight_paths(layer["class_name"], layer["config"], where)
        if not paths:
            return []
        base = self._h5.get(self._groups.get(layer["name"], ""))
        if base is None:
            raise KerasModelError(f"{where}: no weights group {self._groups.get(layer['name'])}")
        recorded = base["vars"].attrs.get("name") if "vars" in base else None
        if recorded is not None and _decode(recorded) != layer["name"]:
            raise KerasModelError(
                f"{where}: its weights group {base.name} belongs to layer {_decode(recorded)!r}"
            )
        groups: dict[str, list[tuple[str, ...]]] = {}
        for path in paths:
            groups.setdefault("/".join((*path[:-1], "vars")), []).append(path)
        arrays = []
        for group_path, members in groups.items():
            group = base.get(group_path)
            stored = [] if group is None else sorted(group.keys(), key=int)
            if len(stored) != len(members):
                raise KerasModelError(
                    f"{where}: {base.name}/{group_path} holds {len(stored)} arrays, expected "
                    f"{len(members)} ({', '.join('/'.join(m) for m in members)})"
                )
            arrays.extend(np.asarray(group[k]) for k in stored)
        return arrays


class LegacyH5Reader(_Reader):
    """A legacy HDF5 model file (``model.save("m.h5")``, Keras 2 or 3)."""

    def __init__(self, path: Path) -> None:
        self.source = str(path)
        self._h5 = _require_h5py().File(path, "r")
        if "model_config" not in self._h5.attrs:
            raise KerasModelError(
                f"{path} has no model_config attribute: a weights-only file, not a whole model"
            )
        self.model = untuple(json.loads(_decode(self._h5.attrs["model_config"])))
        self._root = self._h5.get("model_weights", self._h5)
        version = self._h5.attrs.get("keras_version", self._root.attrs.get("keras_version"))
        self.keras_version = None if version is None else _decode(version)

    def weights(self, layer: dict[str, Any], index: int) -> list[np.ndarray]:
        where = f"{self.source}: layer {layer['position']} {layer['name']!r}"
        paths = weight_paths(layer["class_name"], layer["config"], where)
        if not paths:
            return []
        group = self._root.get(layer["name"])
        if group is None:
            raise KerasModelError(f"{where}: no weights group {layer['name']!r} in the file")
        names = [_decode(n) for n in group.attrs.get("weight_names", [])]
        if len(names) != len(paths):
            raise KerasModelError(
                f"{where}: {len(names)} stored weights ({names}), expected {len(paths)}"
            )
        return [np.asarray(group[n]) for n in _match_names(names, paths, where)]


class SavedModelFolderReader(_Reader):
    """A SavedModel folder written by Keras 2's ``model.save(folder)``."""

    def __init__(self, path: Path) -> None:
        self.source = str(path)
        try:
            self._saved = SavedModelReader(path)
            root = self._saved.root_metadata()
        except SavedModelError as error:
            raise KerasModelError(str(error)) from None
        config = root.get("config")
        if not isinstance(config, Mapping) or "layers" not in config:
            raise KerasModelError(
                f"{path}: the saved object is a {root.get('class_name')!r} without a layer "
                "config (a subclassed model?); only Sequential and functional models import"
            )
        self.model = untuple({"class_name": root.get("class_name"), "config": config})
        self.keras_version = root.get("keras_version")
        self._layers: dict[str, int] = {}
        for child, node in self._saved.children[0].items():
            if child.startswith("layer-") or child.startswith("layer_with_weights-"):
                name = self._saved.metadata.get(node, {}).get("name")
                if name is not None:
                    self._layers[str(name)] = node

    def weights(self, layer: dict[str, Any], index: int) -> list[np.ndarray]:
        where = f"{self.source}: layer {layer['position']} {layer['name']!r}"
        paths = weight_paths(layer["class_name"], layer["config"], where)
        if not paths:
            return []
        node = self._layers.get(layer["name"])
        if node is None:
            raise KerasModelError(f"{where}: not found in the SavedModel's object graph")
        arrays = []
        for path in paths:
            target = self._saved.find(node, *path)
            if target is None:
                raise KerasModelError(f"{where}: the SavedModel has no variable {'/'.join(path)}")
            try:
                arrays.append(self._saved.variable(target, f"{layer['name']}/{'/'.join(path)}"))
            except SavedModelError as error:
                raise KerasModelError(str(error)) from None
        return arrays


def open_model_file(path: Path) -> _Reader:
    """The reader for a ``.keras`` archive, an ``.h5`` model or a SavedModel folder."""
    if path.is_dir():
        return SavedModelFolderReader(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file or SavedModel folder: {path}")
    if zipfile.is_zipfile(path):
        return KerasArchiveReader(path)
    if _require_h5py().is_hdf5(path):
        return LegacyH5Reader(path)
    raise KerasModelError(
        f"{path} is neither a .keras archive, an HDF5 (.h5) model nor a SavedModel folder"
    )


# ------------------------------------------------------------------------------ graph


def _refs(inbound: Any, where: str) -> list[tuple[str, int, int]]:
    """``[(layer, node_index, tensor_index)]`` of one serialised call (Keras 2 or 3)."""
    if isinstance(inbound, Mapping):  # Keras 3: {"args": [...], "kwargs": {...}}
        kwargs = inbound.get("kwargs") or {}
        _check_kwargs(kwargs, where)
        found: list[tuple[str, int, int]] = []

        def walk(value: Any) -> None:
            if isinstance(value, Mapping):
                if value.get("class_name") == "__keras_tensor__":
                    history = value["config"]["keras_history"]
                    found.append((str(history[0]), int(history[1]), int(history[2])))
                else:
                    for v in value.values():
                        walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        walk(inbound.get("args", []))
        return found
    refs = []
    for item in inbound:  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        if len(item) > 3:
            _check_kwargs(item[3] or {}, where)
        refs.append((str(item[0]), int(item[1]), int(item[2])))
    return refs


def _check_kwargs(kwargs: Mapping[str, Any], where: str) -> None:
    extra = {k: v for k, v in kwargs.items() if k not in ("training", "mask") or
             (k == "mask" and v is not None)}  # fmt: skip
    if extra:
        raise KerasModelError(
            f"{where} is called with {sorted(extra)}, which load_keras_model does not support"
        )


def _input_spec(layers: list[dict[str, Any]], model: Mapping[str, Any]) -> tuple[list, str]:
    for layer in layers:
        config = layer["config"]
        if layer["class_name"] == "InputLayer":
            shape = config.get("batch_shape", config.get("batch_input_shape"))
            dtype = config.get("dtype", "float32")
            return list(shape) if shape is not None else None, _dtype_name(dtype)
    first = layers[0]["config"]
    shape = first.get("batch_input_shape") or model.get("config", {}).get("build_input_shape")
    return (list(shape) if shape is not None else None), _dtype_name(first.get("dtype"))


def _dtype_name(value: Any) -> str:
    if isinstance(value, Mapping):
        inner = value.get("config")
        value = inner.get("name") if isinstance(inner, Mapping) else value.get("name")
    return value if isinstance(value, str) else "float32"


def _out_rank(class_name: str, config: Mapping[str, Any], rank: int, tag: str) -> list:
    """``[(rank, tag), ...]`` of a layer's outputs for an input of ``rank`` dims."""
    if class_name in CONVLSTM_CLASSES:
        seq = bool(config.get("return_sequences"))
        out = [(rank if seq else rank - 1, "seq" if seq else "frame")]
        return out + [(rank - 1, "frame")] * (2 if config.get("return_state") else 0)
    if class_name == "Bidirectional":
        inner = config["layer"]["config"]
        seq = bool(inner.get("return_sequences"))
        out = (rank if seq else rank - 1, "seq" if seq else "frame")
        return [out] * (2 if config.get("merge_mode", "concat") is None else 1)
    if class_name == "TimeDistributed":
        inner = config["layer"]
        (inner_rank, _), *_ = _out_rank(inner["class_name"], inner["config"], rank - 1, "frame")
        return [(inner_rank + 1, "seq")]
    if class_name in GLOBAL_POOL_CLASSES:
        return [(rank, tag)] if config.get("keepdims") else [(2, "flat")]
    if class_name == "Flatten":
        return [(2, "flat")]
    if class_name == "Reshape":
        return [(1 + len(config["target_shape"]), "flat")]
    return [(rank, tag)]


def _channels_first(config: Any) -> bool:
    if isinstance(config, Mapping):
        return config.get("data_format") == "channels_first" or any(
            _channels_first(v) for v in config.values()
        )
    if isinstance(config, list):
        return any(_channels_first(v) for v in config)
    return False


def _permutations(rank: int, tag: str) -> tuple[list[int], list[int]] | None:
    """(channels-first -> Keras, Keras -> channels-first) permutations, or None."""
    if tag == "seq" and rank >= 4:
        return [0, 1, *range(3, rank), 2], [0, 1, rank - 1, *range(2, rank - 1)]
    if tag == "frame" and rank >= 3:
        return [0, *range(2, rank), 1], [0, rank - 1, *range(1, rank - 1)]
    return None


def graph_options(
    reader: _Reader,
    *,
    keras_version: str | None,
    logits: bool = False,
    channels_first: bool = True,
) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """The ``KerasGraph`` options of the reader's model, and every layer's weights."""
    source, model = reader.source, reader.model
    layers = layer_entries(model, source)
    if isinstance(reader, KerasArchiveReader):
        reader.locate(layers)
    input_shape, input_dtype = _input_spec(layers, model)
    inputs = [layer for layer in layers if layer["class_name"] == "InputLayer"]
    computing = [layer for layer in layers if layer["class_name"] != "InputLayer"]
    if len(inputs) > 1:
        raise KerasModelError(
            f"{source}: the model has {len(inputs)} inputs; only one is supported"
        )
    weights = {layer["name"]: reader.weights(layer, i) for i, layer in enumerate(computing)}

    # The calls, in an order where every call's inputs come first.
    if model["class_name"] == "Sequential":
        previous: tuple[int, int] = (-1, 0)
        order = []
        for layer in computing:
            order.append({"layer": layer["name"], "inputs": [list(previous)]})
            previous = (len(order) - 1, 0)
        output = list(previous)
    else:
        input_name = inputs[0]["name"] if inputs else None
        pending = []
        for layer in computing:
            where = f"{source}: layer {layer['position']} {layer['name']!r} ({layer['class_name']})"
            for node_index, inbound in enumerate(layer["entry"].get("inbound_nodes") or []):
                refs = _refs(inbound, where)
                if len(refs) != 1:
                    raise KerasModelError(
                        f"{where} takes {len(refs)} inputs; only one is supported"
                    )
                pending.append(((layer["name"], node_index), refs, where))
        order = []
        ids: dict[tuple[str, int], int] = {}
        while pending:
            progressed = False
            for item in list(pending):
                key, refs, where = item
                resolved = []
                for name, node_index, tensor_index in refs:
                    if name == input_name:
                        resolved.append([-1, 0])
                    elif (name, node_index) in ids:
                        resolved.append([ids[(name, node_index)], tensor_index])
                    else:
                        break
                else:
                    ids[key] = len(order)
                    order.append({"layer": key[0], "inputs": resolved})
                    pending.remove(item)
                    progressed = True
            if not progressed:
                names = sorted({r[0] for _, refs, _ in pending for r in refs})
                raise KerasModelError(f"{source}: cannot order the layer calls: inputs {names} "
                                      "are never computed (a second model input?)")  # fmt: skip
        config = model["config"]
        outputs = config.get("output_layers")
        if outputs and isinstance(outputs[0], str):
            outputs = [outputs]
        if not outputs or len(outputs) != 1:
            raise KerasModelError(f"{source}: the model has {len(outputs or [])} outputs; "
                                  "only one is supported")  # fmt: skip
        name, node_index, tensor_index = outputs[0][:3]
        if (name, node_index) not in ids:
            raise KerasModelError(f"{source}: the output {name!r} is not computed by the graph")
        output = [ids[(name, node_index)], int(tensor_index)]

    # Ranks and layouts: the library's channels-first order at the input and output.
    permutation_in = permutation_out = None
    by_name = {layer["name"]: layer for layer in computing}
    if channels_first and input_shape is not None and not _channels_first(model):
        sequence = any(layer["class_name"] in (*CONVLSTM_CLASSES, "Bidirectional",
                       "TimeDistributed") for layer in computing)  # fmt: skip
        tag = "seq" if sequence else "frame"
        rank = len(input_shape)
        shapes: list[list[tuple[int, str]]] = []
        for call in order:
            layer = by_name[call["layer"]]
            n, t = call["inputs"][0]
            in_rank, in_tag = (rank, tag) if n == -1 else shapes[n][t]
            shapes.append(_out_rank(layer["class_name"], layer["config"], in_rank, in_tag))
        into = _permutations(rank, tag)
        permutation_in = into[0] if into else None
        out_rank, out_tag = shapes[output[0]][output[1]]
        back = _permutations(out_rank, out_tag)
        permutation_out = back[1] if back else None

    options = {
        "layers": [
            {"name": layer["name"], "class_name": layer["class_name"], "config": layer["config"],
             "weights": [list(np.shape(w)) for w in weights[layer["name"]]],
             "position": layer["position"]}
            for layer in computing
        ],
        "nodes": order,
        "output": output,
        "input_dtype": input_dtype,
        "input_shape": input_shape,
        "input_permutation": permutation_in,
        "output_permutation": permutation_out,
        "keras_version": keras_version,
        "logits": logits,
    }  # fmt: skip
    return options, weights


__all__ = [
    "KerasModelError",
    "LayerError",
    "graph_options",
    "open_model_file",
]
