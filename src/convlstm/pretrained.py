"""Pretrained models shipped with convlstm, by name.

    >>> import convlstm
    >>> convlstm.pretrained()                      # what is shipped
    ['radar-nowcaster']
    >>> nowcaster = convlstm.pretrained("radar-nowcaster")
    >>> rain = nowcaster.predict(x)                # x: (B, 4, 1, H, W) mm/h, 1 km, 5 min

``radar-nowcaster`` forecasts rain rate (mm/h) 5 to 60 minutes ahead from the last frames
of a radar composite on a 1 km grid at 5-minute steps, of any size. It runs on a coarser
grid internally (its card says which), so that advection is as many pixels per step as
in training whatever the input's network. Trained on the KNMI (credit: KNMI) and FMI
(credit: Finnish Meteorological Institute) events of CC BY 4.0 open data; see
``docs/nowcasting.md`` for how it was trained and how it scores against optical flow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.preprocessing import Preprocessing

SHIPPED = Path(__file__).resolve().parent / "pretrained_models"
CARD_FILE = "card.json"


def _shipped_names() -> list[str]:
    if not SHIPPED.is_dir():
        return []
    return sorted(p.name for p in SHIPPED.iterdir() if (p / CARD_FILE).is_file())


def pretrained(name: str | None = None) -> Any:
    """The shipped model ``name``, or with no name the sorted names of what is shipped.

    Raises:
        KeyError: ``name`` is not shipped (the message lists what is).
    """
    names = _shipped_names()
    if name is None:
        return names
    if name not in names:
        raise KeyError(f"no pretrained model {name!r}; shipped: {', '.join(names) or 'none'}")
    return load_nowcaster(SHIPPED / name)


@dataclass
class NowcasterCard:
    """What a nowcaster folder's ``card.json`` says: the input it takes, the grid it runs
    on, what it was trained on and how it scored."""

    description: str
    input_km: float
    model_km: float
    minutes_per_step: float
    trained_on: list[str]
    credits: list[str]
    extra: dict[str, Any]

    @classmethod
    def read(cls, path: Path) -> NowcasterCard:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a readable nowcaster card ({error})") from None
        required = {"description": str, "input_km": (int, float), "model_km": (int, float),
                    "minutes_per_step": (int, float)}  # fmt: skip
        for key, kind in required.items():
            if not isinstance(data.get(key), kind):
                raise ValueError(f"{path}: key {key!r} is missing or not a {kind}")
        known = {*required, "trained_on", "credits"}
        return cls(
            data["description"], float(data["input_km"]), float(data["model_km"]),
            float(data["minutes_per_step"]), list(data.get("trained_on", [])),
            list(data.get("credits", [])), {k: v for k, v in data.items() if k not in known},
        )  # fmt: skip


class Nowcaster:
    """A forecaster of rain rate: mm/h in, mm/h out, any frame size.

    Attributes:
        input_frames, output_frames: frames it reads and forecasts.
        card: the grid and time step it expects, and where it comes from.
    """

    def __init__(self, model: nn.Module, preprocessing: Preprocessing, card: NowcasterCard,
                 input_frames: int, output_frames: int, patch_size: int = 1) -> None:  # fmt: skip
        self.model = model.eval()
        self.preprocessing, self.card = preprocessing, card
        self.input_frames, self.output_frames = input_frames, output_frames
        self.patch_size = patch_size

    @property
    def minutes_per_step(self) -> float:
        return self.card.minutes_per_step

    def __repr__(self) -> str:
        c = self.card
        return (
            f"Nowcaster({self.input_frames} frames in, {self.output_frames} out, every "
            f"{c.minutes_per_step:g} min, {c.input_km:g} km in, runs at {c.model_km:g} km)"
        )

    @torch.no_grad()
    def predict(self, x: Any, grid_km: float | None = None, batch_size: int = 4) -> torch.Tensor:
        """Forecast rain rate after ``x``.

        Args:
            x: rain rate in mm/h, ``(B, input_frames, 1, H, W)`` or ``(input_frames, 1, H, W)``
                (tensor or array), at the card's time step; NaN (no data) counts as dry.
            grid_km: the grid spacing of ``x`` in km. Default: the card's ``input_km``
                (1 km for ``radar-nowcaster``). The field is area-averaged to the model's
                grid and the forecast interpolated back to ``x``'s.
            batch_size: sequences per model call.

        Returns:
            ``(B, output_frames, 1, H, W)`` float32 rain rate in mm/h, never negative.
        """
        x = torch.as_tensor(np.asarray(x, dtype=np.float32) if not torch.is_tensor(x) else x)
        if x.dim() == 4:
            x = x.unsqueeze(0)
        if x.dim() != 5 or x.shape[1] != self.input_frames or x.shape[2] != 1:
            raise ValueError(
                f"x must be rain rates (B, {self.input_frames}, 1, H, W) in mm/h, got "
                f"{tuple(x.shape)}"
            )
        grid_km = self.card.input_km if grid_km is None else float(grid_km)
        if not grid_km > 0:
            raise ValueError(f"grid_km must be > 0, got {grid_km!r}")
        x = torch.nan_to_num(x.float(), nan=0.0).clamp_min(0)
        return torch.cat([self._predict(chunk, grid_km) for chunk in x.split(batch_size)])

    def _predict(self, x: torch.Tensor, grid_km: float) -> torch.Tensor:
        b, t, c, h, w = x.shape
        factor = self.card.model_km / grid_km
        size = (max(1, round(h / factor)), max(1, round(w / factor)))
        frames = x.reshape(b * t, c, h, w)
        if size != (h, w):
            frames = F.interpolate(frames, size=size, mode="area" if factor > 1 else "bilinear")
        p = self.patch_size
        pad = (0, (-size[1]) % p, 0, (-size[0]) % p)  # dry beyond the frame
        frames = F.pad(frames, pad).reshape(b, t, c, size[0] + pad[3], size[1] + pad[1])
        out = self.preprocessing.invert(self.model(self.preprocessing(frames)))
        out = out[..., : size[0], : size[1]].reshape(-1, c, *size)
        if size != (h, w):
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        return out.reshape(b, self.output_frames, c, h, w).clamp_min(0)


def load_nowcaster(folder: str | Path) -> Nowcaster:
    """A nowcaster from a folder with ``model.safetensors``, ``model.json`` and
    ``card.json`` (see :class:`NowcasterCard`), or from a run folder trained on
    ``radar_files`` (its card made from the run's ``data.grid_km`` and ``data.timestep``)."""
    from .training.run_folder import load_model, read_spec

    folder = Path(folder)
    spec = read_spec(folder)
    if spec.task != "forecasting" or spec.output_frames is None:
        raise ValueError(f"{folder}: model.json is not a forecaster's (task {spec.task!r})")
    card_path = folder / CARD_FILE
    card = NowcasterCard.read(card_path) if card_path.is_file() else _run_card(folder)
    model = load_model(folder, spec)
    patch = int(spec.options.get("patch_size", 1))
    return Nowcaster(model, spec.preprocessing, card, spec.frames, spec.output_frames, patch)


def _run_data(folder: Path) -> dict[str, Any] | None:
    """The ``data`` section of a run folder's ``config.yaml`` (``None`` without one)."""
    import yaml

    config = folder / "config.yaml"
    if not config.is_file():
        return None
    data = (yaml.safe_load(config.read_text()) or {}).get("data", {})
    return data if isinstance(data, dict) else {}


def _run_card(folder: Path) -> NowcasterCard:
    """The card of a run folder trained on ``radar_files``: its grid and time step."""
    data = _run_data(folder)
    if data is None:
        raise FileNotFoundError(f"{folder}: neither {CARD_FILE} nor config.yaml: not a nowcaster")
    if data.get("name") != "radar_files":
        config = folder / "config.yaml"
        raise ValueError(
            f"{config}: data.name is {data.get('name')!r}; a nowcaster is trained on radar_files "
            f"(or give it a {CARD_FILE})"
        )
    options = {**data.get("options", {}), **data}
    km = float(options.get("grid_km") or 1.0)
    return NowcasterCard(f"run {folder.name}", km, km, float(options.get("timestep") or 5.0),
                         [], [], {})  # fmt: skip


def forecast_times(last: datetime | None, steps: int, minutes: float) -> list[datetime | None]:
    """Valid times of forecast steps 1 .. ``steps`` after ``last``."""
    if last is None:
        return [None] * steps
    return [last + timedelta(minutes=minutes * (k + 1)) for k in range(steps)]


def nowcast_folder(
    nowcaster: str | Nowcaster,
    source: str | Path,
    output: str | Path,
    format: str = "auto",
    **reader_options: Any,
) -> Nowcast:
    """Forecast from the last frames of a radar event (a folder of composites, a pattern or
    a NetCDF/Zarr file) and write ``forecast.nc`` (rain rate in mm/h with time, y and x
    coordinates in km) and ``forecast.gif`` (inputs, then the forecast) into ``output``.

    ``reader_options`` go to :func:`convlstm.data.radar_files.read_radar_event` (its
    grid and time step default to the nowcaster's card). Returns what was forecast and
    the paths written (:class:`Nowcast`).
    """
    from .data._utils import optional_import
    from .data.radar_files import read_radar_event
    from .reports import write_forecast_animation

    if isinstance(nowcaster, str):
        nowcaster = pretrained(nowcaster)
    card = nowcaster.card
    reader_options.setdefault("grid_km", card.input_km)
    reader_options.setdefault("timestep", card.minutes_per_step)
    event = read_radar_event(source, format, **reader_options)
    start, stop = event.segments[-1]
    if stop - start < nowcaster.input_frames:
        raise ValueError(
            f"{source}: the last gap-free run has {stop - start} frames; the nowcaster needs "
            f"{nowcaster.input_frames} consecutive frames {card.minutes_per_step:g} min apart"
        )
    rain = event.rain[stop - nowcaster.input_frames : stop]
    forecast = nowcaster.predict(rain[:, None], grid_km=event.grid.pixel_km[0]
                                 if event.grid.pixel_km else None)[0, :, 0].numpy()  # fmt: skip
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    xr = optional_import("xarray", "data", "writing the forecast as NetCDF")
    times = forecast_times(event.times[stop - 1], nowcaster.output_frames, card.minutes_per_step)
    km = event.grid.pixel_km or (1.0, 1.0)
    coords: dict[str, Any] = {
        "y": ("y", np.arange(forecast.shape[1]) * km[0], {"units": "km", "axis": "Y",
                                                          "long_name": "rows, north up"}),
        "x": ("x", np.arange(forecast.shape[2]) * km[1], {"units": "km", "axis": "X"}),
        "lead_time": ("time", [(k + 1) * card.minutes_per_step
                               for k in range(nowcaster.output_frames)], {"units": "min"}),
    }  # fmt: skip
    if times[0] is not None:
        coords["time"] = ("time", np.array(times, dtype="datetime64[ns]"))
    dataset = xr.Dataset(
        {"rain_rate": (("time", "y", "x"), forecast.astype(np.float32),
                       {"units": "mm/h", "long_name": "forecast rain rate"})},
        coords=coords,
        attrs={"source": f"convlstm nowcaster: {card.description}",
               "inputs": ", ".join(Path(f).name for f in event.files[stop - nowcaster.input_frames
                                                                      : stop]),
               "projection": event.grid.projection or ""},
    )  # fmt: skip
    inputs = [Path(f) for f in event.files[stop - nowcaster.input_frames : stop]]
    result = Nowcast(forecast, times, inputs, card.minutes_per_step, output / "forecast.nc",
                     output / "forecast.gif")  # fmt: skip
    _write_compressed_netcdf(dataset, result.netcdf)
    write_forecast_animation(result.animation, np.nan_to_num(rain)[:, None], None,
                             forecast[:, None], cmap="viridis")  # fmt: skip
    return result


def _write_compressed_netcdf(dataset: Any, path: Path) -> None:
    """Write an xarray ``dataset`` as NetCDF-4 with zlib compression of its variables (an
    hour of forecasts over a national composite is mostly dry: tens of MB uncompressed).
    Only the NetCDF-4 engines compress; with neither netCDF4 nor h5netcdf installed the
    file is written uncompressed (NetCDF-3) by xarray's default engine."""
    import importlib.util

    engine = next((e for e, module in (("netcdf4", "netCDF4"), ("h5netcdf", "h5netcdf"))
                   if importlib.util.find_spec(module)), None)  # fmt: skip
    if engine is None:
        dataset.to_netcdf(path)
        return
    encoding = {name: {"zlib": True, "complevel": 4, "shuffle": True}
                for name in dataset.data_vars}  # fmt: skip
    dataset.to_netcdf(path, engine=engine, encoding=encoding)


@dataclass
class Nowcast:
    """What :func:`nowcast_folder` forecast and wrote.

    Attributes:
        rain: ``(output_frames, H, W)`` forecast rain rate in mm/h.
        times: valid time of each forecast frame (``None`` where the inputs had none).
        inputs: the files the forecast started from, oldest first.
        minutes_per_step: minutes between forecast frames.
        netcdf, animation: the files written.
    """

    rain: np.ndarray
    times: list[datetime | None]
    inputs: list[Path]
    minutes_per_step: float
    netcdf: Path
    animation: Path

    def summary(self) -> list[str]:
        """One line per lead time: valid time, wet area and largest rate."""
        lines = []
        for k, (frame, time) in enumerate(zip(self.rain, self.times)):
            when = f" ({time:%Y-%m-%d %H:%M})" if time is not None else ""
            wet = 100 * float((frame >= 1.0).mean())
            lead = (k + 1) * self.minutes_per_step
            lines.append(f"+{lead:g} min{when}: {wet:.1f} % of the area at 1 mm/h or more, "
                         f"up to {float(frame.max()):.1f} mm/h")  # fmt: skip
        return lines


def nowcaster_of(target: str | Path) -> Nowcaster | None:
    """The nowcaster that ``target`` names (a shipped model's name, a folder with a
    ``card.json``, or a run folder trained on ``radar_files``), or ``None`` if it names
    something else (such as a classifier's run folder)."""
    if str(target) in _shipped_names():
        return pretrained(str(target))
    folder = Path(target)
    if (folder / CARD_FILE).is_file():
        return load_nowcaster(folder)
    data = _run_data(folder)
    return load_nowcaster(folder) if data and data.get("name") == "radar_files" else None


__all__ = ["Nowcast", "Nowcaster", "NowcasterCard", "load_nowcaster", "nowcast_folder",
           "nowcaster_of", "pretrained"]

