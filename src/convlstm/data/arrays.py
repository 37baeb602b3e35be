"""ArraySequences: image sequences stored in .npy/.npz, HDF5 or Zarr arrays."""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ._utils import SPLITS, check_choice, check_positive, optional_import, to_float
from .registry import register_dataset
from .splits import split_groups, time_split_bounds, window_starts

AXES = "NTCHW"


def parse_axes(axes: str, shape: tuple[int, ...], where: str) -> str:
    """Validate an axis-order string like ``"TNHW"`` against an array ``shape``.

    Letters: ``N`` sequences, ``T`` time, ``C`` channels, ``H``, ``W``; ``T``, ``H`` and
    ``W`` are required, each letter at most once.
    """
    axes = str(axes).upper()
    if (
        sorted(set(axes)) != sorted(axes)
        or not set(axes) <= set(AXES)
        or not set("THW") <= set(axes)
    ):
        raise ValueError(
            f"axes {axes!r} for {where} is invalid: use each of the letters N (sequences), "
            "T (time), C (channels), H, W at most once, with T, H and W required, "
            "e.g. 'TNHW' or 'NTCHW'"
        )
    if len(axes) != len(shape):
        raise ValueError(
            f"axes {axes!r} has {len(axes)} letters but {where} has {len(shape)} "
            f"dimensions (shape {tuple(shape)})"
        )
    return axes


def _npz_memmap(path: Path, key: str | None, load_compressed: bool) -> tuple[Any, str]:
    """Memory-map one member of an uncompressed ``.npz`` (a zip of ``.npy`` files)."""
    with zipfile.ZipFile(path) as zf:
        members = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
        key = _pick_key(key, members, path)
        info = zf.getinfo(key + ".npy")
        if info.compress_type != zipfile.ZIP_STORED:
            if not load_compressed:
                raise ValueError(
                    f"array {key!r} in {path} is compressed (np.savez_compressed) and cannot "
                    "be memory-mapped; save it with np.save or np.savez, or pass "
                    "load_compressed=True to load it into memory"
                )
            with zf.open(info) as fh:
                return np.lib.format.read_array(fh), key
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            fh.seek(start)
            version = np.lib.format.read_magic(fh)
            fmt = np.lib.format
            header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = header(fh)
            offset = fh.tell()
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, order=order, offset=offset), key


def _pick_key(key: str | None, keys: list[str], path: Path) -> str:
    if key is None:
        if len(keys) != 1:
            raise ValueError(f"{path} holds arrays {keys}; choose one with key=...")
        return keys[0]
    if key not in keys:
        raise KeyError(f"no array {key!r} in {path}; it holds {keys}")
    return key


def open_array(path: str | Path, key: str | None = None, load_compressed: bool = False):
    """Open an on-disk array lazily (memory-mapped / chunked), never loading it whole.

    Args:
        path: ``.npy``, ``.npz``, ``.h5``/``.hdf5``/``.hdf``, or a Zarr store
            (``.zarr`` directory or any directory with Zarr metadata).
        key: the array's name inside an ``.npz``, HDF5 file or Zarr group; may be
            omitted when the container holds exactly one array.
        load_compressed: allow loading a compressed ``.npz`` member into memory.

    Returns:
        ``(array, handle)``: an object supporting ``.shape``, ``.dtype`` and slicing,
        and the open file to close later (or ``None``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"array file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r"), None
        if suffix == ".npz":
            return _npz_memmap(path, key, load_compressed)[0], None
        if suffix in (".h5", ".hdf5", ".hdf", ".he5"):
            h5py = optional_import("h5py", "data", f"reading HDF5 file {path}")
            fh = h5py.File(path, "r")
            names: list[str] = []
            fh.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            return fh[_pick_key(key, names, path)], fh
        if suffix == ".zarr" or path.is_dir():
            zarr = optional_import("zarr", "data", f"reading Zarr store {path}")
            node = zarr.open(str(path), mode="r")
            if hasattr(node, "array_keys"):
                node = node[_pick_key(key, sorted(node.array_keys()), path)]
            return node, None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        if isinstance(err, ValueError) and str(path) in str(err):
            raise
        raise ValueError(f"cannot read array file {path}: {err}") from err
    raise ValueError(
        f"unsupported array file {path}: expected .npy, .npz, .h5/.hdf5 or a .zarr store"
    )


@register_dataset("arrays")
class ArraySequences(Dataset):
    """Windows of image sequences read lazily from ``.npy``/``.npz``/HDF5/Zarr arrays.

    The array's axis order is given by ``axes`` (e.g. ``"TNHW"`` for the Moving MNIST
    file, ``"NTCHW"``, or ``"THW"`` for one long sequence). Each sequence is cut into
    windows ``stride`` frames apart; only the window being read is loaded.

    Splits: ``split_by="time"`` cuts every sequence's time axis at ``split_fractions``
    (no window straddles a cut); ``split_by="sequence"`` assigns whole sequences
    (needs an ``N`` axis), stratified by label when there are labels.

    Sample (``task="forecast"``): ``(inputs, targets)`` of shapes
    ``(input_frames, C, H, W)`` and ``(output_frames, C, H, W)``.
    Sample (``task="classify"``): ``(clip, label)``, clip ``(frames, C, H, W)``, label
    an int64 scalar tensor (one label per sequence). ``C`` is 1 without a ``C`` axis.

    Args:
        path: array file or Zarr store (or an in-memory ``np.ndarray``).
        axes: axis order of the array, letters from ``NTCHW``. Default ``"TNHW"``.
        key: array name in an ``.npz``/HDF5/Zarr container (optional if only one).
        task: ``"forecast"`` or ``"classify"``. Default ``"forecast"``.
        input_frames, output_frames: forecasting window. Default 10 and 10.
        frames: clip length for ``task="classify"``. Default 16.
        stride: frames between window starts. Default 1.
        labels: for ``"classify"``: a list of ints, a ``.npy`` path, or the key of a
            label array in the same container; one label per sequence.
        scale: multiply values by this; ``"auto"`` maps uint8 to [0, 1]. Default ``"auto"``.
        split: ``None`` (everything), ``"train"``, ``"val"`` or ``"test"``.
        split_by: ``"time"`` or ``"sequence"``. Default ``"time"``.
        split_fractions: train, val, test. Default ``[0.7, 0.15, 0.15]``.
        seed: shuffling seed for ``split_by="sequence"``. Default 0.
        load_compressed: allow loading a compressed ``.npz`` member into memory.
    """

    def __init__(
        self,
        path: str | np.ndarray,
        axes: str = "TNHW",
        key: str | None = None,
        task: str = "forecast",
        input_frames: int = 10,
        output_frames: int = 10,
        frames: int = 16,
        stride: int = 1,
        labels: str | list[int] | None = None,
        scale: float | str = "auto",
        split: str | None = None,
        split_by: str = "time",
        split_fractions: list[float] | tuple[float, ...] = (0.7, 0.15, 0.15),
        seed: int = 0,
        load_compressed: bool = False,
    ) -> None:
        self.task = check_choice("task", task, ("forecast", "classify"))
        check_choice("split", split, (None, *SPLITS))
        check_choice("split_by", split_by, ("time", "sequence"))
        self.input_frames = check_positive("input_frames", input_frames)
        self.output_frames = check_positive("output_frames", output_frames, 0)
        self.frames = check_positive("frames", frames)
        self.stride = check_positive("stride", stride)
        self.scale = scale
        self.key, self.load_compressed = key, load_compressed
        self._handle: Any = None
        self._pid: int | None = None
        if isinstance(path, np.ndarray):
            self.path, self._array = "<array>", path
        else:
            self.path, self._array = str(path), None
        where = f"the array {key!r} in {self.path}" if key else f"the array in {self.path}"
        self.axes = parse_axes(axes, self.array.shape, where)
        dims = dict(zip(self.axes, self.array.shape))
        self.num_sequences, self.length = dims.get("N", 1), dims["T"]
        self.window = self.input_frames + self.output_frames if task == "forecast" else self.frames
        if self.length < self.window:
            need = (
                f"input_frames + output_frames = {self.window}"
                if task == "forecast"
                else f"frames = {self.window}"
            )
            raise ValueError(
                f"sequences in {self.path} have {self.length} frames (axes {self.axes}, "
                f"shape {tuple(self.array.shape)}), shorter than {need}"
            )
        self.sequence_labels = self._load_labels(labels) if task == "classify" else None
        sequences = np.arange(self.num_sequences)
        t0, t1 = 0, self.length
        if split is not None and split_by == "sequence":
            if "N" not in self.axes:
                raise ValueError(f"split_by='sequence' needs an N axis; axes is {self.axes!r}")
            parts = split_groups(sequences, split_fractions, seed, self.sequence_labels)
            sequences = parts[split]
        elif split is not None:
            t0, t1 = time_split_bounds(self.length, split_fractions)[split]
        starts = window_starts(t0, t1, self.window, self.stride)
        if split is not None and len(starts) == 0:
            warnings.warn(
                f"split {split!r} of {self.path} has no complete window: its time range "
                f"[{t0}, {t1}) is shorter than {self.window} frames",
                stacklevel=2,
            )
        self.index = np.array([(n, s) for n in sequences for s in starts], np.int64).reshape(-1, 2)

    @property
    def array(self) -> Any:
        """The opened array; each process (DataLoader worker) opens its own handle."""
        if self.path != "<array>" and (self._array is None or self._pid != os.getpid()):
            self._array, self._handle = open_array(self.path, self.key, self.load_compressed)
            self._pid = os.getpid()
        return self._array

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self.path != "<array>":
            state["_array"], state["_handle"], state["_pid"] = None, None, None
        return state

    def _load_labels(self, labels: str | list[int] | None) -> np.ndarray:
        if labels is None:
            raise ValueError("task='classify' needs labels (a list, a .npy path or a key)")
        if isinstance(labels, str):
            if Path(labels).suffix == ".npy" and Path(labels).is_file():
                values = np.load(labels)
            else:
                values = np.asarray(open_array(self.path, labels, self.load_compressed)[0][...])
        else:
            values = np.asarray(labels)
        values = values.astype(np.int64).reshape(-1)
        if len(values) != self.num_sequences:
            raise ValueError(
                f"labels has {len(values)} entries but {self.path} holds "
                f"{self.num_sequences} sequences (axes {self.axes}); expected one per sequence"
            )
        return values

    @property
    def labels(self) -> np.ndarray | None:
        """Per-sample labels ``(len(self),)`` for ``task="classify"``, else ``None``."""
        if self.sequence_labels is None:
            return None
        return self.sequence_labels[self.index[:, 0]]

    @property
    def groups(self) -> list[str]:
        return [f"{self.path}:{n}" for n in self.index[:, 0]]

    @property
    def spans(self) -> np.ndarray:
        return np.stack([self.index[:, 1], self.index[:, 1] + self.window], 1)

    def __len__(self) -> int:
        return len(self.index)

    def read(self, sequence: int, start: int, stop: int) -> torch.Tensor:
        """Frames ``[start, stop)`` of one sequence as ``(T, C, H, W)`` float32."""
        selector = tuple(
            sequence if a == "N" else slice(start, stop) if a == "T" else slice(None)
            for a in self.axes
        )
        block = np.asarray(self.array[selector])
        kept = [a for a in self.axes if a != "N"]
        if "C" not in kept:
            block, kept = block[..., None], [*kept, "C"]
        block = block.transpose([kept.index(a) for a in "TCHW"])
        return to_float(block, self.scale)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        n, start = (int(v) for v in self.index[index])
        clip = self.read(n, start, start + self.window)
        if self.task == "forecast":
            return clip[: self.input_frames], clip[self.input_frames :]
        return clip, torch.tensor(self.sequence_labels[n], dtype=torch.long)
