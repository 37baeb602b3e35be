"""ArraySequences: image sequences stored in .npy/.npz, HDF5 or Zarr arrays."""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checks import check_choice, check_int
from ._utils import SPLITS, optional_import
from .preprocessing import Preprocessing
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


_NPY_MAGIC = b"\x93NUMPY"


def _npy_layout(fh: BinaryIO, size: int, where: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Check the ``.npy`` data at ``fh``'s position (``size`` bytes long) without unpickling.

    Returns its shape, Fortran order, dtype and the data's offset from the position;
    raises a ``ValueError`` starting with ``where`` when it is not a numeric ``.npy``.
    """
    start = fh.tell()
    head = fh.read(len(_NPY_MAGIC) + 2)
    if not head or not head.startswith(_NPY_MAGIC[: len(head)]):
        seen = f"it starts with {head[:16]!r}" if head else "it is empty"
        raise ValueError(
            f"{where} is not a NumPy .npy file (no NumPy header; {seen}); expected an array "
            "written with numpy.save"
        )
    if len(head) < len(_NPY_MAGIC) + 2:
        raise ValueError(f"{where} is a truncated .npy file: it ends inside the NumPy header")
    version = (head[-2], head[-1])
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise ValueError(f"{where} has a corrupt .npy header: unknown format version {version}")
    fmt = np.lib.format
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    try:
        shape, fortran, dtype = read(fh)
    except (ValueError, EOFError) as err:
        # numpy reports a short read as a ValueError starting with "EOF"
        if isinstance(err, EOFError) or str(err).startswith("EOF"):
            raise ValueError(
                f"{where} is a truncated .npy file: it ends inside the NumPy header"
            ) from err
        raise ValueError(f"{where} has a corrupt .npy header: {err}") from err
    offset = fh.tell() - start
    if dtype.hasobject:
        raise ValueError(
            f"{where} holds Python objects (dtype {dtype}), not numbers; only numeric arrays "
            "are read, and files are never unpickled"
        )
    nbytes = math.prod(shape) * dtype.itemsize
    if size - offset < nbytes:
        raise ValueError(
            f"{where} is a truncated .npy file: its header declares shape {tuple(shape)} "
            f"{dtype} ({nbytes} bytes of data) but only {max(size - offset, 0)} follow"
        )
    return tuple(shape), bool(fortran), dtype, offset


def _pick_key(key: str | None, keys: list[str], path: Path) -> str:
    if key is None:
        if len(keys) != 1:
            raise ValueError(f"{path} holds arrays {keys}; choose one with key=...")
        return keys[0]
    if key not in keys:
        raise KeyError(f"no array {key!r} in {path}; it holds {keys}")
    return key


def _memmap(path: Path, shape: tuple[int, ...], fortran: bool, dtype: np.dtype, offset: int):
    if math.prod(shape) == 0:  # mmap cannot map zero bytes
        return np.empty(shape, dtype)
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, order=order, offset=offset)


def _npy(path: Path, in_memory: bool) -> np.ndarray:
    with open(path, "rb") as fh:
        layout = _npy_layout(fh, path.stat().st_size, str(path))
    if in_memory:
        return np.load(path, allow_pickle=False)
    return _memmap(path, *layout)


def _npz(path: Path, key: str | None, load_compressed: bool, in_memory: bool) -> np.ndarray:
    """One member of a ``.npz`` (a zip of ``.npy`` files): memory-mapped when it is stored
    uncompressed and ``in_memory`` is false, else read into memory."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError) as err:
        raise ValueError(
            f"{path} is not a NumPy .npz file (not a valid zip archive: {err}); it may be "
            "truncated, or not written with numpy.savez"
        ) from err
    with zf:
        members = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
        key = _pick_key(key, members, path)
        where = f"array {key!r} in {path}"
        info = zf.getinfo(key + ".npy")
        compressed = info.compress_type != zipfile.ZIP_STORED
        if compressed and not (load_compressed or in_memory):
            raise ValueError(
                f"{where} is compressed (np.savez_compressed) and cannot be memory-mapped; "
                "save it with np.save or np.savez, or pass load_compressed=True to load it "
                "into memory"
            )
        try:
            if compressed or in_memory:
                with zf.open(info) as fh:
                    _npy_layout(fh, info.file_size, where)
                with zf.open(info) as fh:
                    return np.lib.format.read_array(fh, allow_pickle=False)
            with open(path, "rb") as fh:
                fh.seek(info.header_offset)
                local = fh.read(30)
                name_len = int.from_bytes(local[26:28], "little")
                extra_len = int.from_bytes(local[28:30], "little")
                start = info.header_offset + 30 + name_len + extra_len
                fh.seek(start)
                shape, fortran, dtype, offset = _npy_layout(fh, info.file_size, where)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise ValueError(f"cannot read {where}: {err}") from err
    return _memmap(path, shape, fortran, dtype, start + offset)


def load_array_file(path: str | Path, key: str | None = None) -> np.ndarray:
    """Read a whole array from a ``.npy``/``.npz`` (or HDF5/Zarr) file into memory.

    Files are never unpickled (``allow_pickle=False``). A file that is not what its
    suffix says (a CSV named ``.npy``), a truncated ``.npy`` or a corrupt ``.npz`` raises
    a one-line ``ValueError`` naming the file and what is wrong with it.

    Args:
        path: ``.npy``, ``.npz`` (compressed or not), HDF5 file or Zarr store.
        key: the array's name in an ``.npz``/HDF5/Zarr container; may be omitted when it
            holds exactly one array.

    Raises:
        FileNotFoundError: no such file.
        KeyError: ``key`` is not in the container (the message lists its arrays).
        ValueError: the file is not a readable array of numbers (the message names it).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        array, handle = open_array(path, key, load_compressed=True)
        try:
            return np.asarray(array[...])
        finally:
            if handle is not None:
                handle.close()
    if not path.is_file():
        raise FileNotFoundError(f"array file not found: {path}")
    try:
        if suffix == ".npy":
            return _npy(path, in_memory=True)
        return _npz(path, key, load_compressed=True, in_memory=True)
    except OSError as err:
        raise ValueError(f"cannot read array file {path}: {err}") from err


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
            return _npy(path, in_memory=False), None
        if suffix == ".npz":
            return _npz(path, key, load_compressed, in_memory=False), None
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
        self.input_frames = check_int("input_frames", input_frames)
        self.output_frames = check_int("output_frames", output_frames, 0)
        self.frames = check_int("frames", frames)
        self.stride = check_int("stride", stride)
        if scale != "auto" and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
            raise ValueError(f"scale must be 'auto' or a number, got {scale!r}")
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
        if self.num_sequences == 0:
            raise ValueError(
                f"{where} holds no sequences (axes {self.axes}, shape "
                f"{tuple(self.array.shape)}): its N axis is empty"
            )
        need = (
            f"input_frames + output_frames = {self.window}"
            if task == "forecast"
            else f"frames = {self.window}"
        )
        if self.length < self.window:
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
            if not len(sequences):
                raise ValueError(
                    f"split {split!r} of {self.path} has no samples: it gets none of its "
                    f"{self.num_sequences} sequences (split_by='sequence', split_fractions "
                    f"{list(split_fractions)}); use more sequences, other split_fractions or "
                    "split_by='time'"
                )
        elif split is not None:
            t0, t1 = time_split_bounds(self.length, split_fractions)[split]
        starts = window_starts(t0, t1, self.window, self.stride)
        if not len(starts):
            raise ValueError(
                f"split {split!r} of {self.path} has no samples: its frames [{t0}, {t1}) "
                f"(split_by='time', split_fractions {list(split_fractions)}) are fewer than "
                f"{need}; shorten the window or give the split a larger fraction"
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
                values = load_array_file(labels)
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
        preprocessing = self.preprocessing()
        return preprocessing(preprocessing.to_float(block))

    def preprocessing(self) -> Preprocessing:
        """``scale="auto"``: 8-bit arrays divided by 255, others as they are; a number:
        every array multiplied by it."""
        if self.scale == "auto":
            return Preprocessing(reader={"kind": "array"}, uint8="unit")
        factor = float(self.scale)
        steps = () if factor == 1.0 else ({"op": "multiply", "factor": factor},)
        return Preprocessing(reader={"kind": "array"}, uint8="keep", steps=steps)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        n, start = (int(v) for v in self.index[index])
        clip = self.read(n, start, start + self.window)
        if self.task == "forecast":
            return clip[: self.input_frames], clip[self.input_frames :]
        return clip, torch.tensor(self.sequence_labels[n], dtype=torch.long)
