"""Read a Keras 2 SavedModel folder without TensorFlow: the Keras configs and the variables.

A SavedModel written by ``model.save(folder)`` (tf.keras / Keras 2, TF 2.x) holds::

    saved_model.pb                 SavedModel protobuf: the object graph (every layer,
                                   variable and their names as children of each other);
                                   TF <= 2.4 also keeps each layer's Keras metadata (its
                                   JSON config) in the object graph's user objects
    keras_metadata.pb              TF >= 2.5: the Keras metadata, by object-graph node id
    variables/variables.index      a table (LevelDB format) from checkpoint key to where
                                   the tensor lies in the data shards
    variables/variables.data-*     the tensors' bytes

Only the few protobuf messages and fields needed are decoded here, from the wire format
(the field numbers are those of TensorFlow's ``.proto`` files, which TensorFlow keeps
stable); the computation graph and traced functions are never read. The checkpoint's own
object graph (``_CHECKPOINTABLE_OBJECT_GRAPH``) gives each variable node its checkpoint
key, and its node ids are those of the SavedModel's object graph (TensorFlow writes both
from one list of objects); the child names of the two are checked to agree.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# TensorFlow DataType enum values -> NumPy dtypes (the numeric ones Keras variables use).
_DTYPES = {
    1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
    9: np.int64, 10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64,
}  # fmt: skip
_DT_STRING = 7
_TABLE_MAGIC = 0xDB4775248B80FB57
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


class SavedModelError(ValueError):
    """A SavedModel folder that this reader cannot read (named, with the reason)."""


# ------------------------------------------------------------------ protobuf wire format


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise SavedModelError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise SavedModelError("varint longer than 10 bytes")


def _fields(data: bytes) -> dict[int, list[Any]]:
    """Decode one protobuf message into ``{field number: [raw values]}`` (ints for varint
    and fixed fields, bytes for length-delimited ones)."""
    out: dict[int, list[Any]] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", data, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
            if pos > len(data):
                raise SavedModelError("truncated length-delimited field")
        elif wire == 5:
            value, pos = struct.unpack_from("<I", data, pos)[0], pos + 4
        else:
            raise SavedModelError(f"unsupported protobuf wire type {wire} (field {number})")
        out.setdefault(number, []).append(value)
    return out


def _one(fields: dict[int, list[Any]], number: int, default: Any = None) -> Any:
    values = fields.get(number)
    return values[-1] if values else default


def _text(fields: dict[int, list[Any]], number: int) -> str:
    return bytes(_one(fields, number, b"")).decode("utf-8")


def _shape(data: bytes | None) -> tuple[int, ...]:
    if data is None:
        return ()
    return tuple(_one(_fields(d), 1, 0) for d in _fields(data).get(2, []))


# ------------------------------------------------------------------ checkpoint (tensor bundle)


@dataclass
class _Entry:
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Key/value pairs of one LevelDB table block (prefix-compressed keys)."""
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length


def _read_block(data: bytes, handle: bytes, where: Path) -> bytes:
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    if offset + size + 5 > len(data):
        raise SavedModelError(f"{where} is truncated (a block lies past its end)")
    kind = data[offset + size]
    if kind != 0:
        raise SavedModelError(
            f"{where} uses compressed blocks (type {kind}), which TensorFlow's own writer "
            "does not produce and this reader does not decode; load the model in TensorFlow "
            "and save it again with model.save(folder)"
        )
    return data[offset : offset + size]


def read_index(path: Path) -> dict[str, _Entry]:
    """``{checkpoint key: entry}`` of a ``variables.index`` file."""
    data = path.read_bytes()
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != _TABLE_MAGIC:
        raise SavedModelError(f"{path} is not a TensorFlow checkpoint index (bad table footer)")
    footer = data[-48:-8]
    _, pos = _varint(footer, 0)  # metaindex offset
    _, pos = _varint(footer, pos)  # metaindex size
    index_block = _read_block(data, footer[pos:], path)
    entries: dict[str, _Entry] = {}
    for _, handle in _block_entries(index_block):
        for key, value in _block_entries(_read_block(data, handle, path)):
            if not key:  # the bundle header
                header = _fields(value)
                if _one(header, 2, 0) != 0:
                    raise SavedModelError(f"{path}: big-endian checkpoints are not supported")
                continue
            fields = _fields(value)
            if fields.get(7):
                raise SavedModelError(
                    f"{path}: tensor {key.decode()!r} is stored in slices (a partitioned "
                    "variable), which this reader does not support"
                )
            entries[key.decode("utf-8")] = _Entry(
                dtype=_one(fields, 1, 0), shape=_shape(_one(fields, 2)),
                shard=_one(fields, 3, 0), offset=_one(fields, 4, 0), size=_one(fields, 5, 0),
            )  # fmt: skip
    return entries


# ------------------------------------------------------------------ the SavedModel


@dataclass
class SavedLayer:
    """One Keras layer of the SavedModel's object graph."""

    node_id: int
    path: str  # e.g. "root.layer_with_weights-0"
    metadata: dict[str, Any]
    children: dict[str, int] = field(default_factory=dict)


class SavedModelReader:
    """The Keras metadata and variables of a SavedModel folder (see the module docstring)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        pb = self.folder / "saved_model.pb"
        if not pb.is_file():
            if (self.folder / "saved_model.pbtxt").is_file():
                raise SavedModelError(
                    f"{self.folder} holds saved_model.pbtxt (text format), not saved_model.pb"
                )
            raise SavedModelError(f"{self.folder} has no saved_model.pb: not a SavedModel folder")
        saved = _fields(pb.read_bytes())
        graphs = saved.get(2, [])
        if not graphs:
            raise SavedModelError(f"{pb} holds no meta graph")
        meta = _fields(graphs[0])
        info = _fields(_one(meta, 1, b""))
        self.tensorflow_version = _text(info, 5) or None
        graph = _one(meta, 7)
        if graph is None:
            raise SavedModelError(
                f"{pb} has no object graph: written by TensorFlow 1 or without Keras"
            )
        self._nodes = [_fields(n) for n in _fields(graph).get(1, [])]
        self.children = [self._children(n) for n in self._nodes]
        self.metadata = self._keras_metadata(pb)
        self._index_path = self.folder / "variables" / "variables.index"
        if not self._index_path.is_file():
            raise SavedModelError(f"{self.folder} has no variables/variables.index")
        self._entries = read_index(self._index_path)
        self._shards: dict[int, bytes] = {}
        self._keys = self._checkpoint_keys()

    @staticmethod
    def _children(node: dict[int, list[Any]]) -> dict[str, int]:
        out = {}
        for ref in node.get(1, []):
            ref_fields = _fields(ref)
            out[_text(ref_fields, 2)] = _one(ref_fields, 1, 0)
        return out

    def _keras_metadata(self, pb: Path) -> dict[int, dict[str, Any]]:
        """``{node id: metadata}`` for every Keras object, from ``keras_metadata.pb``
        (TF >= 2.5) or the user objects of ``saved_model.pb`` (TF <= 2.4)."""
        raw: dict[int, bytes] = {}
        side = self.folder / "keras_metadata.pb"
        if side.is_file():
            for node in _fields(side.read_bytes()).get(1, []):
                fields = _fields(node)
                raw[_one(fields, 2, 0)] = _one(fields, 5, b"")
        for node_id, node in enumerate(self._nodes):
            user = _one(node, 4)
            if user is not None and node_id not in raw:
                text = _one(_fields(user), 3)
                if text:
                    raw[node_id] = text
        if not raw:
            raise SavedModelError(
                f"{self.folder} holds no Keras metadata (neither keras_metadata.pb nor "
                "metadata in saved_model.pb): not saved by Keras's model.save"
            )
        out = {}
        for node_id, text in raw.items():
            try:
                out[node_id] = json.loads(bytes(text).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise SavedModelError(
                    f"{self.folder}: the Keras metadata of object {node_id} is not JSON ({error})"
                ) from None
        return out

    def _checkpoint_keys(self) -> dict[int, str]:
        """``{node id: checkpoint key}`` of every variable, from the checkpoint's object graph."""
        entry = self._entries.get(_OBJECT_GRAPH_KEY)
        if entry is None or entry.dtype != _DT_STRING:
            raise SavedModelError(f"{self._index_path} has no object graph")
        data = self._bytes(entry)
        length, pos = _varint(data, 0)
        graph = data[pos + 4 : pos + 4 + length]  # a 4-byte checksum follows the lengths
        nodes = _fields(graph).get(1, [])
        if len(nodes) != len(self._nodes):
            raise SavedModelError(
                f"{self.folder}: the checkpoint's object graph has {len(nodes)} objects, "
                f"saved_model.pb {len(self._nodes)}"
            )
        keys = {}
        for node_id, node in enumerate(nodes):
            fields = _fields(node)
            names = set(self._children(fields))
            if names != set(self.children[node_id]):
                raise SavedModelError(
                    f"{self.folder}: object {node_id} has children {sorted(names)} in the "
                    f"checkpoint but {sorted(self.children[node_id])} in saved_model.pb"
                )
            for attribute in fields.get(2, []):
                attr = _fields(attribute)
                if _text(attr, 1) == "VARIABLE_VALUE":
                    keys[node_id] = _text(attr, 3)
        return keys

    def _bytes(self, entry: _Entry) -> bytes:
        if entry.shard not in self._shards:
            shards = sorted(self.folder.glob("variables/variables.data-*"))
            if entry.shard >= len(shards):
                raise SavedModelError(f"{self.folder}: data shard {entry.shard} is missing")
            self._shards[entry.shard] = shards[entry.shard].read_bytes()
        data = self._shards[entry.shard]
        if entry.offset + entry.size > len(data):
            raise SavedModelError(f"{self.folder}: a variable lies past the end of its shard")
        return data[entry.offset : entry.offset + entry.size]

    def variable(self, node_id: int, where: str) -> np.ndarray:
        """The value of the variable object ``node_id`` (``where`` names it in errors)."""
        if _one(self._nodes[node_id], 7) is None:
            raise SavedModelError(f"{self.folder}: {where} is not a variable")
        key = self._keys.get(node_id)
        entry = self._entries.get(key) if key else None
        if entry is None:
            raise SavedModelError(f"{self.folder}: no checkpoint value for {where}")
        dtype = _DTYPES.get(entry.dtype)
        if dtype is None:
            raise SavedModelError(
                f"{self.folder}: {where} has TensorFlow dtype {entry.dtype}, not a number type"
            )
        array = np.frombuffer(self._bytes(entry), dtype=np.dtype(dtype).newbyteorder("<"))
        if array.size != int(np.prod(entry.shape)):
            raise SavedModelError(
                f"{self.folder}: {where} holds {array.size} values, shape {entry.shape} needs "
                f"{int(np.prod(entry.shape))}"
            )
        return array.reshape(entry.shape).copy()

    def root_metadata(self) -> dict[str, Any]:
        """The Keras metadata of the saved model itself (object 0)."""
        if 0 not in self.metadata:
            raise SavedModelError(f"{self.folder}: the root object is not a Keras model")
        return self.metadata[0]

    def layer_variables(self, node_id: int, where: str) -> list[np.ndarray]:
        """A Keras layer's weights in ``layer.weights`` order, from its ``variables`` list."""
        variables = self.children[node_id].get("variables")
        if variables is None:
            raise SavedModelError(f"{self.folder}: {where} lists no variables")
        items = self.children[variables]
        order = sorted(items, key=lambda k: int(k) if k.isdigit() else 1 << 30)
        return [self.variable(items[k], f"{where} variable {k}") for k in order]

    def find(self, node_id: int, *path: str) -> int | None:
        """The node reached from ``node_id`` through the child names ``path``."""
        for name in path:
            node_id = self.children[node_id].get(name)
            if node_id is None:
                return None
        return node_id
