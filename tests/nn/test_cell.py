"""The fused cell and layer against the plain per-gate equations of Shi et al. 2015."""

import pytest
import torch

from convlstm import ConvLSTM1d, ConvLSTM2d, ConvLSTM3d, ConvLSTMCell2d
from convlstm.nn import hard_sigmoid

from .conftest import perturb
from .reference import reference_cell_sequence

CASES_2D = [
    dict(),
    dict(padding="valid"),
    dict(padding=1, kernel_size=3),
    dict(stride=2),
    dict(stride=2, padding="valid"),
    dict(dilation=2),
    dict(kernel_size=4),  # even kernel: TF-style asymmetric "same" padding
    dict(kernel_size=(3, 5), stride=(1, 2)),
    dict(peephole="channel"),
    dict(peephole="pixel", spatial_size=(7, 9)),
    dict(layer_norm=True),
    dict(recurrent_activation="hard_sigmoid", bias=False, padding="valid"),
    dict(activation="relu"),
]


@pytest.mark.parametrize(
    "options", CASES_2D, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default"
)
def test_layer_matches_per_gate_reference_2d(options):
    options = dict(options)
    kernel = options.pop("kernel_size", 3)
    layer = perturb(ConvLSTM2d(3, 4, kernel, **options)).double()
    x = torch.randn(2, 5, 3, 7, 9, dtype=torch.float64)
    out, (h_n, c_n) = layer(x)
    ref_out, (ref_h, ref_c) = reference_cell_sequence(layer.cells[0], x)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h_n[0], ref_h)
    torch.testing.assert_close(c_n[0], ref_c)


@pytest.mark.parametrize(
    "layer_cls, spatial, options",
    [
        (ConvLSTM1d, (11,), dict()),
        (ConvLSTM1d, (11,), dict(padding="valid", stride=2, peephole="channel")),
        (ConvLSTM3d, (4, 5, 6), dict()),
        (ConvLSTM3d, (4, 5, 6), dict(padding="valid", peephole="pixel", spatial_size=(4, 5, 6))),
    ],
)
def test_1d_and_3d_match_reference(layer_cls, spatial, options):
    layer = perturb(layer_cls(2, 3, 3, **options)).double()
    x = torch.randn(2, 4, 2, *spatial, dtype=torch.float64)
    out, (h_n, c_n) = layer(x)
    ref_out, (ref_h, ref_c) = reference_cell_sequence(layer.cells[0], x)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(c_n[0], ref_c)


def test_same_padding_output_size_follows_tensorflow():
    for size, stride, kernel in [(7, 2, 3), (8, 2, 3), (9, 3, 4), (10, 1, 4)]:
        layer = ConvLSTM2d(1, 2, kernel, stride=stride)
        out, _ = layer(torch.randn(1, 2, 1, size, size))
        expected = -(-size // stride)
        assert out.shape[-2:] == (expected, expected)


def test_cell_step_equals_layer_step():
    cell = perturb(ConvLSTMCell2d(3, 4, 3, peephole="channel"))
    layer = ConvLSTM2d(3, 4, 3, peephole="channel")
    layer.cells[0].load_state_dict(cell.state_dict())
    x = torch.randn(2, 3, 3, 6, 6)
    state = None
    for t in range(3):
        state = cell(x[:, t], state)
    out, (h_n, c_n) = layer(x)
    torch.testing.assert_close(state[0], out[:, -1])
    torch.testing.assert_close(state[1], c_n[0])


def test_hard_sigmoid_is_keras3_definition():
    x = torch.tensor([-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0])
    expected = torch.tensor([0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    torch.testing.assert_close(hard_sigmoid(x), expected)


def test_initialisation_follows_keras():
    cell = ConvLSTMCell2d(3, 5, 3)
    bias = cell.bias.detach()
    assert torch.equal(bias[5:10], torch.ones(5))
    assert torch.equal(torch.cat([bias[:5], bias[10:]]), torch.zeros(15))
    flat = cell.weight_hh.detach().permute(2, 3, 1, 0).reshape(9 * 5, 20)
    torch.testing.assert_close(flat.T @ flat, torch.eye(20), atol=1e-5, rtol=0)
    assert ConvLSTMCell2d(3, 5, 3, unit_forget_bias=False).bias.detach().abs().sum() == 0


def test_gradcheck_float64():
    layer = perturb(
        ConvLSTM2d(2, 2, 3, num_layers=2, peephole="channel", layer_norm=True, bidirectional=True)
    ).double()
    x = torch.randn(1, 3, 2, 4, 4, dtype=torch.float64, requires_grad=True)

    def fn(inp):
        out, (h, c) = layer(inp)
        return out, c

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5)


def test_gradient_reaches_first_step_and_all_parameters():
    layer = ConvLSTM2d(2, [3, 4], 3, peephole="pixel", spatial_size=(6, 6))
    x = torch.randn(2, 6, 2, 6, 6, requires_grad=True)
    out, _ = layer(x)
    out[:, -1].pow(2).sum().backward()
    assert x.grad[:, 0].abs().sum() > 0
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_layer_norm_keeps_the_unit_forget_bias():
    """Layer norm cancels the convolution bias, so the forget-gate bias moves into the norm."""
    cell = ConvLSTMCell2d(2, 3, 3, layer_norm=True)
    assert torch.equal(cell.gate_norm_bias.detach()[3:6], torch.ones(3))
    assert cell.gate_norm_bias.detach()[[0, 1, 2, 6, 7, 8, 9, 10, 11]].abs().sum() == 0
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.weight_hh.zero_()
    state = (torch.zeros(1, 3, 5, 5), torch.ones(1, 3, 5, 5))
    _, c = cell(torch.randn(1, 2, 5, 5), state)
    # zero pre-activations: c_t = sigmoid(1) * c_{t-1} + 0.5 * tanh(0)
    torch.testing.assert_close(c, torch.full_like(c, torch.sigmoid(torch.tensor(1.0)).item()))
    plain = ConvLSTMCell2d(2, 3, 3, layer_norm=True, unit_forget_bias=False)
    assert plain.gate_norm_bias.detach().abs().sum() == 0
