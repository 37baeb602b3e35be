"""Forecast animations: one frame per time step, GIF through Pillow and MP4 through PyAV."""

import sys

import numpy as np
import pytest
from PIL import Image

from convlstm.reports import write_forecast_animation


def test_gif_has_one_frame_per_step(tmp_path, forecast_data):
    inputs, truth, forecast = forecast_data
    path = write_forecast_animation(tmp_path / "a.gif", inputs[0], truth[0], forecast[0])
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 4 + 3
        assert gif.is_animated and gif.info["loop"] == 0
        width, height = gif.size
    assert width > 3 * 128 and height > 128  # three panels, 16-pixel frames enlarged 8x


def test_gif_without_truth_has_two_panels(tmp_path, forecast_data):
    inputs, _, forecast = forecast_data
    path = write_forecast_animation(tmp_path / "a.gif", inputs[:1], None, forecast[:1], min_size=64)
    with Image.open(path) as gif:
        assert gif.n_frames == 7
        assert 2 * 64 < gif.size[0] < 3 * 64


def test_panels_show_the_right_frames(tmp_path):
    """Inputs are black, truth mid-grey, forecast white: check the panel centres per frame."""
    inputs, truth, forecast = (
        np.zeros((2, 1, 8, 8)),
        np.full((2, 1, 8, 8), 0.5),
        np.ones((2, 1, 8, 8)),
    )
    inputs[0, 0, 0, 0] = 1  # the colour range comes from inputs and truth: [0, 1]
    path = write_forecast_animation(tmp_path / "a.gif", inputs, truth, forecast, min_size=40)
    with Image.open(path) as gif:
        gif.seek(0)
        first = np.asarray(gif.convert("L"), dtype=int)
        gif.seek(3)
        last = np.asarray(gif.convert("L"), dtype=int)
    y = first.shape[0] - 6 - 20  # middle of the panels
    centres = [6 + 20 + i * (40 + 6) for i in range(3)]
    assert [first[y, x] for x in centres] == [0, 56, 56]  # input, then two blank panels
    assert abs(last[y, centres[1]] - 128) <= 2 and last[y, centres[2]] == 255


def test_mp4_through_pyav(tmp_path, forecast_data):
    av = pytest.importorskip("av")
    inputs, truth, forecast = forecast_data
    path = write_forecast_animation(tmp_path / "a.mp4", inputs[0], truth[0], forecast[0], fps=5)
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 7
    assert frames[0].width % 2 == 0 and frames[0].width > 3 * 128


def test_mp4_without_pyav_names_the_extra(tmp_path, forecast_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    inputs, truth, forecast = forecast_data
    with pytest.raises(ImportError, match=r"convlstm\[video\]"):
        write_forecast_animation(tmp_path / "a.mp4", inputs[0], truth[0], forecast[0])


def test_bad_arguments(tmp_path, forecast_data):
    inputs, truth, forecast = forecast_data
    with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
        write_forecast_animation(tmp_path / "a.avi", inputs[0], truth[0], forecast[0])
    with pytest.raises(ValueError, match=r"one sequence \(T_in, C, H, W\), got a batch"):
        write_forecast_animation(tmp_path / "a.gif", inputs, truth[0], forecast[0])
    with pytest.raises(ValueError, match="truth must have the shape of forecast"):
        write_forecast_animation(tmp_path / "a.gif", inputs[0], truth[0, :2], forecast[0])
