"""Climate-model calendars (360-day, no-leap) are read through cftime and windowed like
any other time axis; the time dimension is never guessed from an unrelated dimension."""

import sys

import numpy as np
import pytest

from convlstm.data import XarraySequences
from convlstm.data.xarray_sequences import open_gridded

xr = pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")

MONTH_DAYS = {
    "360_day": [30] * 12,
    "noleap": [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31],
}


def _daily_year(tmp_path, calendar, time_name="time"):
    """One model year of daily fields whose value is the day's number, and their path."""
    pytest.importorskip("cftime")
    days = sum(MONTH_DAYS[calendar])
    times = xr.date_range("2001-01-01", periods=days, freq="D", calendar=calendar, use_cftime=True)
    values = np.broadcast_to(np.arange(days, dtype=np.float32)[:, None, None], (days, 3, 4))
    ds = xr.Dataset(
        {"tas": ((time_name, "lat", "lon"), values.copy())},
        coords={time_name: times, "lat": [10.0, 20.0, 30.0], "lon": np.arange(4.0)},
    )
    path = tmp_path / f"tas_{calendar}.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    return path, days


@pytest.mark.parametrize("calendar", list(MONTH_DAYS))
def test_model_calendars_are_windowed_split_and_resampled(tmp_path, calendar):
    path, days = _daily_year(tmp_path, calendar)
    daily = XarraySequences(str(path), "tas", input_frames=3, output_frames=2, stride=5)
    assert len(daily) == len(range(0, days - 4, 5))
    inputs, targets = daily[2]
    assert inputs[:, 0, 0, 0].tolist() == [10, 11, 12] and targets[:, 0, 0, 0].tolist() == [13, 14]
    assert daily.times[0].calendar == calendar and daily.times[-1].dayofyr == days

    monthly = XarraySequences(
        str(path), "tas", 2, 1, resample="MS", split="val", split_fractions=[0.5, 0.25, 0.25]
    )
    ends = np.cumsum(MONTH_DAYS[calendar])
    means = [(end - n + end - 1) / 2 for n, end in zip(MONTH_DAYS[calendar], ends)]
    assert len(monthly) == 1  # months 6, 7, 8 of 12: one window of 3
    inputs, targets = monthly[0]
    np.testing.assert_allclose(inputs[:, 0, 1, 2].numpy(), means[6:8])
    np.testing.assert_allclose(targets[:, 0, 1, 2].numpy(), means[8:9])
    assert [t.month for t in monthly.times[6:9]] == [7, 8, 9]


def test_cftime_time_axis_is_found_whatever_its_name(tmp_path):
    path, days = _daily_year(tmp_path, "360_day", time_name="model_day")
    seq = XarraySequences(str(path), "tas", 2, 1)
    assert seq.dims[0] == "model_day" and len(seq) == days - 2


def test_open_gridded_decodes_model_calendars(tmp_path):
    path, days = _daily_year(tmp_path, "noleap")
    ds = open_gridded(path)
    assert isinstance(ds.indexes["time"], xr.CFTimeIndex)
    assert ds.indexes["time"].calendar == "noleap" and ds.sizes["time"] == days
    standard = tmp_path / "standard.nc"
    xr.Dataset(
        {"x": (("time",), np.zeros(3))},
        coords={"time": np.array(["2001-01-01", "2001-01-02", "2001-01-03"], "datetime64[ns]")},
    ).to_netcdf(standard, engine="h5netcdf")
    assert np.issubdtype(open_gridded(str(standard))["time"].dtype, np.datetime64)


def test_open_gridded_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gridded data file not found: .*gone.nc"):
        open_gridded(tmp_path / "gone.nc")
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    with pytest.raises(ValueError) as info:
        open_gridded(junk)
    assert str(info.value).startswith(f"cannot open {junk} with xarray: ")
    assert "\n" not in str(info.value)


def test_model_calendar_without_cftime_says_what_to_install(tmp_path, monkeypatch):
    path, _ = _daily_year(tmp_path, "360_day")
    monkeypatch.setitem(sys.modules, "cftime", None)  # as if not installed
    for read in (lambda: open_gridded(path), lambda: XarraySequences(str(path), "tas")):
        with pytest.raises(ImportError) as info:
            read()
        message = str(info.value)
        assert message.startswith(f"{path}: its time axis uses the '360_day' calendar")
        assert "pip install 'convlstm[data]'" in message and "\n" not in message


def test_time_dim_is_required_when_no_dimension_is_time(tmp_path):
    ds = xr.Dataset(
        {"depth": (("band", "y", "x"), np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4))},
        coords={"band": [1, 2], "y": np.arange(3.0), "x": np.arange(4.0)},
    )
    path = tmp_path / "no_time.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ValueError) as info:
        XarraySequences(str(path), "depth", 1, 1)
    message = str(info.value)
    assert (
        f"variable 'depth' in {path} has dims ('band', 'y', 'x') and no time dimension" in message
    )
    assert "time_dim=" in message
    seq = XarraySequences(str(path), "depth", 1, 1, time_dim="band")
    assert len(seq) == 1 and seq[0][1][0, 0, 2, 3] == 23


def test_cf_time_axis_attribute_marks_the_time_dimension(tmp_path):
    ds = xr.Dataset(
        {"v": (("step", "y", "x"), np.zeros((5, 3, 3), np.float32))},
        coords={"step": ("step", np.arange(5), {"axis": "T"}), "y": [0, 1, 2], "x": [0, 1, 2]},
    )
    path = tmp_path / "axis_t.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    assert XarraySequences(str(path), "v", 2, 1).dims[0] == "step"


def test_several_time_like_dims_need_a_choice(tmp_path):
    ds = xr.Dataset(
        {"v": (("time", "t", "y", "x"), np.zeros((4, 3, 2, 2), np.float32))},
        coords={"y": [0, 1], "x": [0, 1]},
    )
    path = tmp_path / "two_times.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ValueError, match=r"several time-like dims \('time', 't'\); choose one"):
        XarraySequences(str(path), "v", 1, 1)
    assert len(XarraySequences(str(path), "v", 1, 1, time_dim="t")) == 2
