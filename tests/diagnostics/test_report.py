"""run_diagnostics and write_diagnostics: every section, JSON of plain numbers, HTML."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from convlstm.diagnostics import attention_maps, gate_statistics, run_diagnostics, write_diagnostics
from convlstm.models import create_model

from .conftest import clips


def test_classifier_json_and_html(tmp_path, loader):
    torch.manual_seed(0)
    model = create_model("clip-classifier", in_channels=1, hidden_channels=[2, 2],
                         attention=["spatial", "temporal"], batch_norm=False)  # fmt: skip
    result = run_diagnostics(model, loader, object_scale=100, max_batches=1,
                             class_names=["gentle", "jerky"])  # fmt: skip
    assert result["input_shape"] == [4, 1, 12, 12]
    assert result["similarity"]["layers"]["embedding"]["classes"] == ["gentle", "jerky"]
    assert any("far smaller" in w for w in result["warnings"])
    assert any(line.startswith("between/within") for line in result["summary"])
    json_path, html_path = write_diagnostics(result, tmp_path / "diag")
    data = json.loads(json_path.read_text())  # strict JSON: no NaN
    assert set(data) >= {"similarity", "gradients", "receptive_field", "gates", "attention",
                         "warnings", "summary", "model"}  # fmt: skip
    assert "_frames" not in data["attention"]
    assert len(data["gradients"]["hidden"]["layers.1.cells.0"]) == 4
    html = html_path.read_text()
    for heading in ("Class feature similarity", "Gradient flow", "Receptive field",
                    "Gate statistics", "Attention maps"):  # fmt: skip
        assert heading in html
    assert html.count("data:image/png;base64,") >= 6
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_forecaster_skips_class_similarity(tmp_path):
    torch.manual_seed(0)
    model = create_model("encoder-forecaster", in_channels=1, hidden_channels=[2],
                         input_frames=3, output_frames=2)  # fmt: skip
    data = TensorDataset(clips(4, steps=3, size=8), clips(4, steps=2, size=8, seed=1))
    result = run_diagnostics(model, DataLoader(data, batch_size=2), max_batches=1)
    assert "skipped" in result["similarity"]
    assert result["gradients"]["loss"] > 0  # MSE on the frames
    assert result["gates"]["layers"]  # encoder and forecaster cells
    _, html_path = write_diagnostics(result, tmp_path)
    assert "Skipped" in html_path.read_text()


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda m, data: gate_statistics(m, data, bins=1), "bins"),
        (lambda m, data: gate_statistics(m, data, bins=True), "bins"),
        (lambda m, data: attention_maps(m, data, num_samples=0), "num_samples"),
        (lambda m, data: run_diagnostics(m, data, max_batches=True), "max_batches"),
    ],
    ids=["bins=1", "bins=True", "num_samples=0", "max_batches=True"],
)
def test_arguments_are_checked_by_the_shared_checks(clip_model, loader, call, name):
    with pytest.raises(ValueError, match=rf"{name} must be an int >= \d"):
        call(clip_model, loader)
