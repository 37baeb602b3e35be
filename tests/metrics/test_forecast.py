"""ForecastMetrics and nowcast_scores against numbers worked out by hand."""

import math

import numpy as np
import pytest
import torch
from torchmetrics.image import StructuralSimilarityIndexMeasure

from convlstm.metrics import ForecastMetrics, nowcast_scores

# A hand-made 4x4 rain field (mm/h) and its forecast, threshold 1.0 (event: value >= 1):
# observed events at (0,1) (0,2) (1,1) (1,2) (3,0); forecast events at (0,1) (1,1) (1,2) (1,3)
# (2,2). Hits (0,1) (1,1) (1,2) = 3, misses (0,2) (3,0) = 2, false alarms (1,3) (2,2) = 2.
TRUTH = torch.tensor(
    [[0.0, 2.0, 2.0, 0.0], [0.0, 3.0, 1.0, 0.0], [0.0, 0.0, 0.5, 0.0], [5.0, 0.0, 0.0, 0.0]]
)
FORECAST = torch.tensor(
    [[0.0, 1.5, 0.0, 0.0], [0.0, 2.0, 1.0, 1.0], [0.0, 0.0, 1.2, 0.0], [0.0, 0.0, 0.0, 0.9]]
)


def test_nowcast_scores_on_hand_made_grid():
    r = nowcast_scores(FORECAST, TRUTH, 1.0)
    assert (r["hits"], r["misses"], r["false_alarms"]) == (3, 2, 2)
    assert r["csi"] == pytest.approx(3 / 7)
    assert r["pod"] == pytest.approx(3 / 5)
    assert r["far"] == pytest.approx(2 / 5)


def test_nowcast_scores_undefined_cases_are_nan():
    r = nowcast_scores(FORECAST, TRUTH, 4.0)  # one observed event (5.0), none forecast
    assert (r["hits"], r["misses"], r["false_alarms"]) == (0, 1, 0)
    assert r["csi"] == 0.0 and r["pod"] == 0.0 and math.isnan(r["far"])
    r = nowcast_scores(FORECAST, TRUTH, 10.0)  # no event anywhere
    assert all(math.isnan(r[k]) for k in ("csi", "pod", "far"))
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(2, 2\)"):
        nowcast_scores(FORECAST, TRUTH[:2, :2], 1.0)


def test_forecast_metrics_thresholds_on_hand_made_grid():
    m = ForecastMetrics(data_range=5.0, thresholds=[1, 4.0, 10])
    m.update(FORECAST.reshape(1, 1, 1, 4, 4), TRUTH.reshape(1, 1, 1, 4, 4))
    r = m.compute()
    assert r["csi@1.0"] == pytest.approx(3 / 7)
    assert r["pod@1.0"] == pytest.approx(3 / 5)
    assert r["far@1.0"] == pytest.approx(2 / 5)
    assert r["csi@4.0"] == 0.0 and math.isnan(r["far@4.0"])
    assert math.isnan(r["csi@10.0"])
    # Errors at (0,1) (0,2) (1,1) (1,3) (2,2) (3,0) (3,3): 0.5, 2, 1, 1, 0.7, 5, 0.9.
    # Squared: 0.25 + 4 + 1 + 1 + 0.49 + 25 + 0.81 = 32.55 over 16 pixels.
    assert r["mse"] == pytest.approx(32.55)
    assert r["mse_per_pixel"] == pytest.approx(32.55 / 16)
    assert r["mae"] == pytest.approx(11.1)


def test_perfect_forecast():
    x = torch.rand(2, 3, 2, 12, 12, generator=torch.Generator().manual_seed(0))
    m = ForecastMetrics(thresholds=[0.5])
    m.update(x, x.clone())
    r = m.compute()
    assert r["mse"] == r["mae"] == r["mse_per_pixel"] == r["mae_per_pixel"] == 0.0
    assert r["ssim"] == pytest.approx(1.0)
    assert r["psnr"] == pytest.approx(100.0)  # per-frame MSE floored at 1e-10 * range**2
    assert r["mse_per_lead"] == [0.0, 0.0, 0.0]
    assert r["ssim_per_lead"] == pytest.approx([1.0, 1.0, 1.0])
    assert r["csi@0.5"] == 1.0 and r["pod@0.5"] == 1.0 and r["far@0.5"] == 0.0
    assert r["num_sequences"] == 2


def test_openstl_frame_sum_versus_pixel_mean():
    """Lead t is off by a constant d_t: per-frame sums are d_t**2 * C*H*W and |d_t| * C*H*W."""
    b, t, c, h, w = 2, 3, 2, 5, 6
    target = torch.rand(b, t, c, h, w, generator=torch.Generator().manual_seed(0))
    offsets = torch.tensor([0.1, -0.2, 0.3])
    pred = target + offsets.reshape(1, t, 1, 1, 1)
    m = ForecastMetrics()
    m.update(pred, target)
    r = m.compute()
    pixels = c * h * w
    expected_mse = [0.01 * pixels, 0.04 * pixels, 0.09 * pixels]
    np.testing.assert_allclose(r["mse_per_lead"], expected_mse, rtol=1e-5)
    expected_mae = [0.1 * pixels, 0.2 * pixels, 0.3 * pixels]
    np.testing.assert_allclose(r["mae_per_lead"], expected_mae, rtol=1e-5)
    assert r["mse_per_pixel"] == pytest.approx((0.01 + 0.04 + 0.09) / 3, rel=1e-5)
    assert r["mae_per_pixel"] == pytest.approx(0.2, rel=1e-5)
    assert r["mse"] == pytest.approx(r["mse_per_pixel"] * pixels)
    assert r["mae"] == pytest.approx(r["mae_per_pixel"] * pixels)
    expected_psnr = np.mean([10 * np.log10(1 / d**2) for d in (0.1, 0.2, 0.3)])
    assert r["psnr"] == pytest.approx(expected_psnr, rel=1e-5)


def test_mse_matches_numpy_on_random_data():
    g = torch.Generator().manual_seed(3)
    pred, target = torch.rand(4, 5, 1, 8, 8, generator=g), torch.rand(4, 5, 1, 8, 8, generator=g)
    m = ForecastMetrics()
    m.update(pred, target)
    r = m.compute()
    err = (pred - target).double().numpy()
    assert r["mse"] == pytest.approx((err**2).sum(axis=(2, 3, 4)).mean())
    assert r["mae"] == pytest.approx(np.abs(err).sum(axis=(2, 3, 4)).mean())
    np.testing.assert_allclose(r["mse_per_lead"], (err**2).sum(axis=(2, 3, 4)).mean(axis=0))


def test_ssim_equals_torchmetrics_over_frames_as_images():
    g = torch.Generator().manual_seed(4)
    target = torch.rand(3, 2, 1, 16, 16, generator=g)
    pred = (target + 0.2 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    pred[:, 0] = target[:, 0]  # lead 1 perfect, lead 2 noisy
    m = ForecastMetrics()
    m.update(pred, target)
    r = m.compute()
    reference = StructuralSimilarityIndexMeasure(data_range=1.0)
    reference.update(pred.flatten(0, 1), target.flatten(0, 1))
    assert r["ssim"] == pytest.approx(float(reference.compute()), abs=1e-6)
    assert r["ssim_per_lead"][0] == pytest.approx(1.0)
    assert r["ssim_per_lead"][1] < 0.9


def test_small_frames_use_a_smaller_ssim_window():
    x = torch.rand(1, 2, 1, 4, 4)
    m = ForecastMetrics()
    m.update(x, x)
    assert m.compute()["ssim"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 3x3"):
        ForecastMetrics().update(torch.rand(1, 1, 1, 2, 8), torch.rand(1, 1, 1, 2, 8))


def test_accumulation_equals_single_update():
    g = torch.Generator().manual_seed(5)
    pred = torch.rand(7, 4, 1, 12, 12, generator=g) * 3
    target = torch.rand(7, 4, 1, 12, 12, generator=g) * 3
    whole = ForecastMetrics(data_range=3.0, thresholds=[0.5, 2.0])
    parts = ForecastMetrics(data_range=3.0, thresholds=[0.5, 2.0])
    whole.update(pred, target)
    for p, t in zip(pred.split(3), target.split(3)):
        parts.update(p, t)
    a, b = whole.compute(), parts.compute()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-9, err_msg=key)
    whole_scores = nowcast_scores(pred, target, 2.0)
    assert a["csi@2.0"] == pytest.approx(whole_scores["csi"])
    assert a["far@2.0"] == pytest.approx(whole_scores["far"])


def test_bad_shapes_are_named():
    m = ForecastMetrics()
    with pytest.raises(ValueError, match=r"\(B, T_out, C, H, W\).*\(2, 3, 8, 8\)"):
        m.update(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"pred \(1, 2, 1, 8, 8\) and target \(1, 3, 1, 8, 8\)"):
        m.update(torch.rand(1, 2, 1, 8, 8), torch.rand(1, 3, 1, 8, 8))
    m.update(torch.rand(1, 2, 1, 8, 8), torch.rand(1, 2, 1, 8, 8))
    with pytest.raises(ValueError, match="T_out changed"):
        m.update(torch.rand(1, 3, 1, 8, 8), torch.rand(1, 3, 1, 8, 8))
    with pytest.raises(ValueError, match="data_range"):
        ForecastMetrics(data_range=0)


def test_zero_and_persistence_baselines_by_hand():
    # one sequence, two 1x3x3 target frames; the last observed frame is all ones
    target = torch.zeros(1, 2, 1, 3, 3)
    target[0, 0, 0, 0, 0] = 1.0
    target[0, 1, 0, 1, 2] = 2.0
    last_input = torch.ones(1, 1, 3, 3)
    m = ForecastMetrics()
    m.update(torch.zeros_like(target), target, last_input)
    r = m.compute()
    assert r["baseline_mse_zero"] == pytest.approx((1.0 + 4.0) / 2)  # per-frame sums, averaged
    # frame 1: (1-1)^2 + 8 ones = 8; frame 2: (1-2)^2 + 8 ones = 9
    assert r["baseline_mse_persistence"] == pytest.approx((8.0 + 9.0) / 2)
    assert r["mse"] == pytest.approx(r["baseline_mse_zero"])  # the forecast here is zeros
    no_baseline = ForecastMetrics()
    no_baseline.update(target, target)
    assert "baseline_mse_zero" not in no_baseline.compute()
    with pytest.raises(ValueError, match=r"last_input must have shape \(1, 1, 3, 3\)"):
        ForecastMetrics().update(target, target, torch.ones(1, 3, 3))


def test_sharpness_by_hand_and_blur():
    """``sharpness`` is the forecast's summed squared neighbour differences (rows and
    columns) over the truth's: 1 for the truth itself, below 1 for a blurred forecast."""
    truth = torch.zeros(1, 2, 1, 4, 4)
    truth[0, :, 0, 1, 1] = 1.0  # one bright pixel: 4 differences of 1 -> energy 4 a frame
    pred = truth.clone()
    pred[0, 1, 0, 1, 1] = 0.5  # lead 2 at half contrast: energy 4 * 0.25 = 1
    metrics = ForecastMetrics()
    metrics.update(pred, truth)
    out = metrics.compute()
    assert out["sharpness_per_lead"] == pytest.approx([1.0, 0.25])
    assert out["sharpness"] == pytest.approx((4 + 1) / (4 + 4))
    # a real blur of a real pattern: well below 1, and the truth scores 1 exactly
    rng = torch.Generator().manual_seed(0)
    frames = (torch.rand(2, 3, 1, 32, 32, generator=rng) > 0.8).float()
    blurred = torch.nn.functional.avg_pool2d(frames.flatten(0, 1), 3, 1, 1).view_as(frames)
    for forecast, expected in ((frames, 1.0), (blurred, None)):
        metrics = ForecastMetrics()
        metrics.update(forecast, frames)
        value = metrics.compute()["sharpness"]
        if expected is None:
            assert value < 0.3
        else:
            assert value == pytest.approx(expected)


def test_sharpness_of_blank_truth_is_nan():
    metrics = ForecastMetrics()
    metrics.update(torch.rand(2, 3, 1, 8, 8), torch.zeros(2, 3, 1, 8, 8))
    out = metrics.compute()
    assert math.isnan(out["sharpness"])
    assert all(math.isnan(v) for v in out["sharpness_per_lead"])
