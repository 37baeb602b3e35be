"""The diagnostics on the bundled similar_motions model at its own sizes, where every
ConvLSTM layer takes the fused sequence path, against the same diagnostics with fusion
off (the reference step-by-step path with plain ops)."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from convlstm.data.similar_motions import SimilarMotions
from convlstm.diagnostics import (
    class_similarity,
    empirical_receptive_field,
    gate_statistics,
    gradient_flow,
)
from convlstm.models import create_model
from convlstm.nn import get_fusion, set_fusion

CELLS = ["layers.0.cells.0", "layers.1.cells.0"]


def _bundled_config() -> dict:
    text = resources.files("convlstm").joinpath("configs/similar_motions.yaml").read_text()
    return yaml.safe_load(text)


@pytest.fixture
def model() -> torch.nn.Module:
    options = dict(_bundled_config()["model"])
    torch.manual_seed(0)
    return create_model(options.pop("name"), **options)


def _loader(num_samples: int, image_size: int | None = None) -> DataLoader:
    data = _bundled_config()["data"]
    clips = SimilarMotions(
        "val",
        num_samples=num_samples,
        frames=data["frames"],
        image_size=image_size or data["image_size"],
        speed=data["speed"],
        difficulty=data["difficulty"],
    )
    return DataLoader(clips, batch_size=data["batch_size"])


@pytest.fixture
def loader() -> DataLoader:
    """Two batches of 16 clips of 12 frames of 32 x 32, as the bundled config trains on:
    the second layer's cell holds 16 x 16 channels x 16 x 16 = 65,536 elements, the fast
    path's threshold."""
    return _loader(32)


@pytest.fixture
def fusion_off():
    """Call it to compute with fusion off; the mode is restored after the test."""
    previous = get_fusion()
    yield lambda: set_fusion("never")
    set_fusion(previous)


def _assert_fast_path_taken(model: torch.nn.Module, x: torch.Tensor, ran: list[int]) -> None:
    """A plain forward of ``model`` runs every ConvLSTM cell by the fused sequence."""
    ran.clear()
    with torch.no_grad():
        model.eval()(x)
    cells = [model.get_submodule(name) for name in CELLS]
    assert sorted(ran) == sorted(id(cell) for cell in cells)
    ran.clear()


def _close(a, b, rtol: float = 1e-4, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=rtol, atol=atol)


def test_gate_statistics_record_every_layer_on_the_fast_path(
    model, loader, fused_cells, fusion_off
):
    _assert_fast_path_taken(model, next(iter(loader))[0], fused_cells)
    result = gate_statistics(model, loader)
    assert list(result["layers"]) == CELLS
    fusion_off()
    reference = gate_statistics(model, loader)
    assert list(reference["layers"]) == CELLS
    elements = {CELLS[0]: 32 * 12 * 16 * 32 * 32, CELLS[1]: 32 * 12 * 16 * 16 * 16}
    for name in CELLS:
        stats, expected = result["layers"][name], reference["layers"][name]
        assert stats["steps"] == expected["steps"] == 12
        _close(stats["cell_norm"], expected["cell_norm"])
        _close(stats["cell_rms"], expected["cell_rms"])
        for gate in ("input", "forget", "output"):
            got, want = stats[gate], expected[gate]
            assert sum(got["histogram"]) == sum(want["histogram"]) == elements[name]
            _close(got["mean"], want["mean"])
            _close(got["std"], want["std"])
            # A value within float rounding of a bin edge or threshold may change sides.
            _close(got["histogram"], want["histogram"], rtol=0, atol=1e-5 * elements[name])
            for key in ("saturated", "below", "above"):
                _close(got[key], want[key], rtol=0, atol=1e-5)


def test_class_similarity_compares_every_layer_on_the_fast_path(
    model, loader, fused_cells, fusion_off
):
    _assert_fast_path_taken(model, next(iter(loader))[0], fused_cells)
    result = class_similarity(model, loader, class_names=["gentle", "jerky"])
    assert result["order"] == [*CELLS, "embedding"]
    assert result["num_samples"] == 32
    fusion_off()
    reference = class_similarity(model, loader, class_names=["gentle", "jerky"])
    assert reference["order"] == result["order"]
    for name in result["order"]:
        got, want = result["layers"][name], reference["layers"][name]
        assert got["dim"] == want["dim"] == 16
        for key in ("between", "within", "ratio", "ratio_chance"):
            _close(got[key], want[key])
        _close(got["cosine"], want["cosine"])


def test_gradient_flow_through_every_layer_on_the_fast_path(model, loader, fused_cells, fusion_off):
    _assert_fast_path_taken(model, next(iter(loader))[0], fused_cells)
    result = gradient_flow(model, loader, max_batches=1)
    assert list(result["hidden"]) == CELLS
    fusion_off()
    reference = gradient_flow(model, loader, max_batches=1)
    for name in CELLS:
        assert len(result["hidden"][name]) == 12
        assert all(v > 0 for v in result["hidden"][name])
        _close(result["hidden"][name], reference["hidden"][name], rtol=1e-3, atol=1e-9)
    _close(result["loss"], reference["loss"])


def test_empirical_receptive_field_probes_every_layer_on_the_fast_path(
    model, fused_cells, fusion_off
):
    # 4 clips of 64 x 64: 4 x 16 channels x 32 x 32 = 65,536 in the second layer.
    x = next(iter(_loader(4, image_size=64)))[0]
    _assert_fast_path_taken(model, x, fused_cells)
    result = empirical_receptive_field(model, x)
    assert list(result) == CELLS
    fusion_off()
    reference = empirical_receptive_field(model, x)
    for name in CELLS:
        assert result[name]["support"] == reference[name]["support"]
        assert result[name]["support_by_frame"] == reference[name]["support_by_frame"]
        _close(result[name]["map"], reference[name]["map"], rtol=1e-3, atol=1e-9)
