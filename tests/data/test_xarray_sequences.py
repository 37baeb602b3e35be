import json

import numpy as np
import pytest
import torch

from convlstm.data import NormStats, XarraySequences

xr = pytest.importorskip("xarray")
pd = pytest.importorskip("pandas")


@pytest.fixture
def grid(tmp_path):
    times = pd.date_range("2021-06-01", periods=40, freq="30min")
    rng = np.random.default_rng(0)
    rain = rng.gamma(0.5, 2.0, (40, 2, 8, 10)).astype(np.float32)  # time, level, lat, lon
    rain[5, 0, 1, 1] = np.nan
    ds = xr.Dataset(
        {
            "rain": (("time", "level", "lat", "lon"), rain),
            "mask": (("lat", "lon"), np.ones((8, 10))),
        },
        coords={
            "time": times,
            "level": [1, 2],
            "lat": np.linspace(47, 40, 8),
            "lon": np.arange(10.0),
        },
    )
    return ds, rain


def test_netcdf_windows_crop_and_round_trip(grid, tmp_path):
    pytest.importorskip("h5netcdf")
    ds, rain = grid
    path = tmp_path / "rain.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    seq = XarraySequences(str(path), "rain", input_frames=3, output_frames=2, stride=4)
    assert len(seq) == 9  # starts 0, 4, ..., 32 in 40 frames
    inputs, targets = seq[2]
    assert inputs.shape == (3, 2, 8, 10) and targets.shape == (2, 2, 8, 10)
    np.testing.assert_allclose(inputs.numpy(), rain[8:11])
    assert not torch.isnan(seq[1][0]).any()  # frame 5's NaN filled with 0
    assert seq[1][0][1, 0, 1, 1] == 0.0
    cropped = XarraySequences(str(path), "rain", 3, 2, crop={"lat": [41, 44], "lon": [2, 5]})
    assert cropped[0][0].shape == (3, 2, 4, 4)  # descending lat handled
    np.testing.assert_allclose(cropped[0][0].numpy(), rain[0:3, :, 3:7, 2:6])


def test_zarr_time_split_resample_coarsen_and_normalise(grid, tmp_path):
    pytest.importorskip("zarr")
    ds, rain = grid
    path = tmp_path / "rain.zarr"
    ds.to_zarr(path, mode="w", consolidated=False)
    parts = {
        s: XarraySequences(str(path), "rain", 4, 2, split=s, split_fractions=[0.5, 0.25, 0.25])
        for s in ("train", "val", "test")
    }
    assert [len(p) for p in parts.values()] == [15, 5, 5]  # [0,20) [20,30) [30,40), window 6
    assert parts["train"].spans.max() <= 20 and parts["val"].spans.min() >= 20
    assert parts["val"].spans.max() <= 30 and parts["test"].spans.min() >= 30

    coarse = XarraySequences(str(path), "rain", 2, 1, resample="1h", coarsen=2)
    assert len(coarse) == 18 and coarse[0][0].shape == (2, 2, 4, 5)
    hourly = np.nanmean(rain.reshape(20, 2, 2, 8, 10), axis=1)
    block = hourly[:2].reshape(2, 2, 4, 2, 5, 2).mean((3, 5))
    np.testing.assert_allclose(coarse[0][0].numpy(), np.nan_to_num(block), rtol=1e-5)

    val = XarraySequences(
        str(path),
        "rain",
        4,
        2,
        normalize="standard",
        split="val",
        split_fractions=[0.5, 0.25, 0.25],
    )
    train_values = rain[:20][np.isfinite(rain[:20])]
    assert val.stats.mean[0] == pytest.approx(train_values.mean(), rel=1e-5)  # train part only
    assert val.stats.std[0] == pytest.approx(train_values.std(), rel=1e-4)
    expected = (rain[20:24] - train_values.mean()) / train_values.std()
    np.testing.assert_allclose(val[0][0].numpy(), expected, rtol=1e-4, atol=1e-5)
    stats_file = tmp_path / "stats.json"
    val.stats.save(stats_file)
    again = XarraySequences(
        str(path),
        "rain",
        4,
        2,
        stats=json.loads(stats_file.read_text()),
        split="val",
        split_fractions=[0.5, 0.25, 0.25],
    )
    assert torch.allclose(again[0][0], val[0][0])
    assert NormStats.load(stats_file) == val.stats


def test_errors(grid, tmp_path):
    pytest.importorskip("h5netcdf")
    ds, _ = grid
    path = tmp_path / "rain.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(
        ValueError,
        match=r"variable 'mask' in .*rain.nc has dims \('lat', 'lon'\) and no time dimension",
    ):
        XarraySequences(str(path), "mask")
    with pytest.raises(KeyError, match=r"no variable 'snow' .* \['rain', 'mask'\]"):
        XarraySequences(str(path), "snow")
    with pytest.raises(ValueError, match=r"crop names dim 'x'"):
        XarraySequences(str(path), "rain", crop={"x": [0, 1]})
    with pytest.raises(
        ValueError, match=r"40 time steps .* fewer than input_frames \+ output_frames = 50"
    ):
        XarraySequences(str(path), "rain", 25, 25)
    broken = tmp_path / "broken.nc"
    broken.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cannot open .*broken.nc"):
        XarraySequences(str(broken), "rain")
    with pytest.raises(FileNotFoundError, match=r"gone.nc"):
        XarraySequences(str(tmp_path / "gone.nc"), "rain")


def test_dataloader_workers(grid, tmp_path):
    pytest.importorskip("h5netcdf")
    ds, rain = grid
    path = tmp_path / "rain.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    seq = XarraySequences(str(path), "rain", input_frames=2, output_frames=1, stride=5)
    loader = torch.utils.data.DataLoader(seq, batch_size=4, num_workers=2)
    inputs = torch.cat([b[0] for b in loader])
    np.testing.assert_allclose(inputs[3].numpy(), np.nan_to_num(rain[15:17]))
