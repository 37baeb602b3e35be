"""Every plot writes a sane, non-blank PNG; inputs with the wrong shape are named."""

import math

import numpy as np
import pytest
import torch

from convlstm.reports import (
    plot_attention_overlays,
    plot_clip_predictions,
    plot_confusion_matrix,
    plot_forecast_strip,
    plot_lead_time_curves,
    plot_learning_curves,
    plot_roc,
)
from convlstm.reports.curves import learning_curve_panels
from convlstm.reports.plotting import evenly_spaced, upsample_bilinear

from .conftest import assert_sane_size, png_size


def test_learning_curve_panels_group_and_drop_missing(history):
    history = [*history, {"epoch": 9}, {"step": float("nan"), "val_loss": 5.0}, {"note": "text"}]
    x_label, panels = learning_curve_panels(history)
    assert x_label == "step"
    assert list(panels) == ["loss", "accuracy", "f1"]
    assert set(panels["loss"]) == {"train_loss", "val_loss"}
    assert panels["loss"]["val_loss"][1] == pytest.approx([0.9, 0.45, 0.3, 0.225])
    assert panels["f1"]["val_f1"] == ([5.0, 8.0, 11.0], [0.6, 0.6, 0.6])  # NaN dropped


def test_learning_curve_panels_fall_back_to_epoch_then_row():
    x_label, panels = learning_curve_panels([{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}])
    assert x_label == "epoch" and panels["loss"]["loss"] == ([0.0, 1.0], [1.0, 0.5])
    x_label, panels = learning_curve_panels([{"train_loss_step": 2.0}, {"train_loss_epoch": 1.0}])
    assert x_label == "row" and set(panels["loss"]) == {"train_loss_step", "train_loss_epoch"}


def test_plot_learning_curves(tmp_path, history):
    path = plot_learning_curves(history, tmp_path / "sub" / "curves.png")
    assert path == tmp_path / "sub" / "curves.png"
    width, height = png_size(path)
    assert 800 <= width <= 2000 and 200 <= height <= 1200  # three panels side by side
    with pytest.raises(ValueError, match="no numeric"):
        plot_learning_curves([{"epoch": 0, "val_loss": math.nan}], tmp_path / "empty.png")


def test_plot_roc(tmp_path):
    assert_sane_size(plot_roc([0, 0, 0.5, 1], [0, 0.5, 1, 1], 0.875, tmp_path / "roc.png"))
    with pytest.raises(ValueError, match="equal length"):
        plot_roc([0, 1], [0, 0.5, 1], 0.5, tmp_path / "bad.png")


def test_plot_confusion_matrix(tmp_path):
    path = plot_confusion_matrix(
        [[5, 1, 0], [2, 3, 1], [0, 0, 4]], ["a", "b", "c"], tmp_path / "cm.png"
    )
    assert_sane_size(path)
    with pytest.raises(ValueError, match=r"\(3, 3\) for 3 class_names, got \(2, 2\)"):
        plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b", "c"], tmp_path / "bad.png")


@pytest.mark.parametrize(("probs_shape", "channels"), [((3,), 1), ((3, 4), 3)])
def test_plot_clip_predictions(tmp_path, rng, probs_shape, channels):
    clips = rng.random((3, 6, channels, 12, 12))
    probs = rng.random(probs_shape)
    names = ["w", "x", "y", "z"]
    path = plot_clip_predictions(clips, probs, np.array([0, 1, 1]), names, tmp_path / "c.png")
    width, height = png_size(path)
    assert 300 <= width <= 1500 and 400 <= height <= 1500  # one row per clip


def test_plot_clip_predictions_accepts_tensors_and_checks_n(tmp_path):
    clips = torch.rand(2, 3, 1, 8, 8)
    assert_sane_size(
        plot_clip_predictions(
            clips, torch.tensor([0.2, 0.9]), torch.tensor([0, 1]), ["a", "b"], tmp_path / "t.png"
        )
    )
    with pytest.raises(ValueError, match="same n samples"):
        plot_clip_predictions(
            clips, torch.rand(3), torch.tensor([0, 1]), ["a", "b"], tmp_path / "bad.png"
        )
    with pytest.raises(
        ValueError, match=r"clips must have shape \(n, T, C, H, W\), got \(3, 1, 8, 8\)"
    ):
        plot_clip_predictions(
            clips[0], torch.rand(2), torch.tensor([0, 1]), ["a", "b"], tmp_path / "bad.png"
        )


def test_plot_forecast_strip(tmp_path, forecast_data):
    inputs, truth, forecast = forecast_data
    one = png_size(
        plot_forecast_strip(inputs, truth, forecast, tmp_path / "1.png", max_sequences=1)
    )
    two = png_size(plot_forecast_strip(inputs, truth, forecast, tmp_path / "2.png"))
    assert one[0] == two[0] and two[1] > 1.7 * one[1]  # one block of three rows per sequence
    assert 300 <= one[0] <= 2000


def test_plot_forecast_strip_rgb_and_shape_errors(tmp_path, rng):
    inputs, truth = rng.random((1, 3, 3, 10, 10)), rng.random((1, 2, 3, 10, 10))
    assert_sane_size(plot_forecast_strip(inputs, truth, truth, tmp_path / "rgb.png"))
    with pytest.raises(ValueError, match=r"forecast must have the shape of truth"):
        plot_forecast_strip(inputs, truth, truth[:, :1], tmp_path / "bad.png")


def test_plot_lead_time_curves(tmp_path):
    per_lead = {"mse_per_lead": [1.0, 2.0, 3.5], "ssim_per_lead": [0.9, 0.8, 0.6]}
    assert_sane_size(plot_lead_time_curves(per_lead, tmp_path / "lead.png"))
    with pytest.raises(ValueError, match="per_lead is empty"):
        plot_lead_time_curves({}, tmp_path / "bad.png")


def test_plot_attention_overlays(tmp_path, rng):
    frames, maps = rng.random((2, 5, 1, 16, 16)), rng.random((2, 5, 4, 4))
    assert_sane_size(plot_attention_overlays(frames, maps, tmp_path / "att.png"))
    with pytest.raises(ValueError, match=r"\(n, T\) = \(2, 5\).*got \(2, 4, 4, 4\)"):
        plot_attention_overlays(frames, maps[:, :4], tmp_path / "bad.png")


def test_upsample_bilinear_matches_torch(rng):
    maps = rng.random((2, 3, 4, 5))
    expected = torch.nn.functional.interpolate(
        torch.tensor(maps), size=(16, 11), mode="bilinear", align_corners=False
    )
    np.testing.assert_allclose(upsample_bilinear(maps, 16, 11), expected.numpy(), atol=1e-12)
    np.testing.assert_allclose(upsample_bilinear(np.full((1, 1), 0.3), 4, 4), np.full((4, 4), 0.3))


def test_evenly_spaced():
    assert evenly_spaced(4, 10) == [0, 1, 2, 3]
    assert evenly_spaced(10, 4) == [0, 3, 6, 9]
    assert evenly_spaced(10, 1) == [0]


def test_plot_clip_predictions_single_clip_and_missing_names(tmp_path, rng):
    clip = rng.random((1, 3, 1, 8, 8))
    path = plot_clip_predictions(
        clip,
        np.array([[0.1, 0.7, 0.2]]),
        np.array([2]),
        np.array(["a", "b", "c"]),
        tmp_path / "one.png",
    )
    assert_sane_size(path, min_side=100)
    with pytest.raises(ValueError, match=r"all 3 classes.*got 2 names"):
        plot_clip_predictions(
            clip, np.array([[0.1, 0.7, 0.2]]), np.array([1]), ["a", "b"], tmp_path / "bad.png"
        )
    with pytest.raises(ValueError, match=r"labels without a name: \[5\]"):
        plot_clip_predictions(
            clip, np.array([0.3]), np.array([5]), ["a", "b"], tmp_path / "bad.png"
        )


def test_learning_curves_from_csv_strings(tmp_path):
    """Rows as csv.DictReader gives them from Lightning's metrics.csv: strings, '' when absent."""
    rows = [
        {"epoch": "0", "step": "9", "train_loss": "0.9", "val_loss": ""},
        {"epoch": "0", "step": "9", "train_loss": "", "val_loss": "0.8"},
        {"epoch": "1", "step": "19", "train_loss": "0.5", "val_loss": "nan"},
    ]
    x_label, panels = learning_curve_panels(rows)
    assert x_label == "step"
    assert panels["loss"] == {"train_loss": ([9.0, 19.0], [0.9, 0.5]), "val_loss": ([9.0], [0.8])}
    assert_sane_size(plot_learning_curves(rows, tmp_path / "csv.png"))


def test_plots_never_import_pyplot(tmp_path):
    """Plots go through Agg figures only: a broken GUI backend setting is never touched."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from convlstm.reports import plot_roc, plot_forecast_strip\n"
        f"plot_roc([0, 1], [0, 1], 0.5, {str(tmp_path / 'r.png')!r})\n"
        "x = np.random.rand(1, 2, 1, 8, 8)\n"
        f"plot_forecast_strip(x, x, x, {str(tmp_path / 's.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    env = {**os.environ, "MPLBACKEND": "TkAgg", "DISPLAY": ":99"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "r.png").stat().st_size > 0 and (tmp_path / "s.png").stat().st_size > 0
