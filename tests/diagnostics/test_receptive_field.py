"""Receptive field: analytic values of known stacks, empirical support, warnings."""

from __future__ import annotations

import pytest
import torch

from convlstm.diagnostics import (
    analytic_receptive_field,
    empirical_receptive_field,
    plot_receptive_field,
    receptive_field,
)
from convlstm.models import create_model
from convlstm.nn import ConvLSTM2d

from .conftest import clips


def _by_name(result):
    return {s["name"]: s for s in result["stages"]}


def test_clip_classifier_stack_by_hand():
    # ConvLSTM k3 -> max pool 2 -> ConvLSTM k5 over T = 4 steps:
    #   layer 0: r = 1 + 2 = 3, j = 1, growth (3 - 1) * 1 = 2 per step, after 4 steps 3 + 3*2 = 9
    #   pool:    r = 3 + 1 * 1 = 4, j = 2, after 4 steps 4 + 3*2 = 10
    #   layer 1: r = 4 + 4 * 2 = 12, growth max(2, (5 - 1) * 2) = 8, after 4 steps 12 + 3*8 = 36
    model = create_model("clip-classifier", in_channels=1, hidden_channels=[2, 2],
                         kernel_size=[3, 5], batch_norm=False)  # fmt: skip
    result = analytic_receptive_field(model, (4, 1, 32, 32))
    assert [s["name"] for s in result["stages"]] == [
        "layers.0.cells.0", "between.0.0", "layers.1.cells.0"
    ]
    stages = _by_name(result)
    assert stages["layers.0.cells.0"]["rf"] == [3, 3]
    assert stages["layers.0.cells.0"]["rf_over_time"] == [9, 9]
    assert stages["between.0.0"]["rf"] == [4, 4] and stages["between.0.0"]["jump"] == [2, 2]
    assert stages["between.0.0"]["rf_over_time"] == [10, 10]
    assert stages["layers.1.cells.0"]["rf"] == [12, 12]
    assert stages["layers.1.cells.0"]["growth_per_step"] == [8, 8]
    assert stages["layers.1.cells.0"]["rf_over_time"] == [36, 36]
    assert result["input_size"] == [32, 32] and result["steps"] == 4


def test_dilated_strided_cell_and_frame_cnn():
    # k3, dilation 2, stride 2: r = 1 + 2 * 2 = 5, j = 2, growth 2 * 2 = 4; T = 3 -> 5 + 2*4 = 13
    layer = ConvLSTM2d(1, 2, kernel_size=3, dilation=2, stride=2, padding=2)
    stage = analytic_receptive_field(layer, (3, 1, 16, 16))["stages"][0]
    assert (stage["rf"], stage["jump"], stage["rf_over_time"]) == ([5, 5], [2, 2], [13, 13])
    # conv k3 -> max pool 2 -> conv k3: 3, 4 (j 2), 4 + 2 * 2 = 8; no recurrence in space
    model = create_model("frame-classifier", in_channels=1, conv_channels=[2, 2])
    stages = analytic_receptive_field(model, (5, 1, 16, 16))["stages"]
    assert [s["rf"][0] for s in stages] == [3, 4, 8]
    assert stages[-1]["rf_over_time"] == [8, 8]


def test_empirical_support_matches_the_analytic_growth():
    torch.manual_seed(0)
    layer = ConvLSTM2d(1, 2, kernel_size=3)
    probe = empirical_receptive_field(layer, clips(2, steps=3, size=32))["cells.0"]
    # the last state's centre sees 3 px of the last frame, 5 of the one before, 7 of the first
    assert probe["support_by_frame"] == [7, 5, 3]
    assert probe["support"] == [7, 7]
    assert analytic_receptive_field(layer, (3, 1, 32, 32))["stages"][0]["rf_over_time"] == [7, 7]
    assert all(1 <= e <= 7 for e in probe["effective"])


def test_object_scale_warnings(tmp_path, clip_model):
    x = clips(2, steps=4, size=16)
    small = receptive_field(clip_model, x, object_scale=200)
    assert any("far smaller" in w for w in small["warnings"])
    large = receptive_field(clip_model, (x, None), object_scale=1)
    assert any("far larger" in w for w in large["warnings"])
    fits = receptive_field(clip_model, [(x, torch.zeros(2))], object_scale=6)
    assert not any("object" in w for w in fits["warnings"])
    assert "layers.1.cells.0" in fits["empirical"]
    assert plot_receptive_field(fits, tmp_path / "rf.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="object_scale must be a positive number"):
        receptive_field(clip_model, x, object_scale=-3)


def test_attention_is_skipped_and_sam_marked_global():
    model = create_model("clip-classifier", in_channels=1, hidden_channels=[2],
                         attention=["spatial", "sam"])  # fmt: skip
    result = analytic_receptive_field(model, (2, 1, 8, 8))
    assert [s["name"] for s in result["stages"]] == ["layers.0.cells.0"]  # no scoring convs
    assert result["stages"][0]["global"] is True
    assert any("softmax spatial attention" in n for n in result["notes"])
