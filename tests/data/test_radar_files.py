"""Radar composites through pysteps' importers: files the tests write, and a few frames of
the shared events (skipped where ../shared is absent)."""

from __future__ import annotations

import math

import pytest
import torch

from convlstm.data.preprocessing import Preprocessing

LOG_RAIN = {"op": "log_rain", "offset": 1.0}


def test_log_rain_step_round_trips_rain_rates():
    pre = Preprocessing(uint8="keep", steps=(LOG_RAIN,))
    rain = torch.tensor([0.0, 0.1, 0.5, 1.0, 5.0, 10.0, 100.0]).view(1, 7, 1, 1, 1)
    y = pre(rain)
    torch.testing.assert_close(y, torch.log1p(rain))
    assert y[0, 0].item() == 0.0  # dry stays 0, which is also what zero padding adds
    torch.testing.assert_close(pre.invert(y), rain, rtol=1e-5, atol=1e-6)
    # A forecast below the dry value is no rain, never negative rain.
    assert pre.invert(torch.full((1, 1, 1), -0.3)).item() == 0.0


def test_log_rain_step_is_stored_traced_and_checked():
    pre = Preprocessing(uint8="keep", steps=({"op": "log_rain", "offset": 0.5},))
    assert Preprocessing.from_dict(pre.to_dict()) == pre

    class RoundTrip(torch.nn.Module):
        def forward(self, x):
            return pre.invert(pre(x))

    exported = torch.export.export(RoundTrip(), (torch.rand(1, 3, 1, 1, 1),)).module()
    x = torch.tensor([0.0, 2.0, 30.0]).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(exported(x), x, rtol=1e-5, atol=1e-6)
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match=r"log_rain.*offset"):
            Preprocessing(steps=({"op": "log_rain", "offset": bad},))


# --- files the tests write -------------------------------------------------------------

pysteps = pytest.importorskip("pysteps", reason="the radar readers need convlstm[radar]")

import gzip  # noqa: E402
import warnings  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from convlstm.data import radar_files  # noqa: E402
from convlstm.data.radar_files import (  # noqa: E402
    RadarFiles,
    detect_format,
    parse_time,
    read_radar_event,
    read_radar_file,
)

START = datetime(2010, 8, 26, 0, 0)
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "radar"


def knmi_file(folder: Path, when: datetime, mm: np.ndarray, pixel_km: float = 1.0) -> Path:
    """A KNMI RAD_NL25_RAP_5min HDF5 file: accumulations in 0.01 mm, 65535 no data."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"RAD_NL25_RAP_5min_{when:%Y%m%d%H%M}.h5"
    rows, cols = mm.shape
    raw = np.where(np.isnan(mm), 65535, np.round(np.nan_to_num(mm) * 100)).astype(np.uint16)
    with h5py.File(path, "w") as f:
        f.create_group("image1").create_dataset("image_data", data=raw)
        geo = f.create_group("geographic")
        for key, value in {
            "geo_column_offset": 0.0, "geo_row_offset": 3650.0, "geo_pixel_size_x": pixel_km,
            "geo_pixel_size_y": -pixel_km, "geo_number_columns": cols, "geo_number_rows": rows,
        }.items():  # fmt: skip
            geo.attrs[key] = np.array([value], dtype=np.float32)
        geo.attrs["geo_dim_pixel"] = np.bytes_(b"KM,KM")
        geo.create_group("map_projection").attrs["projection_proj4_params"] = np.bytes_(
            b"+proj=stere +lat_0=90 +lon_0=0.0 +lat_ts=60.0 +a=6378.137 +b=6356.752 +x_0=0 +y_0=0"
        )
    return path


def fmi_file(folder: Path, when: datetime, dbz: np.ndarray) -> Path:
    """A gzipped FMI PGM composite: dBZ = (value - 64) / 2, 255 no data."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{when:%Y%m%d%H%M}_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"
    raw = np.where(np.isnan(dbz), 255, np.round(np.nan_to_num(dbz) * 2 + 64)).astype(np.uint8)
    header = "\n".join([
        "P5", "# projection_name SUOMI1", f"# obstime {when:%Y%m%d%H%M}",
        "# metersperpixel_x 999.674053", "# metersperpixel_y 999.62859",
        "# projection radar {", "# type stereographic", "# centrallongitude 25",
        "# centrallatitude 90", "# truelatitude 60", "# bottomleft 18.600000 57.930000",
        "# topright 34.903000 69.005000", "# }", f"{raw.shape[1]} {raw.shape[0]}", "255", "",
    ])  # fmt: skip
    with gzip.open(path, "wb") as f:
        f.write(header.encode() + raw.tobytes())
    return path


def odim_file(folder: Path, when: datetime, rate: np.ndarray) -> Path:
    """An ODIM HDF5 composite of RATE (mm/h) = 0.01 * value, 65535 no data, 0 undetect."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"composite_{when:%Y%m%d%H%M}.h5"
    raw = np.where(np.isnan(rate), 65535, np.round(np.nan_to_num(rate) * 100)).astype(np.uint16)
    with h5py.File(path, "w") as f:
        what = f.create_group("what")
        what.attrs["date"], what.attrs["time"] = np.bytes_(f"{when:%Y%m%d}"), np.bytes_(
            f"{when:%H%M%S}"
        )
        where = f.create_group("where")
        where.attrs["projdef"] = np.bytes_(b"+proj=laea +lat_0=55 +lon_0=10 +ellps=WGS84")
        for key, value in {"LL_lat": 54.0, "LL_lon": 9.0, "UR_lat": 54.2, "UR_lon": 9.3,
                           "xscale": 2000.0, "yscale": 2000.0}.items():  # fmt: skip
            where.attrs[key] = value
        data = f.create_group("dataset1").create_group("data1")
        data.create_dataset("data", data=raw)
        dwhat = data.create_group("what")
        dwhat.attrs["quantity"] = np.bytes_(b"RATE")
        for key, value in {"gain": 0.01, "offset": 0.0, "nodata": 65535.0,
                           "undetect": 0.0}.items():  # fmt: skip
            dwhat.attrs[key] = value
    return path


def wet_field(t: int, shape=(24, 20), speed: int = 1) -> np.ndarray:
    """A 6x6 block of 3 mm/h moving ``speed`` pixels to the right per frame."""
    field = np.zeros(shape)
    field[8:14, 2 + speed * t : 8 + speed * t] = 3.0
    return field


def test_time_stamps_in_file_names():
    assert parse_time("RAD_NL25_RAP_5min_201008260005.h5") == datetime(2010, 8, 26, 0, 5)
    assert parse_time("201609281445_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz") == datetime(
        2016, 9, 28, 14, 45
    )
    assert parse_time("310_20180501_000600.prcp-c10.nc") == datetime(2018, 5, 1, 0, 6)
    assert parse_time("AQC161932100V_00005.801.gif") == datetime(2016, 7, 11, 21, 0)
    assert parse_time("T_PAAH21_C_EUOC_20170523083000.hdf") == datetime(2017, 5, 23, 8, 30)
    assert parse_time("radar-26.08.2010-0005.h5", "%d.%m.%Y-%H%M") == datetime(2010, 8, 26, 0, 5)
    assert parse_time("no_time_here_1234.h5") is None


def test_knmi_accumulations_become_rain_rates(tmp_path):
    mm = wet_field(0) / 12  # 3 mm/h is 0.25 mm in 5 minutes
    mm[0, 0], mm[0, 1], mm[1, 0] = np.nan, 0.01, 0.5  # no data, 0.12 mm/h, 6 mm/h
    path = knmi_file(tmp_path, START, mm)
    assert detect_format(path) == "knmi_hdf5"
    frame = read_radar_file(path)
    assert frame.time == START and frame.grid.pixel_km == (1.0, 1.0)
    assert frame.rain.dtype == np.float32 and frame.rain.shape == (24, 20)
    assert np.isnan(frame.rain[0, 0])
    np.testing.assert_allclose(frame.rain[[0, 1, 10], [1, 0, 4]], [0.12, 6.0, 3.0], rtol=1e-5)


def test_fmi_reflectivity_becomes_rain_rate_by_its_z_r_relation(tmp_path):
    dbz = np.full((12, 10), -32.0)
    dbz[3, 4], dbz[5, 5], dbz[0, 0] = 30.0, 45.0, np.nan
    path = fmi_file(tmp_path, START, dbz)
    assert detect_format(path) == "fmi_pgm"
    frame = read_radar_file(path)
    # FMI: Z = 223 R^1.53
    expected = [(10 ** (v / 10) / 223) ** (1 / 1.53) for v in (30.0, 45.0)]
    np.testing.assert_allclose(frame.rain[[3, 5], [4, 5]], expected, rtol=1e-4)
    assert np.isnan(frame.rain[0, 0]) and frame.rain[1, 1] < 0.01
    assert frame.time == START and frame.grid.pixel_km == pytest.approx((0.9996, 0.9997), 1e-3)


def test_odim_rain_rates_and_time_from_the_file(tmp_path):
    pytest.importorskip("pyproj")
    rate = wet_field(0, (10, 12))
    rate[0, 0] = np.nan
    path = odim_file(tmp_path, START, rate)
    assert detect_format(path) == "odim_hdf5"
    frame = read_radar_file(path)
    np.testing.assert_allclose(frame.rain[8:10, 4], [3.0, 3.0], rtol=1e-6)
    assert np.isnan(frame.rain[0, 0]) and frame.rain[1, 1] == 0.0
    assert frame.grid.pixel_km == (2.0, 2.0)
    renamed = path.rename(path.with_name("composite.h5"))  # no time in the name: from /what
    assert read_radar_file(renamed).time == START


def test_meteoswiss_gif_digital_numbers_become_rain_rates(tmp_path):
    from PIL import Image

    raw = np.zeros((8, 8), dtype=np.uint8)
    raw[2, 3], raw[4, 4], raw[0, 0] = 100, 150, 255
    path = tmp_path / "AQC161932100V_00005.801.gif"
    image = Image.fromarray(raw, mode="P")  # MeteoSwiss GIFs: palette index = digital number
    image.putpalette([v for i in range(256) for v in (i, i, i)])
    image.save(path, optimize=False)
    assert detect_format(path) == "mch_gif"
    frame = read_radar_file(path)
    # AQC: mm in 5 minutes = (10^((DN - 71.5) / 20) / 316)^(1 / 1.5)
    expected = [12 * (10 ** ((dn - 71.5) / 20) / 316) ** (1 / 1.5) for dn in (100, 150)]
    np.testing.assert_allclose(frame.rain[[2, 4], [3, 4]], expected, rtol=1e-4)
    assert np.isnan(frame.rain[0, 0]) and frame.time == datetime(2016, 7, 11, 21, 0)


def test_bom_rainfields_accumulations_per_6_minutes(tmp_path):
    netCDF4 = pytest.importorskip("netCDF4")
    path = tmp_path / "310_20180501_000600.prcp-c10.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("y", 6)
        nc.createDimension("x", 5)
        x = nc.createVariable("x", "f8", ("x",))
        y = nc.createVariable("y", "f8", ("y",))
        x.units = y.units = "km"
        x[:], y[:] = np.arange(5) * 1.0, np.arange(6)[::-1] * 1.0
        proj = nc.createVariable("proj", "i4")
        proj.grid_mapping_name = "albers_conical_equal_area"
        proj.longitude_of_central_meridian = 144.75
        proj.latitude_of_projection_origin = -37.85
        proj.standard_parallel = [-18.0, -36.0]
        for name, minutes in (("valid_time", 6), ("start_time", 0)):
            var = nc.createVariable(name, "i8")
            var.units = "minutes since 2018-05-01 00:00:00"
            var.assignValue(minutes)
        precip = nc.createVariable("precipitation", "f4", ("y", "x"), fill_value=-1.0)
        precip.units = "mm"
        values = np.zeros((6, 5), dtype=np.float32)
        values[2, 3] = 0.5
        precip[:] = values
    assert detect_format(path) == "bom_rf3"
    frame = read_radar_file(path)
    assert frame.rain[2, 3] == pytest.approx(5.0)  # 0.5 mm in 6 minutes
    assert frame.time == datetime(2018, 5, 1, 0, 6) and frame.grid.pixel_km == (1.0, 1.0)


def test_gridded_netcdf_event_through_xarray(tmp_path):
    xr = pytest.importorskip("xarray")
    times = [START + timedelta(minutes=5 * t) for t in range(6)]
    rain = np.stack([wet_field(t) for t in range(6)]).astype(np.float32)
    ds = xr.Dataset(
        {"rr": (("time", "y", "x"), rain[:, ::-1], {"units": "mm h-1"})},
        coords={"time": times, "y": ("y", np.arange(24) * 1000.0, {"units": "m"}),
                "x": ("x", np.arange(20) * 1000.0, {"units": "m"})},
    )  # fmt: skip
    path = tmp_path / "event.nc"
    ds.to_netcdf(path)
    assert detect_format(path) == "gridded"
    event = read_radar_event(path, grid_km=2.0)
    assert event.times == times and event.timestep == 5.0
    # rows were south to north in the file: north up again, then 2 km block means
    np.testing.assert_allclose(event.rain[0], rain[0].reshape(12, 2, 10, 2).mean((1, 3)))
    ds["rr"].attrs["units"] = "furlongs"
    ds.to_netcdf(tmp_path / "bad.nc")
    with pytest.raises(ValueError, match=r"bad\.nc.*units 'furlongs'.*mm/h"):
        read_radar_event(tmp_path / "bad.nc")


def test_event_resampled_to_a_coarser_grid_keeps_no_data_apart(tmp_path):
    mm = np.full((4, 4), 0.25)  # 3 mm/h
    mm[0, 0] = np.nan
    mm[2:, 2:] = np.nan
    for t in range(3):
        knmi_file(tmp_path, START + timedelta(minutes=5 * t), mm)
    event = read_radar_event(tmp_path, grid_km=2.0)
    assert event.rain.shape == (3, 2, 2) and event.grid.pixel_km == (2.0, 2.0)
    np.testing.assert_allclose(event.rain[0, :, :], [[3.0, 3.0], [3.0, np.nan]])
    assert event.segments == [(0, 3)] and event.name == "knmi 2010-08-26"


def test_threshold_dries_light_rain(tmp_path):
    mm = np.full((4, 4), 0.01)  # 0.12 mm/h
    mm[1, 1] = 0.25
    for t in range(2):
        knmi_file(tmp_path, START + timedelta(minutes=5 * t), mm)
    event = read_radar_event(tmp_path, threshold=0.2)
    assert float(event.rain[0].sum()) == pytest.approx(3.0)
    assert float(read_radar_event(tmp_path, threshold=0.0).rain[0, 0, 0]) == pytest.approx(0.12)


def test_a_gap_splits_the_event_and_no_window_crosses_it(tmp_path):
    for t in [*range(0, 7), *range(9, 16)]:  # 10:35 and 10:40 missing
        knmi_file(tmp_path, START + timedelta(minutes=5 * t), wet_field(t) / 12)
    with pytest.warns(UserWarning, match=r"1 gap.*201008260030\.h5 -> .*201008260045\.h5 \(15 min"):
        event = read_radar_event(tmp_path)
    assert event.segments == [(0, 7), (7, 14)]
    with pytest.warns(UserWarning, match="1 gap"):
        ds = RadarFiles([str(tmp_path)], split="test", input_frames=2, output_frames=3)
    # 7 frames per segment: 3 windows of 5 frames in each, none from frames 5-9
    assert [w.start for w in ds.windows] == [0, 1, 2, 7, 8, 9]
    for index in range(len(ds)):
        x, y = ds[index]
        assert x.shape == (2, 1, 24, 20) and y.shape == (3, 1, 24, 20)


def test_finer_steps_are_subsampled_and_coarser_ones_refused(tmp_path):
    for t in range(9):
        knmi_file(tmp_path, START + timedelta(minutes=2.5 * t), wet_field(t) / 12)
    event = read_radar_event(tmp_path, timestep=5.0)
    assert len(event) == 5 and event.times[1] - event.times[0] == timedelta(minutes=5)
    np.testing.assert_allclose(event.rain[1], wet_field(2), rtol=1e-5)
    with pytest.raises(ValueError, match=r"2\.5 minutes apart.*timestep=1"):
        read_radar_event(tmp_path, timestep=1.0)


def test_repeated_times_and_missing_time_stamps_are_named(tmp_path):
    knmi_file(tmp_path / "a", START, wet_field(0) / 12)
    twin = knmi_file(tmp_path / "a" / "sub", START, wet_field(0) / 12)
    with pytest.raises(ValueError, match=rf"{twin.name} repeats the time 2010-08-26 00:00"):
        read_radar_event(tmp_path / "a")
    stamp_less = knmi_file(tmp_path / "b", START, wet_field(0) / 12)
    stamp_less.rename(tmp_path / "b" / "radar.h5")
    with pytest.raises(ValueError, match=r"radar\.h5: no time stamp.*time_format"):
        read_radar_event(tmp_path / "b")


def test_mixed_grids_in_one_event_are_refused(tmp_path):
    knmi_file(tmp_path, START, wet_field(0) / 12)
    odd = knmi_file(tmp_path, START + timedelta(minutes=5), wet_field(1, (20, 20)) / 12)
    with pytest.raises(ValueError, match=rf"{odd.name}: its grid \(20 x 20 .*differs.*in shape"):
        read_radar_event(tmp_path)
    odd.unlink()
    odd = knmi_file(tmp_path, START + timedelta(minutes=5), wet_field(1) / 12, pixel_km=2.0)
    with pytest.raises(ValueError, match=rf"{odd.name}.*in pixel size"):
        read_radar_event(tmp_path)


def test_unknown_files_and_missing_importer_packages_are_named(tmp_path, monkeypatch):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt: unknown radar file type"):
        read_radar_file(bad)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_group("stuff")
    with pytest.raises(ValueError, match=r"other\.h5: HDF5 file with groups \['stuff'\]"):
        read_radar_file(tmp_path / "other.h5")
    path = fmi_file(tmp_path, START, np.zeros((4, 4)))
    importers = radar_files.pysteps_module("io.importers")
    monkeypatch.setattr(importers, "PYPROJ_IMPORTED", False)
    message = r"pgm\.gz: the fmi_pgm importer.*pyproj.*convlstm\[radar\]"
    with pytest.raises(ImportError, match=message):
        read_radar_file(path)


def test_without_pysteps_the_error_names_the_extra(tmp_path, monkeypatch):
    path = knmi_file(tmp_path, START, wet_field(0) / 12)
    real_import = radar_files.importlib.import_module

    def no_pysteps(name, *args):
        if name.startswith("pysteps"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args)

    monkeypatch.setattr(radar_files.importlib, "import_module", no_pysteps)
    message = r"needs the optional package 'pysteps'.*convlstm\[radar\]"
    with pytest.raises(ImportError, match=message):
        read_radar_file(path)


def _event(folder: Path, frames: int, field=wet_field, start: datetime = START) -> Path:
    for t in range(frames):
        knmi_file(folder, start + timedelta(minutes=5 * t), field(t) / 12)
    return folder


def test_windows_never_cross_events_or_portions(tmp_path):
    a = _event(tmp_path / "a", 10)
    b = _event(tmp_path / "b", 8, start=START + timedelta(days=1))
    ds = RadarFiles([str(a), str(b)], input_frames=2, output_frames=2)
    assert [(w.event, w.start) for w in ds.windows] == [(0, s) for s in range(7)] + [
        (1, s) for s in range(5)
    ]
    early = RadarFiles([str(a)], input_frames=2, output_frames=2, portion=[0, 0.6])
    late = RadarFiles([str(a)], input_frames=2, output_frames=2, portion=[0.6, 1])
    assert [w.start for w in early.windows] == [0, 1, 2]  # frames 0-5
    assert [w.start for w in late.windows] == [6]  # frames 6-9
    with pytest.raises(ValueError, match=r"no window of input_frames \+ output_frames = 8"):
        RadarFiles([str(a)], input_frames=4, output_frames=4, portion=[0.6, 1])


def test_samples_are_log_rain_that_preprocessing_inverts(tmp_path):
    ds = RadarFiles([str(_event(tmp_path, 6))], input_frames=2, output_frames=3, stride=2)
    x, y = ds[0]
    assert x.dtype == torch.float32 and len(ds) == 1
    rain = torch.from_numpy(ds.rain_window(0))
    torch.testing.assert_close(torch.cat([x, y]), torch.log1p(rain))
    torch.testing.assert_close(ds.preprocessing().invert(y), rain[2:], rtol=1e-5, atol=1e-5)
    linear = RadarFiles([str(tmp_path)], input_frames=2, output_frames=3, transform="none")
    torch.testing.assert_close(linear[0][1], rain[2:])


def test_all_dry_windows_are_skipped_with_a_warning_or_refused(tmp_path):
    def rain_late(t):  # dry until frame 6
        return wet_field(t) if t >= 6 else np.zeros((24, 20))

    folder = _event(tmp_path, 10, rain_late)
    with pytest.warns(UserWarning, match=r"3 window\(s\) without rain >= 0\.1 mm/h.*00:00"):
        ds = RadarFiles([str(folder)], input_frames=2, output_frames=2)
    assert [w.start for w in ds.windows] == [3, 4, 5, 6]
    with pytest.raises(ValueError, match=r"window from 2010-08-26 00:00 has no rain"):
        RadarFiles([str(folder)], input_frames=2, output_frames=2, dry_windows="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = RadarFiles([str(folder)], input_frames=2, output_frames=2, dry_windows="keep")
    assert len(kept) == 7


def test_random_training_patches_prefer_rain_and_follow_the_epoch(tmp_path):
    folder = _event(tmp_path, 6)
    ds = RadarFiles([str(folder)], split="train", input_frames=2, output_frames=2,
                    patch_size=8, patches_per_window=3, min_wet_fraction=0.2)  # fmt: skip
    assert len(ds) == 3 * 3
    for index in range(len(ds)):
        x, y = ds[index]
        assert x.shape == (2, 1, 8, 8)
        assert float((torch.expm1(torch.cat([x, y])) >= 1).float().mean()) >= 0.2
    first = [ds[i][0] for i in range(len(ds))]
    assert all(torch.equal(a, ds[i][0]) for i, a in enumerate(first))  # same epoch, same draw
    ds.set_epoch(1)
    assert not all(torch.equal(a, ds[i][0]) for i, a in enumerate(first))


def test_augmentation_turns_inputs_and_targets_alike(tmp_path):
    folder = _event(tmp_path, 6)
    options = dict(split="train", input_frames=2, output_frames=2, patch_size=12,
                   min_wet_fraction=0.0, seed=3)  # fmt: skip
    plain = RadarFiles([str(folder)], **options)
    turned = RadarFiles([str(folder)], augment=True, **options)
    for index in range(len(plain)):
        a = torch.cat(plain[index])
        b = torch.cat(turned[index])
        candidates = [torch.rot90(a, k, dims=(-2, -1)) for k in range(4)]
        candidates += [c.flip(-1) for c in candidates]
        assert any(torch.equal(b, c) for c in candidates)


def test_evaluation_splits_tile_whole_frames(tmp_path):
    folder = _event(tmp_path, 5)
    tiles = RadarFiles([str(folder)], split="test", input_frames=2, output_frames=2,
                       patch_size=8)  # fmt: skip
    assert len(tiles) == 2 * (3 * 2)  # 2 windows x (24 // 8) x (20 // 8) tiles
    window, corner = tiles.window_of(7)
    assert (window.start, corner) == (1, (0, 8))
    whole = RadarFiles([str(folder)], split="test", input_frames=2, output_frames=2,
                       size_multiple=8)  # fmt: skip
    assert whole[0][0].shape == (2, 1, 24, 16)


def test_bad_options_name_the_key(tmp_path):
    folder = str(_event(tmp_path, 5))
    frames = {"input_frames": 2, "output_frames": 2}
    for options, message in [
        ({"events": folder}, "events must be a non-empty list"),
        ({"events": [{"file": folder}]}, "an entry is a path or a mapping with 'path'"),
        ({"events": [folder], "portion": [0.5, 0.2]}, "portion must be"),
        ({"events": [folder], "transform": "sqrt"}, "transform must be one of"),
        ({"events": [folder], "patch_size": 64}, "patch_size=64 is larger than the grid"),
        ({"events": [folder], "crop": [0, 30, 0, 10]}, r"crop \[0, 30, 0, 10\] is outside"),
        ({"events": [str(tmp_path / "nowhere")]}, "radar event not found"),
    ]:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            RadarFiles(**frames, **options)


# --- the shared events (../shared/data/radar) -------------------------------------------

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the shared radar events are not at {SHARED}"
)


@needs_shared
@pytest.mark.parametrize(
    ("folder", "shape", "first"),
    [("knmi/2010/08", (765, 700), datetime(2010, 8, 26, 0, 0)),
     ("fmi/20160928", (1226, 760), datetime(2016, 9, 28, 14, 45))],
)  # fmt: skip
def test_a_few_frames_of_the_shared_events(tmp_path, folder, shape, first):
    files = sorted((SHARED / folder).iterdir())[10:13]
    for f in files:
        (tmp_path / f.name).symlink_to(f)
    event = read_radar_event(tmp_path)
    assert event.rain.shape == (3, *shape) and event.timestep == 5.0
    assert event.times[0] == first + timedelta(minutes=50)
    assert event.grid.pixel_km == pytest.approx((1.0, 1.0), abs=1e-3)
    wet = event.rain[np.isfinite(event.rain)]
    # rain rates of a rain event: some rain, nothing absurd
    assert 0.01 < float(np.mean(wet >= 0.1)) < 0.9 and 5 < float(wet.max()) < 300
    coarse = read_radar_event(tmp_path, grid_km=2.0)
    assert coarse.rain.shape == (3, shape[0] // 2, shape[1] // 2)
