"""Attention maps: recognised by shape, plotted, absent for models without attention."""

from __future__ import annotations

import numpy as np
import torch

from convlstm.diagnostics import attention_maps, plot_attention
from convlstm.models import create_model

from .conftest import clips


def test_spatial_and_temporal_maps(tmp_path):
    torch.manual_seed(0)
    model = create_model("clip-classifier", in_channels=1, hidden_channels=[2, 3],
                         attention=["spatial", "temporal"])  # fmt: skip
    x, y = clips(5, steps=4, size=12), torch.tensor([0, 1, 0, 1, 0])
    result = attention_maps(model, (x, y), num_samples=3)
    assert result["available"] and result["labels"] == [0, 1, 0]
    maps = result["maps"]
    assert maps["layer0.spatial"]["kind"] == "spatial"
    assert np.asarray(maps["layer0.spatial"]["maps"]).shape == (3, 4, 12, 12)
    assert np.asarray(maps["layer1.spatial"]["maps"]).shape == (3, 4, 6, 6)
    temporal = np.asarray(maps["layer1.temporal"]["maps"])
    assert maps["layer1.temporal"]["kind"] == "temporal" and temporal.shape == (3, 4)
    np.testing.assert_allclose(temporal.sum(axis=1), 1.0, rtol=1e-5)
    assert 0.0 <= maps["layer1.temporal"]["entropy"] <= 1.0 + 1e-6
    names = sorted(p.name for p in plot_attention(result, tmp_path))
    assert names == ["attn_layer0_spatial.png", "attn_layer1_spatial.png", "attn_temporal.png"]


def test_self_attention_memory_is_summarised_on_a_grid():
    torch.manual_seed(0)
    model = create_model("clip-classifier", in_channels=1, hidden_channels=[2],
                         attention="sam")  # fmt: skip
    result = attention_maps(model, clips(2, steps=3, size=8))
    entry = result["maps"]["layer0.hidden"]
    assert entry["kind"] == "self-attention" and entry["shape"] == [2, 3, 64, 64]
    received = np.asarray(entry["maps"])
    assert received.shape == (2, 3, 8, 8)  # attention each position receives
    np.testing.assert_allclose(received.sum(axis=(2, 3)), 1.0, rtol=1e-4)


def test_models_without_attention():
    frame = create_model("frame-classifier", in_channels=1, conv_channels=[2])
    assert attention_maps(frame, clips(2)) == {
        "available": False, "reason": "the model returned no attention maps"
    }
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(1))
    assert not attention_maps(plain, clips(2))["available"]
    assert plot_attention({"available": False}, ".") == []
