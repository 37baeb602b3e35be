"""A tiny nowcaster trained end to end on radar files the test writes, evaluated beside the
persistence and optical-flow baselines on the same windows, in mm/h."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import torch

pytest.importorskip("pysteps", reason="the radar readers and baselines need convlstm[radar]")

import convlstm
from convlstm.data.radar_files import RadarFiles
from convlstm.training.evaluation import side_by_side

from ..data.test_radar_files import START, knmi_file


def rain_cells(t: int) -> np.ndarray:
    """Two rain blocks of 2 and 8 mm/h moving 1 pixel per frame to the right, 32 x 32."""
    field = np.zeros((32, 32))
    field[6:14, 2 + t : 10 + t] = 2.0
    field[18:26, 4 + t : 12 + t] = 8.0
    return field


@pytest.fixture
def radar_folder(tmp_path):
    for t in range(14):
        knmi_file(tmp_path / "event", START + timedelta(minutes=5 * t), rain_cells(t) / 12)
    return tmp_path / "event"


def tiny_config(folder, tmp_path) -> dict:
    events = [str(folder)]
    return {
        "task": "forecasting",
        "seed": 1,
        "model": {"name": "encoder-forecaster", "in_channels": 1, "hidden_channels": [4],
                  "input_frames": 3, "output_frames": 2, "patch_size": 4,
                  "output_activation": "identity", "scheduled_sampling": "free_running"},
        "data": {"name": "radar_files", "input_frames": 3, "output_frames": 2, "batch_size": 4,
                 "train": {"events": events, "patch_size": 16, "augment": True},
                 "val": {"events": events, "stride": 4},
                 "test": {"events": events, "stride": 3}},
        "trainer": {"max_epochs": 1, "enable_progress_bar": False, "log_every_n_steps": 1},
        "evaluation": {"data_range": 10.0, "thresholds": [1.0, 5.0], "report_samples": 1},
        "output": {"root": str(tmp_path / "runs")},
    }  # fmt: skip


def test_tiny_nowcaster_trains_and_is_scored_beside_the_baselines(radar_folder, tmp_path):
    run = convlstm.train(tiny_config(radar_folder, tmp_path), run_dir=tmp_path / "run")
    metrics = run.metrics
    assert metrics["units"] == "mm/h" and metrics["minutes_per_step"] == 5.0
    baselines = metrics["baselines"]
    assert sorted(baselines) == ["optical_flow", "persistence", "sprog"]
    for name, scores in baselines.items():
        assert scores.keys() == {k for k in metrics
                                 if k not in ("units", "minutes_per_step", "baselines")}, name
    # scored on the same windows, in mm/h: persistence's error is the last input's
    test = RadarFiles([str(radar_folder)], split="test", input_frames=3, output_frames=2,
                      stride=3)  # fmt: skip
    rain = torch.stack([torch.from_numpy(test.rain_window(i)) for i in range(len(test))])
    assert metrics["num_sequences"] == len(test) == 4
    expected = (rain[:, 3:] - rain[:, 2:3]).abs().mean(dim=(0, 2, 3, 4))
    np.testing.assert_allclose(baselines["persistence"]["mae_per_pixel_per_lead"], expected,
                               rtol=1e-5)  # fmt: skip
    # blocks moving in a straight line: optical flow beats persistence
    flow, still = baselines["optical_flow"], baselines["persistence"]
    assert flow["csi@1.0_per_lead"][1] > still["csi@1.0_per_lead"][1]
    assert "fss@1.0_10px_per_lead" in metrics  # 10, 20 and 40 km on the 1 km grid
    lines = side_by_side(metrics, 1.0)
    assert lines[0].split()[:4] == ["lead", "csi", "model", "csi"] and len(lines) == 3
    assert lines[2].split()[0] == "+10"
    report = (run.run_dir / "report.html").read_text()
    assert "optical_flow" in report and (run.run_dir / "forecast.gif").is_file()
    # predict on the model's preprocessing: mm/h in, mm/h out
    x = torch.from_numpy(test.rain_window(0)[:3])
    forecast = run.predict(x)
    assert forecast.shape == (1, 2, 1, 32, 32) and float(forecast.min()) >= 0.0
    # the run folder is a nowcaster: a radar folder in, forecast.nc and forecast.gif out
    from convlstm.pretrained import load_nowcaster, nowcast_folder

    nowcaster = load_nowcaster(run.run_dir)
    assert (nowcaster.card.model_km, nowcaster.card.minutes_per_step) == (1.0, 5.0)
    written = nowcast_folder(nowcaster, radar_folder, tmp_path / "nowcast")
    assert written.netcdf.is_file() and written.animation.is_file()
