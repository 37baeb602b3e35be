"""A nowcaster's report: skill by lead time beside the baselines, a side-by-side table and an
animation of input / truth / model / optical flow."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from convlstm.reports import build_forecast_report, plot_skill_by_lead, write_forecast_animation

from .conftest import assert_sane_size


def test_animation_with_a_baseline_panel(tmp_path):
    inputs = np.zeros((2, 1, 8, 8))
    inputs[0, 0, 0, 0] = 1  # colour range [0, 1] from inputs and truth
    truth, model, flow = np.full((2, 1, 8, 8), 0.5), np.ones((2, 1, 8, 8)), np.zeros((2, 1, 8, 8))
    path = write_forecast_animation(
        tmp_path / "a.gif", inputs, truth, model, min_size=40,
        others={"optical flow": flow}, forecast_label="ConvLSTM",
    )  # fmt: skip
    with Image.open(path) as gif:
        assert gif.n_frames == 4
        assert 4 * 40 < gif.size[0] < 5 * 40
        gif.seek(3)
        last = np.asarray(gif.convert("L"), dtype=int)
    y = last.shape[0] - 6 - 20
    centres = [6 + 20 + i * (40 + 6) for i in range(4)]
    values = [last[y, x] for x in centres]
    assert values[2] == 255 and values[3] == 0 and abs(values[1] - 128) <= 2
    with pytest.raises(ValueError, match=r"others\['optical flow'\] must have the shape"):
        write_forecast_animation(tmp_path / "b.gif", inputs, truth, model,
                                 others={"optical flow": flow[:1]})  # fmt: skip


def test_skill_by_lead_has_a_line_per_forecaster(tmp_path):
    curves = {
        "csi@1.0": {"model": [0.7, 0.5, 0.4], "persistence": [0.5, 0.3, 0.2],
                    "optical_flow": [0.75, 0.6, 0.45]},
        "mae_per_pixel": {"model": [0.1, 0.2, 0.3], "persistence": [0.2, 0.3, float("nan")]},
    }  # fmt: skip
    assert_sane_size(plot_skill_by_lead(curves, tmp_path / "skill.png", minutes_per_step=5))
    with pytest.raises(ValueError, match=r"curves\['csi@1.0'\]\['persistence'\] has 2 values"):
        plot_skill_by_lead({"csi@1.0": {"model": [1, 2, 3], "persistence": [1, 2]}},
                           tmp_path / "bad.png")  # fmt: skip


def _metrics(csi: list[float]) -> dict:
    return {"csi@1.0": float(np.mean(csi)), "csi@1.0_per_lead": csi, "mae": 1.0,
            "mae_per_pixel_per_lead": [0.1, 0.2], "mse_per_lead": [1.0, 2.0]}  # fmt: skip


def test_report_compares_the_model_with_the_baselines(tmp_path, rng):
    inputs, truth = rng.random((1, 3, 1, 16, 16)), rng.random((1, 2, 1, 16, 16))
    metrics = _metrics([0.61, 0.42])
    metrics["units"] = "mm/h"
    metrics["baselines"] = {"persistence": _metrics([0.5, 0.3]),
                            "optical_flow": _metrics([0.7, 0.55])}  # fmt: skip
    result = {"metrics": metrics, "inputs": inputs, "truth": truth, "forecast": truth * 0.9,
              "baseline_forecasts": {"optical_flow": truth * 0.8, "persistence": truth},
              "minutes_per_step": 5.0}  # fmt: skip
    page = build_forecast_report(tmp_path, None, result).read_text()
    assert_sane_size(tmp_path / "skill_by_lead.png")
    assert "Model and baselines" in page and "skill_by_lead.png" in page
    # the side-by-side table: a row per lead, the model's and each baseline's CSI
    assert "+10 min" in page and "0.42" in page and "0.55" in page and "optical_flow" in page
    with Image.open(tmp_path / "forecast.gif") as gif:  # input, truth, model, optical flow
        assert gif.size[0] > 4 * 128
