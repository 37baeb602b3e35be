"""Gradient flow through time: one value per step and cell, grads left untouched."""

from __future__ import annotations

import math

import pytest
import torch

from convlstm.diagnostics import gradient_flow, plot_gradient_flow
from convlstm.models import create_model

from .conftest import clips


def test_one_value_per_step_and_layer(tmp_path, clip_model, loader):
    result = gradient_flow(clip_model, loader)
    assert result["batches"] == 2
    assert list(result["hidden"]) == ["layers.0.cells.0", "layers.1.cells.0"]
    for series in result["hidden"].values():
        assert len(series) == 4  # T = 4 steps
        assert all(math.isfinite(v) and v > 0 for v in series)
    assert len(result["input"]) == 4
    assert {"layers.0.cells.0", "layers.1.cells.0", "head.0"} <= set(result["parameters"])
    assert all(v > 0 for v in result["parameters"].values())
    assert set(result["first_to_last"]) == {"layers.0.cells.0", "layers.1.cells.0", "input"}
    # autograd.grad: the model's own .grad fields stay empty, its mode is restored
    assert all(p.grad is None for p in clip_model.parameters())
    assert clip_model.training
    assert plot_gradient_flow(result, tmp_path / "grad.png").stat().st_size > 1000


def test_last_step_gradient_is_the_readout_gradient():
    """With a last-state readout, dL/dh_{T-1} of the top cell is the gradient the head
    sends back: compare with a direct computation."""
    torch.manual_seed(1)
    model = create_model("clip-classifier", in_channels=1, hidden_channels=[3],
                         batch_norm=False, global_pool="avg").eval()  # fmt: skip
    x, y = clips(4, steps=3), torch.tensor([0, 1, 0, 1])
    result = gradient_flow(model, [(x, y)])
    out, _ = model.layers[0](x)
    last = out[:, -1].detach().requires_grad_(True)
    logits = model.head(last.flatten(2).mean(-1))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y.float())
    (grad,) = torch.autograd.grad(loss, last)
    assert result["hidden"]["layers.0.cells.0"][-1] == pytest.approx(grad.norm().item(), rel=1e-5)
    assert result["loss"] == pytest.approx(loss.item(), rel=1e-5)


def test_custom_loss_and_cnn_lstm_input_series():
    torch.manual_seed(0)
    model = create_model("cnn-lstm", in_channels=1, num_classes=3, conv_channels=[4],
                         lstm_hidden=5)  # fmt: skip
    batches = [(clips(6, steps=5), torch.tensor([0, 1, 2, 0, 1, 2]))]
    calls = []

    def loss_fn(output, target):
        calls.append(output.shape)
        return torch.nn.functional.cross_entropy(output, target)

    result = gradient_flow(model, batches, loss_fn=loss_fn)
    assert calls == [(6, 3)]
    assert result["hidden"] == {}
    assert len(result["rnn_input"]["lstm"]) == 5
    assert "lstm (input)" in result["first_to_last"]


def test_needs_targets(clip_model):
    with pytest.raises(ValueError, match="needs targets"):
        gradient_flow(clip_model, [clips(2)])
    with pytest.raises(ValueError, match="max_batches"):
        gradient_flow(clip_model, [clips(2)], max_batches=0)
