"""Real radar composites: pysteps' importers to rain rate (mm/h), events and nowcasting windows.

A radar *event* is a time series of composites: a folder of files (one per time step), a
glob pattern, or one NetCDF/Zarr file with a time axis. :func:`read_radar_event` reads
it through pysteps' importers (``pip install 'convlstm[radar]'``) into rain rate in
mm/h, on one grid, at one time step::

    event = read_radar_event("radar/knmi/2010/08", grid_km=2.0, timestep=5)
    event.rain.shape        # (92, 382, 350) mm/h, NaN where the radar sees nothing
    event.segments          # [(0, 92)]: runs of frames without a gap

Formats (``format="auto"`` tells them apart by suffix and content):

========== ============================================== ===========================
name       files                                          pysteps importer
========== ============================================== ===========================
knmi_hdf5  KNMI HDF5 (RAD_NL25_RAP_5min_*.h5), mm per 5 min import_knmi_hdf5
fmi_pgm    FMI PGM, optionally gzipped, dBZ               import_fmi_pgm
odim_hdf5  ODIM HDF5 (OPERA, European standard), mm/h     import_odim_hdf5
mch_gif    MeteoSwiss GIF (AQC, CPC, RZC, AZC)            import_mch_gif
bom_rf3    BoM Rainfields3 NetCDF, mm per 6 min           import_bom_rf3
gridded    any NetCDF/Zarr rain field with a time axis    (xarray, convlstm[data])
========== ============================================== ===========================

``format="pysteps:import_xxx"`` uses any other pysteps importer. Reflectivity becomes
rain rate with the importer's Z-R relation (pysteps' ``to_rainrate``); accumulations
are divided by their accumulation time. What carries a model from one radar network to
another is put into common units here: mm/h, a grid spacing (``grid_km``, area-averaged),
a time step (``timestep``, subsampled) and north up (``yorigin="lower"`` grids are flipped),
so that an advection of so many km per minute is so many pixels per step everywhere.

:class:`RadarFiles` (``radar_files`` in configs) cuts events into windows of
``input_frames`` + ``output_frames`` that never cross an event, a gap or a ``portion``
boundary, with random patches and random rotations/flips for training, and a log
transform (``Preprocessing`` step ``log_rain``) that ``predict`` inverts.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import io
import itertools
import math
import re
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..checks import check_choice, check_int
from ..runtime import ConvLSTMWarning
from ._utils import SPLIT_CODES, natural_key, sample_rng
from .preprocessing import Preprocessing
from .registry import register_dataset

EXTRA = "radar"


@dataclass(frozen=True)
class RadarFormat:
    """A composite file format: the pysteps importer that reads it and its default options."""

    name: str
    importer: str
    options: dict[str, Any]
    suffixes: tuple[str, ...]
    description: str


FORMATS: dict[str, RadarFormat] = {
    f.name: f
    for f in (
        RadarFormat("knmi_hdf5", "import_knmi_hdf5", {"qty": "ACRR", "accutime": 5.0},
                    (".h5", ".hdf5"), "KNMI HDF5 (rain accumulation in mm per accutime)"),
        RadarFormat("fmi_pgm", "import_fmi_pgm", {}, (".pgm", ".pgm.gz"),
                    "FMI PGM reflectivity composite in dBZ (gzipped or not)"),
        RadarFormat("odim_hdf5", "import_odim_hdf5", {"qty": "RATE"},
                    (".h5", ".hdf5", ".hdf"), "ODIM HDF5 composite (OPERA, DPC, ...)"),
        RadarFormat("mch_gif", "import_mch_gif",
                    {"product": "AQC", "unit": "mm", "accutime": 5.0}, (".gif",),
                    "MeteoSwiss 8-bit GIF composite"),
        RadarFormat("bom_rf3", "import_bom_rf3", {}, (".nc",),
                    "Australian Bureau of Meteorology Rainfields3 NetCDF"),
        RadarFormat("gridded", "", {}, (".nc", ".nc4", ".netcdf", ".zarr"),
                    "NetCDF/Zarr rain field with a time axis, read with xarray"),
    )
}  # fmt: skip

RADAR_SUFFIXES = (".h5", ".hdf5", ".hdf", ".pgm", ".pgm.gz", ".gif", ".nc", ".nc4")

# Time stamps tried in file names, longest first: KNMI/FMI/ODIM (YYYYmmddHHMM[SS]), BoM
# (YYYYmmdd_HHMMSS) and MeteoSwiss (yyjjjHHMM).
TIME_FORMATS = ("%Y%m%d%H%M%S", "%Y%m%d_%H%M%S", "%Y%m%d%H%M", "%Y%m%d_%H%M", "%y%j%H%M")
_DIRECTIVES = {"Y": 4, "y": 2, "m": 2, "d": 2, "H": 2, "M": 2, "S": 2, "j": 3}

# Z = a R^b of the Marshall-Palmer relation, for reflectivity without its own.
MARSHALL_PALMER = (200.0, 1.6)


@dataclass(frozen=True)
class RadarGrid:
    """Where a composite's pixels are: shape, spacing in km (``None``: not metric),
    projection and corners as the importer gives them."""

    shape: tuple[int, int]
    pixel_km: tuple[float, float] | None
    projection: str | None = None
    corners: tuple[float, float, float, float] | None = None

    def describe(self) -> str:
        spacing = (
            "unknown spacing" if self.pixel_km is None
            else f"{self.pixel_km[0]:.4g} x {self.pixel_km[1]:.4g} km"
        )  # fmt: skip
        return f"{self.shape[0]} x {self.shape[1]} pixels at {spacing}"

    def differs_from(self, other: RadarGrid) -> str | None:
        """What makes ``other`` a different grid, or ``None``."""
        if self.shape != other.shape:
            return "shape"
        if (self.pixel_km is None) != (other.pixel_km is None) or (
            self.pixel_km is not None
            and not np.allclose(self.pixel_km, other.pixel_km, rtol=0.01)
        ):
            return "pixel size"
        if self.corners is not None and other.corners is not None and self.pixel_km:
            # corners in the importer's units; half a pixel of tolerance
            size = max(abs(self.corners[2] - self.corners[0]) / self.shape[1], 1e-9)
            if np.max(np.abs(np.subtract(self.corners, other.corners))) > 0.5 * size:
                return "corners"
        norm = [" ".join(str(p).split()) if p else None for p in (self.projection,
                                                                    other.projection)]
        if None not in norm and norm[0] != norm[1]:
            return "projection"
        return None


@dataclass
class RadarFrame:
    """One composite: ``rain`` ``(H, W)`` float32 mm/h (NaN: no data), its time and grid."""

    rain: np.ndarray
    time: datetime | None
    grid: RadarGrid
    source: str


@dataclass
class RadarEvent:
    """A radar event on one grid at one time step.

    Attributes:
        name: the event's name (its folder or file name unless given).
        rain: ``(T, H, W)`` float32 rain rate in mm/h; NaN where there is no data,
            0 below the rain threshold.
        times: the ``T`` times (``None`` for a source without times).
        timestep: minutes between frames.
        grid: the grid after resampling and cropping.
        segments: ``[(start, stop), ...]`` runs of frames without a gap.
        files: the file of each frame.
    """

    name: str
    rain: np.ndarray
    times: list[datetime | None]
    timestep: float
    grid: RadarGrid
    segments: list[tuple[int, int]]
    files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.rain.shape[0])


def _pysteps() -> Any:
    """pysteps, imported quietly (it prints where its configuration file is)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return importlib.import_module("pysteps")
    except ImportError as err:
        raise ImportError(
            "reading radar composites needs the optional package 'pysteps', which is not "
            f"installed; install it with: pip install 'convlstm[{EXTRA}]'"
        ) from err


def pysteps_module(name: str) -> Any:
    """A pysteps submodule such as ``"io.importers"``, with the error that names the extra."""
    _pysteps()
    with contextlib.redirect_stdout(io.StringIO()):
        return importlib.import_module(f"pysteps.{name}")


def detect_format(path: str | Path) -> str:
    """The :data:`FORMATS` name of a composite file, from its suffix and content.

    Raises:
        ValueError: the file is of no known format (the message names it).
    """
    path = Path(path)
    name = path.name.lower()
    if path.is_dir() and name.endswith(".zarr"):
        return "gridded"
    if name.endswith((".pgm", ".pgm.gz")):
        return "fmi_pgm"
    if name.endswith(".gif"):
        return "mch_gif"
    if name.endswith((".h5", ".hdf5", ".hdf")):
        h5py = _optional("h5py", f"reading {path}")
        try:
            with h5py.File(path, "r") as handle:
                groups = sorted(handle.keys())
        except OSError as err:
            raise ValueError(f"{path}: not a readable HDF5 file ({err})") from None
        if "image1" in groups and "geographic" in groups:
            return "knmi_hdf5"
        if "dataset1" in groups and "what" in groups:
            return "odim_hdf5"
        raise ValueError(
            f"{path}: HDF5 file with groups {groups} is neither KNMI (image1, geographic) "
            "nor ODIM (dataset1, what, where); give format=..."
        )
    if name.endswith((".nc", ".nc4", ".netcdf")):
        variables = _netcdf_variables(path)
        if "precipitation" in variables and {"valid_time", "start_time"} & variables:
            return "bom_rf3"
        return "gridded"
    raise ValueError(
        f"{path}: unknown radar file type; expected one of the suffixes "
        f"{', '.join(RADAR_SUFFIXES)} or a .zarr store, or give format=... "
        f"(one of {sorted(FORMATS)} or 'pysteps:import_xxx')"
    )


def _netcdf_variables(path: Path) -> set[str]:
    h5py = _optional("h5py", f"reading {path}")
    try:
        with h5py.File(path, "r") as handle:
            return set(handle.keys())
    except OSError:  # NetCDF3: let xarray read it as a gridded field
        return set()


def _optional(module: str, purpose: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{purpose} needs the optional package '{module}', which is not installed; "
            f"install it with: pip install 'convlstm[{EXTRA}]'"
        ) from err


def parse_time(name: str, time_format: str | None = None) -> datetime | None:
    """The time stamp in a file name: ``time_format`` (strptime) if given, else the first
    of :data:`TIME_FORMATS` found as a whole run of digits; ``None`` if none is."""
    for fmt in (time_format,) if time_format else TIME_FORMATS:
        pattern = re.escape(fmt)
        for code, digits in _DIRECTIVES.items():
            pattern = pattern.replace(f"%{code}", rf"\d{{{digits}}}")
        for match in re.finditer(rf"(?<!\d){pattern}(?!\d)", name):
            try:
                return datetime.strptime(match.group(0), fmt)
            except ValueError:
                continue
    return None


def _importer_options(fmt: RadarFormat, path: Path, options: dict[str, Any]) -> dict[str, Any]:
    merged = {**fmt.options, **options}
    if fmt.name == "fmi_pgm":
        merged.setdefault("gzipped", path.name.lower().endswith(".gz"))
    return merged


def _grid_of(metadata: dict[str, Any], shape: tuple[int, int]) -> RadarGrid:
    unit = metadata.get("cartesian_unit")
    scale = {"m": 1e-3, "km": 1.0}.get(unit)
    dx, dy = metadata.get("xpixelsize"), metadata.get("ypixelsize")
    pixel = None
    if scale is not None and dx and dy:
        pixel = (float(dy) * scale, float(dx) * scale)
    corners = None
    if all(metadata.get(k) is not None for k in ("x1", "y1", "x2", "y2")):
        corners = tuple(float(metadata[k]) for k in ("x1", "y1", "x2", "y2"))
    return RadarGrid(shape, pixel, metadata.get("projection"), corners)


def read_radar_file(
    path: str | Path,
    format: str = "auto",
    time_format: str | None = None,
    **importer_options: Any,
) -> RadarFrame:
    """One composite file as rain rate in mm/h (NaN where there is no data).

    Args:
        path: the file.
        format: a :data:`FORMATS` name (not ``gridded``: see :func:`read_radar_event`),
            ``"pysteps:import_xxx"`` for another pysteps importer, or ``"auto"``.
        time_format: strptime format of the time stamp in the file name (default: see
            :func:`parse_time`).
        importer_options: passed to the pysteps importer (e.g. ``qty="DBZH"``).

    Raises:
        ImportError: pysteps or a package its importer needs is missing (names the extra).
        ValueError: unknown format, a file the importer cannot read, or units that are
            not rain (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"radar file not found: {path}")
    fmt = _format(format, path)
    if fmt.name == "gridded":
        raise ValueError(
            f"{path}: a NetCDF/Zarr rain field with a time axis is an event; read it with "
            "read_radar_event"
        )
    importers = pysteps_module("io.importers")
    exceptions = pysteps_module("exceptions")
    importer = getattr(importers, fmt.importer, None)
    if importer is None:
        raise ValueError(f"{path}: pysteps has no importer {fmt.importer!r}")
    options = _importer_options(fmt, path, importer_options)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmin of all-NaN frames
            values, _, metadata = importer(str(path), **options)
    except exceptions.MissingOptionalDependency as err:
        raise ImportError(
            f"{path}: the {fmt.name} importer needs a package that is not installed "
            f"({err}); install it with: pip install 'convlstm[{EXTRA}]'"
        ) from err
    except (OSError, KeyError, ValueError, TypeError, IndexError) as err:
        raise ValueError(
            f"{path}: pysteps' {fmt.importer} cannot read it as {fmt.name} "
            f"({type(err).__name__}: {err})"
        ) from err
    rain = _to_rain_rate(np.asarray(values, dtype=np.float64), metadata, path)
    if metadata.get("yorigin") == "lower":
        rain = rain[::-1]
    when = parse_time(path.name, time_format)
    if when is None and fmt.name == "odim_hdf5":
        when = _odim_time(path)
    return RadarFrame(
        np.ascontiguousarray(rain, dtype=np.float32), when,
        _grid_of(metadata, rain.shape), str(path),
    )  # fmt: skip


def _format(format: str, path: Path) -> RadarFormat:
    if format == "auto":
        return FORMATS[detect_format(path)]
    if format.startswith("pysteps:"):
        return RadarFormat(format, format.split(":", 1)[1], {}, (), "a pysteps importer")
    if format not in FORMATS:
        raise ValueError(
            f"{path}: format must be 'auto', one of {sorted(FORMATS)} or "
            f"'pysteps:import_xxx', got {format!r}"
        )
    return FORMATS[format]


def _to_rain_rate(values: np.ndarray, metadata: dict[str, Any], path: Path) -> np.ndarray:
    unit, transform = metadata.get("unit"), metadata.get("transform")
    if unit not in ("mm/h", "mm", "dBZ"):
        raise ValueError(
            f"{path}: the importer gives values in {unit!r}; expected 'mm/h', 'mm' or 'dBZ' "
            "(choose another quantity with importer_options, e.g. qty='RATE')"
        )
    if unit == "mm/h" and transform is None:
        return values
    conversion = pysteps_module("utils.conversion")
    meta = dict(metadata)
    if unit == "mm" and not meta.get("accutime"):
        raise ValueError(f"{path}: accumulations in mm without an accumulation time (accutime)")
    meta.setdefault("zr_a", MARSHALL_PALMER[0])
    meta.setdefault("zr_b", MARSHALL_PALMER[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rain, _ = conversion.to_rainrate(values.copy(), meta)
    return rain


def _odim_time(path: Path) -> datetime | None:
    h5py = _optional("h5py", f"reading {path}")
    with h5py.File(path, "r") as handle:
        what = handle.get("what")
        if what is None or "date" not in what.attrs or "time" not in what.attrs:
            return None
        stamp = "".join(
            v.decode() if isinstance(v, bytes) else str(v)
            for v in (what.attrs["date"], what.attrs["time"])
        )
    try:
        return datetime.strptime(stamp[:14], "%Y%m%d%H%M%S")
    except ValueError:
        return None


def list_radar_files(source: str | Path, format: str = "auto") -> list[Path]:
    """The composite files of an event: a folder (searched recursively), a glob pattern or
    one file; sorted by name (time stamps in names sort in time)."""
    text = str(source)
    path = Path(source)
    if any(ch in text for ch in "*?["):
        files = [Path(p) for p in glob.glob(text, recursive=True)]
    elif path.is_dir() and not path.name.lower().endswith(".zarr"):
        files = [p for p in path.rglob("*") if p.is_file()]
        if format == "auto":
            files = [p for p in files if p.name.lower().endswith(RADAR_SUFFIXES)]
        elif format in FORMATS:
            files = [p for p in files if p.name.lower().endswith(FORMATS[format].suffixes)]
    elif path.exists():
        files = [path]
    else:
        raise FileNotFoundError(f"radar event not found: {source}")
    files = sorted(files, key=lambda p: natural_key(p.name))
    if not files:
        raise FileNotFoundError(
            f"no radar files in {source} (looked for {', '.join(RADAR_SUFFIXES)})"
        )
    return files


def read_radar_event(
    source: str | Path,
    format: str = "auto",
    *,
    name: str | None = None,
    timestep: float | None = None,
    grid_km: float | None = None,
    crop: Sequence[int] | None = None,
    threshold: float = 0.1,
    time_format: str | None = None,
    variable: str | None = None,
    units: str | None = None,
    importer_options: dict[str, Any] | None = None,
) -> RadarEvent:
    """Read an event (a folder, a glob pattern or a NetCDF/Zarr file) into mm/h.

    Args:
        source: the event's files.
        format: see :func:`read_radar_file`; ``"gridded"`` for NetCDF/Zarr fields.
        name: the event's name. Default: the folder or file name.
        timestep: minutes per frame wanted. Frames every ``timestep / k`` minutes are
            subsampled (every ``k``-th); coarser frames are an error. Default: the data's.
        grid_km: grid spacing wanted in km; the field is area-averaged (or bilinearly
            refined) from the file's spacing. Default: the file's.
        crop: ``[top, bottom, left, right]`` pixel rows and columns kept, on the grid
            after ``grid_km``. Default: all.
        threshold: rain rates below this (mm/h) become 0 (dry). Default 0.1.
        time_format: strptime format of the file names' time stamps.
        variable, units: the gridded field's variable (default: its only one) and units
            (default: its ``units`` attribute; ``mm/h``, ``mm`` with ``accutime`` in
            ``importer_options``, ``dBZ`` or ``kg m-2 s-1``).
        importer_options: passed to the pysteps importer.

    Gaps (a step longer than ``timestep``) split the event into ``segments`` with a
    warning naming the files around each gap; windows never cross them.

    Raises:
        ValueError: files on different grids, repeated or missing times, steps coarser
            than ``timestep`` (each message names the file or key).
    """
    options = dict(importer_options or {})
    files = list_radar_files(source, format)
    first_format = format if format != "auto" else detect_format(files[0])
    if first_format == "gridded":
        if len(files) != 1:
            raise ValueError(f"{source}: a gridded event is one NetCDF/Zarr file, got "
                             f"{len(files)} files")  # fmt: skip
        rain, times, grid, file_names = _read_gridded(files[0], variable, units, options)
    else:
        frames = []
        for path in files:
            frame = read_radar_file(path, format, time_format, **options)
            if frames and (what := frames[0].grid.differs_from(frame.grid)):
                raise ValueError(
                    f"{path}: its grid ({frame.grid.describe()}) differs from that of "
                    f"{frames[0].source} ({frames[0].grid.describe()}) in {what}; an event "
                    "must be on one grid: put other grids in another event"
                )
            if frame.time is None:
                raise ValueError(
                    f"{path}: no time stamp found in the file name (tried "
                    f"{time_format or ', '.join(TIME_FORMATS)}); give time_format=..."
                )
            frames.append(frame)
        frames.sort(key=lambda f: f.time)
        rain = np.stack([f.rain for f in frames])
        times, grid = [f.time for f in frames], frames[0].grid
        file_names = [f.source for f in frames]
    label = name or _event_name(source, first_format, times)
    rain, times, file_names, step, segments = _regular_steps(
        rain, times, file_names, timestep, label
    )
    rain, grid = resample_grid(rain, grid, grid_km, where=label)
    if crop is not None:
        rain, grid = _crop(rain, grid, crop, label)
    rain = np.where(rain < threshold, np.float32(0), rain).astype(np.float32)
    return RadarEvent(label, rain, times, step, grid, segments, file_names)


def _event_name(source: str | Path, format: str, times: list[datetime | None]) -> str:
    """``knmi 2010-08-26``: the network and the first day, else the file or folder name."""
    if format == "gridded" or not times or times[0] is None:
        return Path(str(source).rstrip("/")).name
    return f"{format.split('_')[0].split(':')[-1]} {times[0]:%Y-%m-%d}"


def _read_gridded(
    path: Path, variable: str | None, units: str | None, options: dict[str, Any]
) -> tuple[np.ndarray, list[datetime | None], RadarGrid, list[str]]:
    from .xarray_sequences import find_time_dim, open_gridded

    ds = open_gridded(path)
    names = list(ds.data_vars)
    if variable is None:
        if len(names) != 1:
            raise ValueError(f"{path} has variables {names}: choose one with variable=...")
        variable = names[0]
    if variable not in names:
        raise KeyError(f"{path}: no variable {variable!r}; it has {names}")
    da = ds[variable]
    tdim = find_time_dim(da, None, f"variable {variable!r} in {path}")
    others = [d for d in da.dims if d != tdim]
    if len(others) != 2:
        raise ValueError(f"variable {variable!r} in {path} has dims {da.dims}: expected "
                         "time and two spatial dims")  # fmt: skip
    da = da.transpose(tdim, *others)
    values = np.asarray(da.values, dtype=np.float64)
    unit = (units or da.attrs.get("units") or "").strip()
    key = f"variable {variable!r} in {path}"
    if unit in ("mm/h", "mm h-1", "mm hr-1", "mm/hr"):
        rain = values
    elif unit in ("kg m-2 s-1", "mm s-1", "mm/s"):
        rain = values * 3600.0
    elif unit in ("mm", "kg m-2"):
        if not options.get("accutime"):
            raise ValueError(f"{key} is in {unit}: give importer_options: {{accutime: minutes}}")
        rain = values * 60.0 / float(options["accutime"])
    elif unit == "dBZ":
        a, b = options.get("zr_a", MARSHALL_PALMER[0]), options.get("zr_b", MARSHALL_PALMER[1])
        rain = (10.0 ** (values / 10.0) / a) ** (1.0 / b)
    else:
        raise ValueError(
            f"{key} has units {unit!r}; expected mm/h, mm (with accutime), dBZ or "
            "kg m-2 s-1 (set units=... if the attribute is missing or wrong)"
        )
    times: list[datetime | None] = [None] * values.shape[0]
    if tdim in da.coords:
        coord = da[tdim].values
        if np.issubdtype(coord.dtype, np.datetime64):
            stamps = coord.astype("datetime64[s]").astype(datetime)
            times = [t if isinstance(t, datetime) else None for t in stamps]
    pixel = None
    spacing = []
    for dim in others:
        if dim in da.coords and da[dim].size > 1 and np.issubdtype(da[dim].dtype, np.number):
            step = float(abs(da[dim].values[1] - da[dim].values[0]))
            dim_unit = da[dim].attrs.get("units", "")
            scale = {"m": 1e-3, "km": 1.0}.get(dim_unit)
            spacing.append(None if scale is None else step * scale)
    if len(spacing) == 2 and None not in spacing:
        pixel = (spacing[0], spacing[1])
        if da[others[0]].values[0] < da[others[0]].values[-1]:
            rain = rain[:, ::-1]  # rows from south to north: make north up
    grid = RadarGrid(tuple(rain.shape[1:]), pixel)
    return rain.astype(np.float32), times, grid, [str(path)] * values.shape[0]


def _regular_steps(
    rain: np.ndarray,
    times: list[datetime | None],
    files: list[str],
    timestep: float | None,
    label: str,
) -> tuple[np.ndarray, list[datetime | None], list[str], float, list[tuple[int, int]]]:
    """Frames at ``timestep`` minutes, split into runs without gaps."""
    if any(t is None for t in times):
        if timestep is None:
            raise ValueError(f"event {label!r} has no times: give timestep=... (minutes)")
        return rain, times, files, float(timestep), [(0, len(rain))]
    diffs = np.array([(b - a).total_seconds() / 60 for a, b in itertools.pairwise(times)])
    if np.any(diffs <= 0):
        i = int(np.flatnonzero(diffs <= 0)[0])
        raise ValueError(
            f"event {label!r}: {files[i + 1]} repeats the time {times[i]:%Y-%m-%d %H:%M} of "
            f"{files[i]}; one file per time step"
        )
    data_step = float(np.median(diffs)) if len(diffs) else float(timestep or 0)
    step = float(timestep) if timestep is not None else data_step
    if not step > 0:
        raise ValueError(f"event {label!r}: timestep must be > 0 minutes, got {step}")
    if len(diffs) and data_step > step * 1.001:
        raise ValueError(
            f"event {label!r}: its frames are {data_step:g} minutes apart, more than "
            f"timestep={step:g}; use timestep={data_step:g} or a finer archive"
        )
    keep, segments, start, gaps = [0], [], 0, []
    for i in range(1, len(times)):
        since = (times[i] - times[keep[-1]]).total_seconds() / 60
        if abs(since - step) < 1e-6:
            keep.append(i)
        elif since > step:
            gaps.append((files[keep[-1]], files[i], since))
            segments.append((start, len(keep)))
            start = len(keep)
            keep.append(i)
    segments.append((start, len(keep)))
    if gaps:
        listed = "; ".join(f"{a} -> {b} ({m:g} min)" for a, b, m in gaps[:3])
        more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
        warnings.warn(
            f"event {label!r}: {len(gaps)} gap(s) longer than {step:g} minutes ({listed}"
            f"{more}); the event is cut there and no window crosses a gap",
            ConvLSTMWarning,
            stacklevel=3,
        )
    return rain[keep], [times[i] for i in keep], [files[i] for i in keep], step, segments


def resample_grid(
    rain: np.ndarray, grid: RadarGrid, grid_km: float | None, where: str = "the field"
) -> tuple[np.ndarray, RadarGrid]:
    """``(T, H, W)`` rain on ``grid`` to a spacing of ``grid_km``: the area average of
    the valid pixels when coarsening (NaN where none is valid), bilinear when refining."""
    if grid_km is None:
        return rain, grid
    if not grid_km > 0:
        raise ValueError(f"grid_km must be > 0 km, got {grid_km!r}")
    if grid.pixel_km is None:
        raise ValueError(
            f"{where}: the files do not give a metric pixel size, so grid_km={grid_km} "
            "cannot be applied; leave grid_km unset"
        )
    # within 1 % of a whole factor (FMI's 999.67 m pixels to 2 km): whole blocks
    factors = [grid_km / p for p in grid.pixel_km]
    factors = [round(f) if abs(f - round(f)) < 0.01 * f else f for f in factors]
    if all(abs(f - 1) < 0.02 for f in factors):
        return rain, grid
    h, w = grid.shape
    if all(f > 1 for f in factors):
        # whole blocks only: an integer factor is then exactly the block mean
        size = tuple(max(1, math.floor(n / f + 1e-6)) for n, f in zip((h, w), factors))
        rows, cols = min(h, round(size[0] * factors[0])), min(w, round(size[1] * factors[1]))
        x = torch.from_numpy(np.ascontiguousarray(rain[:, :rows, :cols]))[:, None]
        mode: dict[str, Any] = {"mode": "area"}
    else:
        size = (max(1, round(h / factors[0])), max(1, round(w / factors[1])))
        x = torch.from_numpy(np.ascontiguousarray(rain))[:, None]
        mode = {"mode": "bilinear", "align_corners": False}
    x = x.double()
    valid = torch.isfinite(x).double()
    total = F.interpolate(torch.nan_to_num(x, nan=0.0), size=size, **mode)
    weight = F.interpolate(valid, size=size, **mode)
    out = torch.where(weight > 0.5, total / weight.clamp_min(1e-12), torch.nan)
    new = replace(grid, shape=size, pixel_km=(float(grid_km), float(grid_km)))
    return out[:, 0].float().numpy(), new


def _crop(
    rain: np.ndarray, grid: RadarGrid, crop: Sequence[int], label: str
) -> tuple[np.ndarray, RadarGrid]:
    if len(crop) != 4 or not all(isinstance(c, (int, np.integer)) for c in crop):
        raise ValueError(f"crop must be [top, bottom, left, right] pixel indices, got {crop!r}")
    top, bottom, left, right = (int(c) for c in crop)
    h, w = grid.shape
    if not (0 <= top < bottom <= h and 0 <= left < right <= w):
        raise ValueError(
            f"crop {list(crop)} is outside event {label!r}'s {h} x {w} grid "
            "(after grid_km); expected 0 <= top < bottom <= H, 0 <= left < right <= W"
        )
    return rain[:, top:bottom, left:right], replace(grid, shape=(bottom - top, right - left),
                                                    corners=None)  # fmt: skip


_CACHE: OrderedDict[tuple, RadarEvent] = OrderedDict()
_CACHE_SIZE = 6


def cached_event(source: str | Path, **options: Any) -> RadarEvent:
    """:func:`read_radar_event`, remembered for the same files (by modification time) and
    options, so that the train, val and test splits of a run read each event once."""
    files = list_radar_files(source, options.get("format", "auto"))
    stamp = tuple((str(p), p.stat().st_mtime_ns) for p in files)
    key = (str(source), stamp, repr(sorted(options.items())))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    event = read_radar_event(source, **options)
    _CACHE[key] = event
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return event


@dataclass(frozen=True)
class Window:
    """Frames ``[start, start + length)`` of event ``event``."""

    event: int
    start: int


DRY_POLICIES = ("skip", "keep", "error")


@register_dataset("radar_files")
class RadarFiles(Dataset):
    """Nowcasting windows of real radar events, in (log) rain rate.

    Every event is read with :func:`read_radar_event` (mm/h on one grid at one time
    step); windows of ``input_frames + output_frames`` frames start every ``stride``
    frames inside a run without gaps and inside the event's ``portion``, so no window
    crosses an event, a gap or a portion boundary. Give each split its own ``events``
    (and ``portion``) in the config to hold events out.

    With ``patch_size`` the training split cuts a random square patch out of each window
    (at least ``min_wet_fraction`` of its pixels at or above ``wet_threshold`` when one
    of ``patch_tries`` draws finds one; otherwise the wettest draw), ``patches_per_window``
    times per epoch, and with ``augment`` turns it by a random multiple of 90 degrees and
    flips it (advection from every direction); the other splits tile the frame into
    non-overlapping patches. Without ``patch_size`` a sample is the whole frame, cut to a
    multiple of ``size_multiple`` (e.g. the model's ``patch_size``).

    Windows without any rain (every frame dry) are skipped with a warning
    (``dry_windows="skip"``), kept, or an error.

    Sample: ``(inputs, targets)`` of shapes ``(input_frames, 1, H, W)`` and
    ``(output_frames, 1, H, W)``, float32: ``log(1 + R / log_offset)`` of the rain rate
    ``R`` in mm/h with ``transform="log"`` (no data: 0 mm/h), or ``R`` itself with
    ``transform="none"``. :meth:`preprocessing` records it, so forecasts come back in mm/h.

    Args:
        events: event sources: folders, glob patterns, NetCDF/Zarr files, or mappings
            ``{path, name, format, variable, units, importer_options}``.
        split: ``"train"`` (random patches), ``"val"``, ``"test"`` or ``None``.
        input_frames, output_frames: Default 4 and 12 (+5 to +60 min at 5 minutes).
        stride: frames between window starts. Default 1.
        format: see :func:`read_radar_file`. Default ``"auto"``.
        timestep: minutes per frame. Default 5.0.
        grid_km: grid spacing in km. Default 1.0.
        crop: ``[top, bottom, left, right]`` on the resampled grid. Default: all.
        threshold: rain below this (mm/h) is dry. Default 0.1.
        transform: ``"log"`` or ``"none"``. Default ``"log"``.
        log_offset: ``a`` of ``log(1 + R / a)`` in mm/h. Default 1.0.
        portion: ``[start, stop]`` fractions of each event's frames used. Default [0, 1].
        patch_size: side of square patches in pixels, or ``None`` (whole frames).
        patches_per_window: training patches per window and epoch. Default 1.
        min_wet_fraction, wet_threshold, patch_tries: see above. Defaults 0.05, 1.0, 10.
        augment: random rotations and flips of training patches. Default False.
        size_multiple: whole frames are cut to a multiple of this. Default 1.
        dry_windows: ``"skip"``, ``"keep"`` or ``"error"``. Default ``"skip"``.
        time_format: strptime format of time stamps in file names.
        importer_options: options of the pysteps importer for every event.
        seed: Default 0.
    """

    baselines = ("persistence", "optical_flow", "sprog")
    units = "mm/h"
    fss_scales_km = (10.0, 20.0, 40.0)

    def __init__(
        self,
        events: Sequence[str | dict[str, Any]],
        split: str | None = None,
        input_frames: int = 4,
        output_frames: int = 12,
        stride: int = 1,
        format: str = "auto",
        timestep: float | None = 5.0,
        grid_km: float | None = 1.0,
        crop: Sequence[int] | None = None,
        threshold: float = 0.1,
        transform: str = "log",
        log_offset: float = 1.0,
        portion: Sequence[float] = (0.0, 1.0),
        patch_size: int | None = None,
        patches_per_window: int = 1,
        min_wet_fraction: float = 0.05,
        wet_threshold: float = 1.0,
        patch_tries: int = 10,
        augment: bool = False,
        size_multiple: int = 1,
        dry_windows: str = "skip",
        time_format: str | None = None,
        importer_options: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        if isinstance(events, (str, Path)) or not isinstance(events, Sequence) or not events:
            raise ValueError(
                f"events must be a non-empty list of folders, patterns, files or mappings "
                f"{{path: ...}}, got {events!r}"
            )
        self.split = check_choice("split", split, (None, *SPLIT_CODES))
        self.input_frames = check_int("input_frames", input_frames)
        self.output_frames = check_int("output_frames", output_frames)
        self.stride = check_int("stride", stride)
        self.transform = check_choice("transform", transform, ("log", "none"))
        self.dry_windows = check_choice("dry_windows", dry_windows, DRY_POLICIES)
        if not (isinstance(log_offset, (int, float)) and log_offset > 0):
            raise ValueError(f"log_offset must be > 0 mm/h, got {log_offset!r}")
        self.log_offset = float(log_offset)
        if len(portion) != 2 or not 0 <= portion[0] < portion[1] <= 1:
            raise ValueError(f"portion must be [start, stop] with 0 <= start < stop <= 1, "
                             f"got {portion!r}")  # fmt: skip
        self.portion = (float(portion[0]), float(portion[1]))
        self.patch_size = (
            None if patch_size is None else check_int("patch_size", patch_size, 4)
        )
        self.patches_per_window = check_int("patches_per_window", patches_per_window)
        self.patch_tries = check_int("patch_tries", patch_tries)
        self.size_multiple = check_int("size_multiple", size_multiple)
        if not 0 <= min_wet_fraction <= 1:
            raise ValueError(f"min_wet_fraction must be in [0, 1], got {min_wet_fraction!r}")
        self.min_wet_fraction, self.wet_threshold = float(min_wet_fraction), float(wet_threshold)
        self.augment, self.seed, self.epoch = bool(augment), int(seed), 0
        self.threshold = float(threshold)
        self.reader_options = {
            "format": format, "timestep": timestep, "grid_km": grid_km,
            "crop": None if crop is None else list(crop), "threshold": self.threshold,
            "time_format": time_format,
        }  # fmt: skip
        self.events: list[RadarEvent] = []
        for entry in events:
            spec = {"path": entry} if isinstance(entry, (str, Path)) else dict(entry)
            unknown = set(spec) - {"path", "name", "format", "variable", "units",
                                   "importer_options"}  # fmt: skip
            if "path" not in spec or unknown:
                raise ValueError(
                    f"events: an entry is a path or a mapping with 'path' and optionally "
                    f"name, format, variable, units, importer_options; got {entry!r}"
                )
            options = {**self.reader_options, "format": spec.get("format", format),
                       "name": spec.get("name"), "variable": spec.get("variable"),
                       "units": spec.get("units"),
                       "importer_options": {**(importer_options or {}),
                                            **(spec.get("importer_options") or {})}}  # fmt: skip
            self.events.append(cached_event(spec["path"], **options))
        self.windows = self._windows()
        if self.patch_size is not None:
            small = [e.name for e in self.events if min(e.grid.shape) < self.patch_size]
            if small:
                raise ValueError(f"patch_size={self.patch_size} is larger than the grid of "
                                 f"event(s) {small}")  # fmt: skip

    @property
    def length(self) -> int:
        """Frames per window."""
        return self.input_frames + self.output_frames

    @property
    def minutes_per_step(self) -> float:
        """Minutes between frames (lead time of forecast step ``k``: ``k`` times this)."""
        return self.events[0].timestep

    @property
    def fss_scales(self) -> list[int]:
        """Box sizes in pixels of the fractions skill score: :attr:`fss_scales_km` on the
        events' grid (pixels as km when the grid is not metric)."""
        pixel = self.events[0].grid.pixel_km
        km = pixel[0] if pixel else 1.0
        return sorted({max(1, round(scale / km)) for scale in self.fss_scales_km})

    def _windows(self) -> list[Window]:
        windows, dry = [], []
        for index, event in enumerate(self.events):
            lo = math.floor(self.portion[0] * len(event) + 1e-9)
            hi = math.floor(self.portion[1] * len(event) + 1e-9)
            for seg_start, seg_stop in event.segments:
                a, b = max(seg_start, lo), min(seg_stop, hi)
                for start in range(a, b - self.length + 1, self.stride):
                    block = event.rain[start : start + self.length]
                    if self.dry_windows != "keep" and not np.any(block >= self.threshold):
                        dry.append((event, start))
                        continue
                    windows.append(Window(index, start))
        if dry and self.dry_windows == "error":
            event, start = dry[0]
            raise ValueError(
                f"event {event.name!r}: the window from {_when(event, start)} has no rain "
                f">= {self.threshold} mm/h in any frame ({len(dry)} dry window(s)); set "
                "dry_windows='skip' to leave them out"
            )
        if dry:
            warnings.warn(
                f"{len(dry)} window(s) without rain >= {self.threshold} mm/h left out "
                f"(first: event {dry[0][0].name!r} from {_when(*dry[0])})",
                ConvLSTMWarning,
                stacklevel=3,
            )
        if not windows:
            lengths = {e.name: [b - a for a, b in e.segments] for e in self.events}
            raise ValueError(
                f"split {self.split!r}: no window of input_frames + output_frames = "
                f"{self.length} frames fits (with rain) in portion {list(self.portion)} of "
                f"the events' gap-free runs {lengths}"
            )
        return windows

    def set_epoch(self, epoch: int) -> None:
        """Training patches and augmentations are drawn per ``(seed, epoch, index)``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.patch_size is not None and self.split == "train":
            return len(self.windows) * self.patches_per_window
        if self.patch_size is not None:
            return sum(len(self._event_tiles(w.event)) for w in self.windows)
        return len(self.windows)

    def _event_tiles(self, event: int) -> list[tuple[int, int]]:
        p, (h, w) = self.patch_size, self.events[event].grid.shape
        return [(r, c) for r in range(0, h - p + 1, p) for c in range(0, w - p + 1, p)]

    def window_of(self, index: int) -> tuple[Window, tuple[int, int] | None]:
        """The window and patch corner (``None``: whole frame or a random patch) of
        sample ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        if self.patch_size is not None and self.split == "train":
            return self.windows[index // self.patches_per_window], None
        if self.patch_size is None:
            return self.windows[index], None
        for window in self.windows:
            tiles = self._event_tiles(window.event)
            if index < len(tiles):
                return window, tiles[index]
            index -= len(tiles)
        raise IndexError(index)  # unreachable: __len__ counts the same tiles

    def rain_window(self, index: int) -> np.ndarray:
        """Sample ``index`` in mm/h, ``(T_in + T_out, 1, H, W)`` (NaN: no data), before
        the transform and without augmentation."""
        return self._block(index)[0]

    def _block(self, index: int) -> tuple[np.ndarray, np.random.Generator | None]:
        window, corner = self.window_of(index)
        event = self.events[window.event]
        block = event.rain[window.start : window.start + self.length]
        rng = None
        if self.patch_size is not None and self.split == "train":
            rng = sample_rng(self.seed, SPLIT_CODES["train"], self.epoch, index)
            corner = self._draw_patch(block, rng)
        if corner is not None:
            p = self.patch_size
            block = block[:, corner[0] : corner[0] + p, corner[1] : corner[1] + p]
        else:
            m = self.size_multiple
            h, w = block.shape[1:]
            block = block[:, : h - h % m, : w - w % m]
        return block[:, None], rng

    def _draw_patch(self, block: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
        p, (h, w) = self.patch_size, block.shape[1:]
        best, best_wet = (0, 0), -1.0
        for _ in range(self.patch_tries):
            corner = (int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1)))
            patch = block[:, corner[0] : corner[0] + p, corner[1] : corner[1] + p]
            wet = float(np.mean(patch >= self.wet_threshold))
            if wet >= self.min_wet_fraction:
                return corner
            if wet > best_wet:
                best, best_wet = corner, wet
        return best

    def preprocessing(self) -> Preprocessing:
        """No data to 0 mm/h, then ``log_rain`` (with ``transform="log"``): rain rates in
        mm/h in, the model's units out; forecasts are inverted back to mm/h."""
        steps: list[dict[str, Any]] = [{"op": "fill_nan", "value": 0.0}]
        if self.transform == "log":
            steps.append({"op": "log_rain", "offset": self.log_offset})
        return Preprocessing(uint8="keep", steps=tuple(steps))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        block, rng = self._block(index)
        frames = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))
        if self.augment and rng is not None:
            k = int(rng.integers(0, 4))
            frames = torch.rot90(frames, k, dims=(-2, -1))
            if rng.random() < 0.5:
                frames = frames.flip(-1)
        frames = self.preprocessing()(frames)
        return frames[: self.input_frames].contiguous(), frames[self.input_frames :].contiguous()

    def describe(self) -> str:
        """One line per event: name, frames, grid, step and windows."""
        lines = []
        for index, event in enumerate(self.events):
            count = sum(w.event == index for w in self.windows)
            first = _when(event, 0)
            lines.append(
                f"{event.name}: {len(event)} frames from {first} every {event.timestep:g} "
                f"min, {event.grid.describe()}, {count} windows"
            )
        return "\n".join(lines)


def _when(event: RadarEvent, start: int) -> str:
    time = event.times[start] if start < len(event.times) else None
    return f"{time:%Y-%m-%d %H:%M}" if time is not None else f"frame {start}"

