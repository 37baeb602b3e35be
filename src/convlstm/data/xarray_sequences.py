"""XarraySequences: forecasting windows from a NetCDF or Zarr variable through xarray."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checks import check_choice, check_int
from ._utils import SPLITS, optional_import
from .normalization import NormStats
from .preprocessing import Preprocessing
from .registry import register_dataset
from .splits import time_split_bounds, window_starts

TIME_NAMES = ("time", "t", "valid_time", "date", "datetime")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def open_gridded(path: str | Path, engine: str | None = None) -> Any:
    """Open a NetCDF file or Zarr store as an ``xarray.Dataset``, lazily.

    Times in the standard calendar become ``datetime64``; model calendars (``360_day``,
    ``noleap``, ``all_leap``, ``julian``, ...) become ``cftime`` dates on an
    ``xarray.CFTimeIndex``, which windows, splits and resamples like any other.

    Args:
        path: a NetCDF file or a Zarr store (a directory).
        engine: xarray backend (``"h5netcdf"``, ``"netcdf4"``, ``"zarr"``, ...). Default:
            ``"zarr"`` for a directory, else xarray's guess.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImportError: the time axis is in a model calendar and ``cftime`` is not installed.
        ValueError: xarray cannot open or decode the file (one line naming it).
    """
    path = Path(path)
    xr = optional_import("xarray", "data", f"reading {path}")
    if not path.exists():
        raise FileNotFoundError(f"gridded data file not found: {path}")
    if engine is None and path.is_dir():
        engine = "zarr"
    try:
        with warnings.catch_warnings():  # unconsolidated Zarr metadata: fine, just slower
            warnings.filterwarnings("ignore", "Failed to open Zarr", RuntimeWarning)
            return xr.open_dataset(path, engine=engine, chunks=None)
    except Exception as err:  # backends raise many types
        calendar = re.search(r"calendar '([^']+)'", str(err))
        if calendar and "unable to decode time" in str(err) and not _has_cftime():
            raise ImportError(
                f"{path}: its time axis uses the {calendar.group(1)!r} calendar, which needs "
                "the optional package 'cftime', which is not installed; install it with: "
                "pip install 'convlstm[data]'"
            ) from err
        raise ValueError(f"cannot open {path} with xarray: {_one_line(err)}") from err


def _has_cftime() -> bool:
    try:
        import cftime  # noqa: F401
    except ImportError:
        return False
    return True


def _is_time_like(da: Any, dim: str) -> bool:
    """A dimension named like time, marked as the CF time axis, or indexed by dates."""
    if str(dim).lower() in TIME_NAMES:
        return True
    if dim not in da.coords:
        return False
    coord = da.coords[dim]
    if coord.attrs.get("axis") == "T" or coord.attrs.get("standard_name") == "time":
        return True
    if np.issubdtype(coord.dtype, np.datetime64):
        return True
    index = da.indexes.get(dim)
    return type(index).__name__ == "CFTimeIndex"  # model calendars, decoded by cftime


def find_time_dim(da: Any, time_dim: str | None = None, where: str = "the variable") -> str:
    """The time dimension of an ``xarray.DataArray``: ``time_dim`` if given (checked),
    else the one dimension that is time-like (named ``time``/``t``/``valid_time``/
    ``date``, marked ``axis="T"`` or ``standard_name="time"``, or with date
    coordinates, cftime ones included). Never another dimension by position.

    Raises:
        ValueError: ``time_dim`` is not a dimension, or none or several are time-like
            (the message names ``where`` and its dims, and asks for ``time_dim``).
    """
    if time_dim is not None:
        if time_dim not in da.dims:
            raise ValueError(f"{where} has dims {da.dims}, no time dimension {time_dim!r}")
        return time_dim
    found = [dim for dim in da.dims if _is_time_like(da, dim)]
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(
            f"{where} has several time-like dims {tuple(found)}; choose one with time_dim=..."
        )
    raise ValueError(
        f"{where} has dims {da.dims} and no time dimension; expected a dim named 'time' or "
        "with datetime coordinates (or set time_dim=...)"
    )


@register_dataset("xarray")
class XarraySequences(Dataset):
    """Forecasting windows of a gridded variable (NetCDF, Zarr) read lazily via xarray.

    The variable needs a time dimension and two spatial dimensions (its last two other
    dimensions); one more dimension (levels, bands) becomes channels. After an optional
    crop (by coordinate values), time resampling and spatial coarsening, the time axis
    is split in order at ``split_fractions`` and each part cut into windows ``stride``
    frames apart: no window straddles a split boundary. With ``normalize`` the
    statistics come from the training part only (also for ``split="val"``/``"test"``)
    and are available as :attr:`stats` to store with a run. Missing values become
    ``fill_value`` (after normalisation).

    Resampling and coarsening load the (cropped) variable into memory; without them only
    the frames of a window are read. Model calendars (``360_day``, ``noleap``, ...) are
    decoded with ``cftime`` (see :func:`open_gridded`) and resampled in their calendar.

    Sample: ``(inputs, targets)`` of shapes ``(input_frames, C, H, W)`` and
    ``(output_frames, C, H, W)``, float32.

    Args:
        path: NetCDF file or Zarr store (needs ``convlstm[data]``).
        variable: the data variable's name.
        input_frames, output_frames: Default 10 and 10.
        stride: frames between window starts. Default 1.
        time_dim: name of the time dimension. Default: the one time-like dimension
            (see :func:`find_time_dim`); required when none or several are.
        crop: ``{dim: [start, stop]}`` in coordinate values, e.g.
            ``{"lat": [30, 50], "lon": [-10, 20]}``; descending coordinates work too.
        resample: time resampling frequency such as ``"1h"`` (mean). Default ``None``.
        coarsen: spatial block-mean factor (int). Default ``None``.
        normalize: ``None``, ``"standard"`` (zero mean, unit std) or ``"minmax"`` ([0, 1]).
        stats: precomputed statistics (``NormStats.to_dict()``) to use instead of
            computing them, e.g. a trained run's.
        split: ``None``, ``"train"``, ``"val"`` or ``"test"``.
        split_fractions: Default ``[0.7, 0.15, 0.15]``.
        fill_value: replaces NaN. Default 0.0.
        engine: xarray backend (``"h5netcdf"``, ``"zarr"``, ...). Default: guessed.
    """

    def __init__(
        self,
        path: str,
        variable: str,
        input_frames: int = 10,
        output_frames: int = 10,
        stride: int = 1,
        time_dim: str | None = None,
        crop: dict[str, list[float]] | None = None,
        resample: str | None = None,
        coarsen: int | None = None,
        normalize: str | None = None,
        stats: dict | NormStats | None = None,
        split: str | None = None,
        split_fractions: list[float] | tuple[float, ...] = (0.7, 0.15, 0.15),
        fill_value: float = 0.0,
        engine: str | None = None,
    ) -> None:
        optional_import("xarray", "data", "XarraySequences")
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"gridded data file not found: {self.path}")
        self.input_frames = check_int("input_frames", input_frames)
        self.output_frames = check_int("output_frames", output_frames, 0)
        self.stride = check_int("stride", stride)
        check_choice("normalize", normalize, (None, "standard", "minmax"))
        check_choice("split", split, (None, *SPLITS))
        self.fill_value = float(fill_value)
        self._options = {
            "variable": variable,
            "time_dim": time_dim,
            "crop": crop or {},
            "resample": resample,
            "coarsen": coarsen,
            "engine": engine,
        }
        self._load()
        tdim = self.dims[0]
        self.times = np.asarray(self.data[tdim].values) if tdim in self.data.coords else None
        length = self.data.sizes[tdim]
        window = self.input_frames + self.output_frames
        if length < window:
            raise ValueError(
                f"variable {variable!r} in {self.path} has {length} time steps after "
                f"cropping/resampling, fewer than input_frames + output_frames = {window}"
            )
        bounds = time_split_bounds(length, split_fractions)
        lo, hi = (0, length) if split is None else bounds[split]
        self.starts = window_starts(lo, hi, window, self.stride)
        if not len(self.starts):
            raise ValueError(
                f"split {split!r} of variable {variable!r} in {self.path} has no samples: its "
                f"time steps [{lo}, {hi}) (split_fractions {list(split_fractions)}) are fewer "
                f"than input_frames + output_frames = {window}; shorten the window or give "
                "the split a larger fraction"
            )
        self.window = window
        self.normalize = normalize
        if stats is not None and not isinstance(stats, NormStats):
            stats = NormStats.from_dict(stats)
        self.stats = stats
        if normalize and self.stats is None:
            self.stats = self._compute_stats(*bounds["train"])

    def _load(self) -> None:
        """Open the file and build ``self.data`` (time, [channel,] y, x), lazily indexed."""
        opts = self._options
        ds = open_gridded(self.path, opts["engine"])
        variable = opts["variable"]
        if variable not in ds.data_vars:
            raise KeyError(f"no variable {variable!r} in {self.path}; it has {list(ds.data_vars)}")
        where = f"variable {variable!r} in {self.path}"
        da = ds[variable]
        tdim = find_time_dim(da, opts["time_dim"], where)
        da = self._crop(da, opts["crop"], where)
        if opts["resample"]:
            da = da.resample({tdim: opts["resample"]}).mean()
        others = [d for d in da.dims if d != tdim]
        if len(others) not in (2, 3):
            raise ValueError(
                f"{where} has dims {da.dims}: expected time plus 2 spatial dims and at most "
                "one channel dim"
            )
        if opts["coarsen"]:
            da = da.coarsen({d: int(opts["coarsen"]) for d in others[-2:]}, boundary="trim")
            da = da.mean()
        self.dims = (tdim, *others) if len(others) == 3 else (tdim, None, *others)
        self.data = da.transpose(tdim, *others)
        self._pid = os.getpid()

    @property
    def _in_memory(self) -> bool:  # resampling/coarsening computed the data already
        return bool(self._options["resample"] or self._options["coarsen"])

    def __getstate__(self) -> dict:  # DataLoader workers reopen the file themselves
        state = self.__dict__.copy()
        if not self._in_memory:
            state["data"], state["_pid"] = None, None
        return state

    @staticmethod
    def _crop(da: Any, crop: dict[str, list[float]], where: str) -> Any:
        for dim, bounds in crop.items():
            if dim not in da.dims:
                raise ValueError(f"crop names dim {dim!r}, but {where} has dims {da.dims}")
            if len(bounds) != 2:
                raise ValueError(f"crop[{dim!r}] must be [start, stop], got {bounds!r}")
            low, high = sorted(bounds)
            values = da[dim].values
            descending = len(values) > 1 and values[0] > values[-1]
            da = da.sel({dim: slice(high, low) if descending else slice(low, high)})
            if da.sizes[dim] == 0:
                raise ValueError(f"crop {dim}={list(bounds)} leaves no data in {where}")
        return da

    @property
    def length(self) -> int:
        """Time steps after cropping and resampling."""
        if self.data is None:
            self._load()
        return int(self.data.sizes[self.dims[0]])

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Time steps ``[start, stop)`` as ``(T, C, H, W)`` float32, cropped, resampled and
        coarsened, before normalisation and NaN filling (what :meth:`preprocessing` does)."""
        return self._frames(start, stop)

    def preprocessing(self) -> Preprocessing:
        """The crop, resampling and coarsening of the variable, then normalisation (when
        asked) and NaN filling; values in the variable's units."""
        options = self._options
        reader = {"kind": "xarray", "variable": options["variable"],
                  "time_dim": self.dims[0], "crop": options["crop"],
                  "resample": options["resample"], "coarsen": options["coarsen"]}  # fmt: skip
        steps = []
        if self.stats is not None:
            steps.append({"op": "normalize", "mean": self.stats.mean, "std": self.stats.std})
        steps.append({"op": "fill_nan", "value": self.fill_value})
        return Preprocessing(reader=reader, uint8="keep", steps=tuple(steps))

    def _frames(self, start: int, stop: int) -> np.ndarray:
        if self.data is None or (self._pid != os.getpid() and not self._in_memory):
            self._load()  # a forked or unpickled copy opens its own file handle
        block = np.asarray(self.data[start:stop].values, dtype=np.float32)
        return block[:, None] if block.ndim == 3 else block

    def _compute_stats(self, start: int, stop: int, chunk: int = 64) -> NormStats:
        total = squares = 0.0
        count, low, high = 0, np.inf, -np.inf
        for t in range(start, max(stop, start + 1), chunk):
            block = self._frames(t, min(t + chunk, stop))
            values = block[np.isfinite(block)].astype(np.float64)
            if values.size:
                total, squares = total + values.sum(), squares + (values**2).sum()
                count += values.size
                low, high = min(low, values.min()), max(high, values.max())
        if count == 0:
            raise ValueError(f"no finite values in the training part of {self.path}")
        mean = total / count
        std = max(float(np.sqrt(max(squares / count - mean**2, 0.0))), 1e-12)
        if self.normalize == "minmax":
            mean, std = low, max(high - low, 1e-12)
        return NormStats([float(mean)], [float(std)], [float(low)], [float(high)], count)

    @property
    def spans(self) -> np.ndarray:
        return np.stack([self.starts, self.starts + self.window], 1)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = int(self.starts[index])
        clip = self.preprocessing()(torch.from_numpy(self._frames(start, start + self.window)))
        return clip[: self.input_frames], clip[self.input_frames :]
