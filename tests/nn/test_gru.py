"""ConvGRU (Ballas et al. 2016) against the per-gate reference of ``reference.py``, in
every setting the layer shares with the ConvLSTM."""

from __future__ import annotations

import pytest
import torch

import convlstm
from convlstm.nn import ConvGRU1d, ConvGRU2d, ConvGRU3d, ConvGRUCellNd, StepRecord

from .conftest import perturb
from .reference import reference_gru_sequence

CASES_2D = [
    dict(),
    dict(padding="valid"),
    dict(padding=1, kernel_size=3),
    dict(stride=2),
    dict(dilation=2, padding="valid"),
    dict(kernel_size=4),  # even kernel: TF-style asymmetric "same" padding
    dict(kernel_size=(3, 5), stride=(1, 2)),
    dict(bias=False, recurrent_activation="hard_sigmoid"),
    dict(activation="relu"),
]


def _gru(layer_cls=ConvGRU2d, in_channels=2, hidden=3, kernel=3, **options):
    return perturb(layer_cls(in_channels, hidden, kernel, **options)).double()


@pytest.mark.parametrize(
    "options", CASES_2D, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default"
)
def test_layer_matches_per_gate_reference_2d(options):
    options = dict(options)
    layer = _gru(kernel=options.pop("kernel_size", 3), **options)
    x = torch.randn(2, 5, 2, 7, 9, dtype=torch.float64)
    out, (h_n,) = layer(x)
    ref_out, ref_h = reference_gru_sequence(layer.cell(0), x)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h_n[0], ref_h)


@pytest.mark.parametrize("layer_cls, spatial", [(ConvGRU1d, (11,)), (ConvGRU3d, (4, 5, 6))])
def test_1d_and_3d_match_reference(layer_cls, spatial):
    layer = _gru(layer_cls, padding="valid")
    x = torch.randn(2, 4, 2, *spatial, dtype=torch.float64)
    out, (h_n,) = layer(x)
    ref_out, ref_h = reference_gru_sequence(layer.cell(0), x)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h_n[0], ref_h)


def test_at_the_fast_path_size_with_gradients():
    """2 x 16 channels x 48 x 48 = 73,728 state elements, in float32 with gradients."""
    layer = perturb(ConvGRU2d(1, 16, 3), 0.1)
    x = torch.randn(2, 4, 1, 48, 48, requires_grad=True)
    out, (h_n,) = layer(x)
    ref_out, ref_h = reference_gru_sequence(layer.cell(0), x)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    params = [x, *layer.parameters()]
    grads = torch.autograd.grad(out.square().sum(), params)
    ref_grads = torch.autograd.grad(ref_out.square().sum(), params)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_gradcheck_float64():
    layer = _gru(in_channels=1, hidden=2, stride=(1, 2), bidirectional=True)
    x = torch.randn(1, 3, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    h_0 = torch.randn(2, 1, 2, 4, 3, dtype=torch.float64, requires_grad=True)

    names = [name for name, _ in layer.named_parameters()]

    def run(x, h_0, *weights):
        out, (h_n,) = torch.func.functional_call(layer, dict(zip(names, weights)), (x, (h_0,)))
        return out, h_n

    weights = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]
    assert torch.autograd.gradcheck(run, (x, h_0, *weights))


def test_two_layers_bidirectional_equal_the_reference():
    layer = _gru(hidden=[3, 4], kernel=[3, 5], bidirectional=True)
    x = torch.randn(2, 4, 2, 6, 6, dtype=torch.float64)
    out, (h_n,) = layer(x)
    forward, h_f = reference_gru_sequence(layer.cell(0, 0), x)
    backward, h_b = reference_gru_sequence(layer.cell(0, 1), x, reverse=True)
    middle = torch.cat([forward, backward], dim=2)
    top_f, h_top_f = reference_gru_sequence(layer.cell(1, 0), middle)
    top_b, h_top_b = reference_gru_sequence(layer.cell(1, 1), middle, reverse=True)
    torch.testing.assert_close(out, torch.cat([top_f, top_b], dim=2))
    assert isinstance(h_n, list) and len(h_n) == 4  # layers differ in F: lists
    for got, expected in zip(h_n, (h_f, h_b, h_top_f, h_top_b)):
        torch.testing.assert_close(got, expected)
    layer.return_all_layers = True
    every, _ = layer(x)
    torch.testing.assert_close(every[0], middle)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lengths_equal_per_sequence_runs(bidirectional):
    layer = _gru(bidirectional=bidirectional)
    x = torch.randn(2, 5, 2, 6, 6, dtype=torch.float64)
    out, (h_n,) = layer(x, lengths=[5, 3])
    for b, length in enumerate((5, 3)):
        alone, (h_alone,) = layer(x[b : b + 1, :length])
        torch.testing.assert_close(out[b : b + 1, :length], alone)
        torch.testing.assert_close(h_n[:, b : b + 1], h_alone)
    assert out[1, 3:].abs().sum() == 0


def test_streaming_state_equals_one_pass():
    layer = _gru(num_layers=2)
    x = torch.randn(2, 6, 2, 6, 6, dtype=torch.float64)
    whole, (h_whole,) = layer(x)
    first, state = layer(x[:, :2])
    second, (h_second,) = layer(x[:, 2:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
    torch.testing.assert_close(h_second, h_whole)


def test_initial_state_is_used():
    layer = _gru()
    x = torch.randn(2, 3, 2, 6, 6, dtype=torch.float64)
    h_0 = torch.randn(1, 2, 3, 6, 6, dtype=torch.float64)
    out, (h_n,) = layer(x, (h_0,))
    ref_out, ref_h = reference_gru_sequence(layer.cell(0), x, h_0[0])
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h_n[0], ref_h)


def test_recurrent_dropout_mask_reaches_both_recurrent_convolutions():
    layer = _gru(recurrent_dropout=0.5).train()
    records: list[StepRecord] = []
    layer.cell(0).register_step_hook(lambda cell, record: records.append(record))
    x = torch.randn(2, 4, 2, 6, 6, dtype=torch.float64)
    out, _ = layer(x)
    mask = records[0].recurrent_mask
    assert mask is not None and all(r.recurrent_mask is mask for r in records)
    ref_out, _ = reference_gru_sequence(layer.cell(0), x, recurrent_mask=mask)
    torch.testing.assert_close(out, ref_out)


def test_checkpoint_gives_the_same_values_and_gradients():
    layer = _gru(num_layers=2).train()
    x = torch.randn(2, 4, 2, 6, 6, dtype=torch.float64, requires_grad=True)

    def run():
        out, _ = layer(x)
        return out, torch.autograd.grad(out.square().sum(), [x, *layer.parameters()])

    plain, plain_grads = run()
    layer.checkpoint = True
    recomputed, grads = run()
    torch.testing.assert_close(recomputed, plain)
    for a, b in zip(grads, plain_grads):
        torch.testing.assert_close(a, b)


def test_cell_step_equals_the_layer_and_bfloat16_autocast_keeps_a_float32_state():
    cell = perturb(ConvGRUCellNd(2, 3, 3, ndim=2))
    x = torch.randn(2, 2, 6, 6)
    (h,) = cell(x)
    _, ref_h = reference_gru_sequence(cell, x.unsqueeze(1))
    torch.testing.assert_close(h, ref_h)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (low,) = cell(x)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, h, atol=3e-2, rtol=3e-2)


def test_bfloat16_autocast_gives_the_lstm_output_dtype_and_keeps_a_float32_state():
    """Under autocast the output sequence is in autocast's dtype, as the ConvLSTM's (and
    ``torch.nn.GRU``'s); the state ``h``, the GRU's only memory, stays float32 as the
    LSTM's cell state does (a slow update ``z (n - h)`` would round away in bfloat16)."""
    torch.manual_seed(0)
    gru, lstm = ConvGRU2d(2, 3, 3, num_layers=2), convlstm.ConvLSTM2d(2, 3, 3, num_layers=2)
    x = torch.randn(2, 4, 2, 6, 6)
    want, (want_h,) = gru(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h_n,) = gru(x)
        lstm_out, (lstm_h, lstm_c) = lstm(x)
    assert out.dtype == lstm_out.dtype == lstm_h.dtype == torch.bfloat16
    assert h_n.dtype == lstm_c.dtype == torch.float32
    torch.testing.assert_close(out.float(), want, atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(h_n, want_h, atol=3e-2, rtol=3e-2)
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in gru.parameters())


def test_a_bfloat16_model_outputs_bfloat16_and_keeps_a_float32_state():
    torch.manual_seed(0)
    gru = ConvGRU2d(2, 3, 3, num_layers=2)
    x = torch.randn(2, 4, 2, 6, 6)
    want, (want_h,) = gru(x)
    out, (h_n,) = gru.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and h_n.dtype == torch.float32
    torch.testing.assert_close(out.float(), want, atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(h_n, want_h, atol=3e-2, rtol=3e-2)


def test_exported_and_checked_like_the_lstm():
    assert convlstm.ConvGRU2d is ConvGRU2d and convlstm.ConvGRUCellNd is ConvGRUCellNd
    layer = ConvGRU2d(2, 3, 3, activation="relu")
    assert "activation='relu'" in repr(layer)
    with pytest.raises(ValueError, match=r"state h must have shape \(2, 3, 6, 6\)"):
        layer.cell(0)(torch.randn(2, 2, 6, 6), (torch.randn(2, 3, 5, 6),))
    with pytest.raises(TypeError, match=r"state must be a tuple \(h_0\)"):
        layer(torch.randn(2, 4, 2, 6, 6), (torch.randn(1, 2, 3, 6, 6),) * 2)
    with pytest.raises(ValueError, match="expected 2 input channels"):
        layer(torch.randn(2, 4, 3, 6, 6))
