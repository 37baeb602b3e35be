"""Named pretrained nowcasters: mm/h in and out at any size, and forecasts of a radar folder
written as NetCDF and GIF."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
import torch

from convlstm.data.preprocessing import Preprocessing
from convlstm.models.advection_forecaster import AdvectionForecaster
from convlstm.pretrained import load_nowcaster, nowcast_folder, pretrained
from convlstm.training.run_folder import ModelSpec, save_model


@pytest.fixture
def persistence_folder(tmp_path):
    """An untrained AdvectionForecaster (it forecasts persistence) as a nowcaster folder
    running on a 2 km grid."""
    options = {"hidden_channels": [4], "input_frames": 3, "output_frames": 2, "patch_size": 4}
    model = AdvectionForecaster(**options)
    pre = Preprocessing(uint8="keep", steps=({"op": "fill_nan", "value": 0.0},
                                             {"op": "log_rain", "offset": 1.0}))  # fmt: skip
    spec = ModelSpec("forecasting", "advection-forecaster", options, 3, 1, [32, 32], True,
                     "denormalize", 2, None, pre)  # fmt: skip
    folder = tmp_path / "nowcaster"
    folder.mkdir()
    save_model(model, folder, spec)
    card = {"description": "persistence, for tests", "input_km": 1.0, "model_km": 2.0,
            "minutes_per_step": 5.0, "trained_on": []}  # fmt: skip
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def test_nowcaster_takes_mm_per_hour_at_any_size(persistence_folder):
    nowcaster = load_nowcaster(persistence_folder)
    assert (nowcaster.input_frames, nowcaster.output_frames) == (3, 2)
    x = torch.full((2, 3, 1, 37, 29), 4.0)
    x[:, :, :, :5, :5] = float("nan")  # no data: dry
    out = nowcaster.predict(x)
    assert out.shape == (2, 2, 1, 37, 29) and out.dtype == torch.float32
    # persistence of a uniform 4 mm/h field survives the 2 km grid and the way back
    torch.testing.assert_close(out[..., 12:30, 10:20], torch.full((2, 2, 1, 18, 10), 4.0))
    assert float(out[0, 0, 0, 0, 0]) == pytest.approx(0.0, abs=1e-6) and float(out.min()) >= 0
    assert nowcaster.predict(np.ones((3, 1, 16, 16), dtype=np.float32)).shape == (1, 2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"x must be rain rates \(B, 3, 1, H, W\)"):
        nowcaster.predict(torch.zeros(1, 4, 1, 16, 16))


def test_forecast_of_a_radar_folder_as_netcdf_and_gif(persistence_folder, tmp_path):
    pytest.importorskip("pysteps", reason="reading radar files needs convlstm[radar]")
    xr = pytest.importorskip("xarray")
    from .data.test_radar_files import START, knmi_file, wet_field

    for t in range(5):
        knmi_file(tmp_path / "radar", START + timedelta(minutes=5 * t), wet_field(t) / 12)
    written = nowcast_folder(load_nowcaster(persistence_folder), tmp_path / "radar",
                             tmp_path / "out")  # fmt: skip
    assert written.animation.is_file() and written.inputs[0].name.endswith(".h5")
    assert len(written.summary()) == 2 and written.summary()[0].startswith("+5 min (")
    with xr.open_dataset(written.netcdf) as ds:
        rain = ds["rain_rate"]
        assert rain.attrs["units"] == "mm/h" and rain.shape == (2, 24, 20)
        times = [np.datetime64(START + timedelta(minutes=m)) for m in (25, 30)]
        assert list(ds["time"].values) == times and list(ds["lead_time"].values) == [5.0, 10.0]
        assert ds["x"].attrs["units"] == "km" and float(ds["x"][1]) == 1.0
        assert float(rain.max()) > 1.0  # the last frame's 3 mm/h block, smoothed by 2 km
        # compressed: a national composite's hour of forecasts is mostly dry
        assert rain.encoding.get("zlib") or rain.encoding.get("compression") == "gzip"
        np.testing.assert_array_equal(rain.values, written.rain)


def test_pretrained_names():
    names = pretrained()
    assert isinstance(names, list)
    with pytest.raises(KeyError, match="no pretrained model 'nope'"):
        pretrained("nope")


def test_predict_command_forecasts_a_radar_folder_with_a_nowcaster(persistence_folder, tmp_path,
                                                                   capsys):  # fmt: skip
    """``convlstm predict NOWCASTER FOLDER``: the walk of a user with radar files."""
    pytest.importorskip("pysteps", reason="reading radar files needs convlstm[radar]")
    pytest.importorskip("xarray")
    from convlstm.cli import main

    from .data.test_radar_files import START, knmi_file, wet_field

    for t in range(5):
        knmi_file(tmp_path / "radar", START + timedelta(minutes=5 * t), wet_field(t) / 12)
    code = main(["predict", str(persistence_folder), str(tmp_path / "radar"),
                 "--output", str(tmp_path / "out")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and (tmp_path / "out" / "forecast.nc").is_file()
    assert "+10 min" in out and "forecast from" in out and "forecast.gif" in out


def test_nowcaster_of_tells_nowcasters_from_other_runs(persistence_folder, tmp_path):
    from convlstm.pretrained import nowcaster_of

    assert nowcaster_of(persistence_folder) is not None
    other = tmp_path / "classifier"
    other.mkdir()
    (other / "config.yaml").write_text("data: {name: similar_motions}\n")
    assert nowcaster_of(other) is None and nowcaster_of(tmp_path / "missing") is None


def test_export_of_an_optical_flow_nowcaster_says_why_it_cannot(tmp_path):
    from convlstm.training.export import export_run

    options = {"hidden_channels": [4], "input_frames": 3, "output_frames": 2, "patch_size": 4,
               "motion_prior": "optical_flow"}  # fmt: skip
    spec = ModelSpec("forecasting", "advection-forecaster", options, 3, 1, [32, 32], True,
                     "denormalize", 2, None, Preprocessing(uint8="keep"))  # fmt: skip
    save_model(AdvectionForecaster(**options), tmp_path, spec)
    (tmp_path / "config.yaml").write_text(
        "task: forecasting\nmodel: {name: advection-forecaster}\ndata: {name: radar_files}\n")
    with pytest.raises(ValueError, match="cannot be exported: its optical-flow prior"):
        export_run(tmp_path, "onnx", tmp_path / "m.onnx")


def test_the_shipped_radar_nowcaster_moves_rain_with_the_wind():
    """``convlstm.pretrained("radar-nowcaster")`` as a user meets it: a rain area moving 2 km
    per 5 minutes east on a 1 km grid keeps moving east at that speed, in mm/h."""
    pytest.importorskip("pysteps", reason="the nowcaster's motion comes from convlstm[radar]")
    assert "radar-nowcaster" in pretrained()
    nowcaster = pretrained("radar-nowcaster")
    assert (nowcaster.input_frames, nowcaster.output_frames) == (4, 12)
    assert nowcaster.card.input_km == 1.0 and nowcaster.card.minutes_per_step == 5.0
    assert any("KNMI" in c for c in nowcaster.card.credits)
    rows, cols = np.mgrid[0:160, 0:160].astype(float)

    def rain(t: int) -> np.ndarray:  # 10 mm/h at the core, 50 x 30 km
        return 10 * np.exp(-(((rows - 80) / 25) ** 2 + ((cols - 50 - 2 * t) / 15) ** 2))

    def centre(field: np.ndarray) -> float:
        weights = field * (field >= 1.0)
        return float((weights * cols).sum() / weights.sum())

    x = torch.tensor(np.stack([rain(t) for t in range(4)])[:, None], dtype=torch.float32)
    out = nowcaster.predict(x)
    assert out.shape == (1, 12, 1, 160, 160) and float(out.min()) >= 0
    assert float(out.max()) <= 10.0 * 1.01  # the observed values, by rank
    shifts = [centre(out[0, k, 0].numpy()) - centre(rain(3)) for k in range(12)]
    for lead, shift in enumerate(shifts, start=1):
        assert shift == pytest.approx(2 * lead, rel=0.3, abs=1.0), shifts
