"""The cell as the unit of extension: a layer runs any ``ConvRNNCellBase`` given as
``cell=``, and takes a cell's fast path only where the cell declares one that computes
its own step."""

from __future__ import annotations

import pytest
import torch

from convlstm.nn import ConvLSTM2d, ConvLSTMCellNd, ConvLSTMNd, ConvRNNBase, ConvRNNCellBase
from convlstm.nn.recurrent import StepPlan

from .conftest import perturb

# 2 x 16 channels x 48 x 48 = 73,728 state elements per step: the fast path's size.
BATCH, CHANNELS, SIZE, STEPS = 2, 16, 48, 3


def _clip() -> torch.Tensor:
    return torch.randn(BATCH, STEPS, 1, SIZE, SIZE)


def _stepped(cell: ConvRNNCellBase, x: torch.Tensor) -> torch.Tensor:
    """The cell stepped by hand over ``x`` from zeros: its hidden states ``(B, T, F, ...)``."""
    state, outputs = None, []
    for t in range(x.shape[1]):
        state = cell(x[:, t], state)
        outputs.append(state[0])
    return torch.stack(outputs, 1)


class ReluOutputLSTM(ConvLSTMCellNd):
    """Changes the step (``h = relu(o) * tanh(c)``) and keeps tanh and the sigmoid as its
    activations: exactly what the LSTM fast path's attribute checks would admit."""

    def step(self, x, state, plan, weight, recurrent_mask=None, need_weights=False):
        gates = self.gate_preactivations(x, state[0], plan, weight, recurrent_mask).float()
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        return torch.relu(o) * torch.tanh(c), c


class PlainActivationsLSTM(ConvLSTMCellNd):
    """Changes the gate arithmetic through ``pointwise_options`` only."""

    def pointwise_options(self) -> dict:
        return {**super().pointwise_options(), "recurrent_activation": torch.relu}


class NamedLSTM(ConvLSTMCellNd):
    """Changes nothing a step computes: it keeps the fast path."""

    def extra_repr(self) -> str:
        return "named, " + super().extra_repr()


@pytest.mark.parametrize("cell", [ReluOutputLSTM, PlainActivationsLSTM])
def test_a_subclass_that_changes_the_step_leaves_the_lstm_fast_path(fused_cells, cell):
    layer = perturb(ConvLSTM2d(1, CHANNELS, 3, cell=cell), 0.1)
    assert type(layer.cell(0)) is cell
    assert layer.cell(0).fast_path(layer.cell(0).plan((SIZE, SIZE))) is None
    x = _clip()
    with torch.no_grad():
        out, _ = layer(x)
        expected = _stepped(layer.cell(0), x)
    assert fused_cells == []
    torch.testing.assert_close(out, expected)


def test_a_subclass_that_keeps_the_step_keeps_the_fast_path(fused_cells):
    layer = ConvLSTM2d(1, CHANNELS, 3, num_layers=2, cell=NamedLSTM)
    assert all(type(cell) is NamedLSTM for cell in layer.cells)
    with torch.no_grad():
        layer(_clip())
    assert fused_cells == [id(cell) for cell in layer.cells]
    assert "named" in repr(layer)


def test_the_lstm_cell_declares_its_fast_path_only_for_the_plain_cell():
    def path(**options):
        cell = ConvLSTMCellNd(1, 4, 3, ndim=2, **options)
        return cell.fast_path(cell.plan((8, 8)))

    assert path() is not None and path(recurrent_activation="hard_sigmoid") is not None
    assert path(peephole="channel") is not None
    assert path(peephole="pixel", spatial_size=(8, 8)) is not None
    assert path(activation="relu") is not None
    others = [{"layer_norm": True}, {"attention": "sam"}, {"stride": 2},
              {"activation": "elu"}, {"recurrent_activation": "relu"}]  # fmt: skip
    for options in others:
        assert path(**options) is None, options


class Minimal(ConvRNNCellBase):
    """A cell in a few lines: ``h = tanh(W_x * x + W_h * h + b)``, with a fast path that
    records its calls and runs the reference loop."""

    gates = 1
    calls: list[tuple[bool, bool]]

    def __init__(self, in_channels, hidden_channels, kernel_size, **options):
        super().__init__(in_channels, hidden_channels, kernel_size, **options)
        self.calls = []
        self.reset_parameters()

    def step(self, x, state, plan, weight, recurrent_mask=None):
        h = state[0] if recurrent_mask is None else state[0] * recurrent_mask
        h = torch.nn.functional.pad(h, list(plan.hidden_pad))
        return (torch.tanh(x + torch.nn.functional.conv2d(h, weight)),)

    def fast_path(self, plan: StepPlan):
        cell = self

        class Recorded:
            name = "recorded"

            def __call__(self, x, state, reverse, checkpoint):
                cell.calls.append((reverse, checkpoint))
                steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
                state = state or cell.init_state(x[:, 0], plan)
                inputs, weight = cell.prepare_inputs(x, plan), cell.step_weight(plan)
                outputs = [None] * x.shape[1]
                for t in steps:
                    state = cell.step(inputs[t], state, plan, weight)
                    outputs[t] = state[0]
                return torch.stack(outputs, 1), state

        return Recorded()


def test_any_cell_runs_in_the_layer_with_its_own_fast_path():
    layer = ConvRNNBase(1, CHANNELS, 3, ndim=2, cell=Minimal, bidirectional=True).train()
    layer.checkpoint = True
    x = _clip()
    out, (h_n,) = layer(x)
    assert out.shape == (BATCH, STEPS, 2 * CHANNELS, SIZE, SIZE)
    assert h_n.shape == (2, BATCH, CHANNELS, SIZE, SIZE)
    assert [layer.cell(0, d).calls for d in (0, 1)] == [[(False, True)], [(True, True)]]
    torch.testing.assert_close(out[:, :, :CHANNELS], _stepped(layer.cell(0), x))
    # lengths need every step: the layer steps the cell itself, with the same result
    masked, (h_masked,) = layer(x, lengths=[STEPS, STEPS])
    assert [len(layer.cell(0, d).calls) for d in (0, 1)] == [1, 1]
    torch.testing.assert_close(masked, out)
    torch.testing.assert_close(h_masked, h_n)


def test_cell_must_be_a_cell_class():
    with pytest.raises(TypeError, match="cell must be a subclass of ConvRNNCellBase"):
        ConvLSTMNd(1, 4, 3, ndim=2, cell=torch.nn.Conv2d)
    with pytest.raises(TypeError, match="cell must be a subclass of ConvRNNCellBase"):
        ConvRNNBase(1, 4, 3, ndim=2, cell=Minimal(1, 4, 3, ndim=2))
