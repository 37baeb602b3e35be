"""Nowcasting scores by lead time: CSI/POD/FAR per lead, FSS at several scales, MAE per pixel."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from convlstm.metrics import ForecastMetrics, fractions_skill_score

from .test_forecast import FORECAST, TRUTH


def test_scores_per_lead_time_on_hand_made_grids():
    # lead 1: the hand-made grid (3 hits, 2 misses, 2 false alarms); lead 2: perfect
    pred = torch.stack([FORECAST, TRUTH]).reshape(1, 2, 1, 4, 4)
    truth = torch.stack([TRUTH, TRUTH]).reshape(1, 2, 1, 4, 4)
    m = ForecastMetrics(data_range=5.0, thresholds=[1.0, 10.0])
    m.update(pred, truth)
    r = m.compute()
    assert r["csi@1.0_per_lead"] == pytest.approx([3 / 7, 1.0])
    assert r["pod@1.0_per_lead"] == pytest.approx([3 / 5, 1.0])
    assert r["far@1.0_per_lead"] == pytest.approx([2 / 5, 0.0])
    assert r["csi@1.0"] == pytest.approx(8 / 12)  # pooled: 8 hits, 2 misses, 2 false alarms
    assert all(math.isnan(v) for v in r["csi@10.0_per_lead"])
    # absolute errors of lead 1 sum to 11.1 over 16 pixels
    assert r["mae_per_pixel_per_lead"] == pytest.approx([11.1 / 16, 0.0])


def _box_mean(binary: np.ndarray, scale: int) -> np.ndarray:
    """Fraction of events in the ``scale x scale`` box around each pixel, zero outside
    (scipy's uniform_filter with mode="constant", which pysteps' FSS uses)."""
    before, after = scale // 2, scale - 1 - scale // 2
    padded = np.pad(binary.astype(float), ((before, after), (before, after)))
    out = np.zeros(binary.shape)
    for i in range(binary.shape[0]):
        for j in range(binary.shape[1]):
            out[i, j] = padded[i : i + scale, j : j + scale].mean()
    return out


def _reference_fss(pred: np.ndarray, truth: np.ndarray, thr: float, scale: int) -> float:
    num = den = 0.0
    for p, t in zip(pred.reshape(-1, *pred.shape[-2:]), truth.reshape(-1, *truth.shape[-2:])):
        fp, ft = _box_mean(p >= thr, scale), _box_mean(t >= thr, scale)
        num += ((fp - ft) ** 2).sum()
        den += (fp**2).sum() + (ft**2).sum()
    return 1 - num / den if den else math.nan


@pytest.mark.parametrize("scale", [1, 3, 4])
def test_fss_equals_the_box_filter_definition(scale):
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 3, 1, 9, 11, generator=g) * 4
    truth = torch.rand(2, 3, 1, 9, 11, generator=g) * 4
    expected = _reference_fss(pred.numpy(), truth.numpy(), 2.0, scale)
    assert fractions_skill_score(pred, truth, 2.0, scale) == pytest.approx(expected, rel=1e-6)
    m = ForecastMetrics(data_range=4.0, thresholds=[2.0], fss_scales=[scale])
    for p, t in zip(pred.split(1), truth.split(1)):  # accumulated over updates
        m.update(p, t)
    r = m.compute()
    assert r[f"fss@2.0_{scale}px"] == pytest.approx(expected, rel=1e-6)
    per_lead = [_reference_fss(pred[:, k].numpy(), truth[:, k].numpy(), 2.0, scale)
                for k in range(3)]  # fmt: skip
    assert r[f"fss@2.0_{scale}px_per_lead"] == pytest.approx(per_lead, rel=1e-6)


def test_fss_forgives_a_displacement_at_larger_scales():
    truth = torch.zeros(1, 1, 1, 32, 32)
    truth[..., 10:16, 10:16] = 5.0
    shifted = truth.roll(3, dims=-1)
    scores = [fractions_skill_score(shifted, truth, 1.0, s) for s in (1, 5, 9, 17)]
    assert scores[0] == pytest.approx(1 - 36 / 72)  # 18 + 18 pixels wrong out of 36 + 36
    assert all(a < b for a, b in itertools.pairwise(scores)) and scores[-1] > 0.9
    assert fractions_skill_score(truth, truth, 1.0, 5) == 1.0
    assert math.isnan(fractions_skill_score(truth * 0, truth * 0, 1.0, 5))
    with pytest.raises(ValueError, match="scale must be an int >= 1"):
        fractions_skill_score(truth, truth, 1.0, 0)
    with pytest.raises(ValueError, match="fss_scales needs thresholds"):
        ForecastMetrics(fss_scales=[3])
