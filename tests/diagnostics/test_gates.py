"""Gate statistics: the re-implementation matches the layer, saturation of huge biases."""

from __future__ import annotations

import pytest
import torch

from convlstm.diagnostics import gate_statistics, plot_gate_statistics, recompute_step
from convlstm.diagnostics._common import StepRecorder
from convlstm.nn import ConvLSTM2d

from .conftest import clips

CONFIGS = {
    "plain-2-layers": dict(hidden_channels=[3, 4]),
    "layer-norm-peephole": dict(hidden_channels=3, layer_norm=True, peephole="channel"),
    "pixel-peephole": dict(hidden_channels=3, peephole="pixel", spatial_size=(12, 12)),
    "strided-unfused": dict(hidden_channels=3, stride=2, padding=1),
    "hard-sigmoid-relu": dict(hidden_channels=3, recurrent_activation="hard_sigmoid",
                              activation="relu"),
    "bidirectional": dict(hidden_channels=3, bidirectional=True),
    "self-attention-memory": dict(hidden_channels=4, attention="sam"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_recomputed_steps_match_the_layer(name):
    torch.manual_seed(0)
    layer = ConvLSTM2d(1, kernel_size=3, return_all_layers=True, **CONFIGS[name]).eval()
    with torch.no_grad():
        for cell in layer.cells:  # non-trivial peepholes and norms
            for param in cell.parameters():
                param.add_(0.1 * torch.randn_like(param))
    x = clips(2, steps=5)
    recorder = StepRecorder(layer)
    with torch.no_grad(), recorder:
        outputs, state = layer(x)
    with torch.no_grad():
        reference, _ = layer(x)  # the recorder does not change the computation
    for a, b in zip(outputs, reference):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(recorder.cells) == len(layer.cells)
    for index, info in enumerate(recorder.cells):
        steps = recorder.steps(info.name)
        assert len(steps) == 5
        direction = index % layer.num_directions
        width = layer.hidden_channels[index // layer.num_directions]
        out = outputs[index // layer.num_directions]
        out = out[:, :, direction * width : (direction + 1) * width]
        recomputed = []
        for t, call in enumerate(steps):
            args = {k: call.args[k] for k in ("x", "state", "plan", "weight")}
            with torch.no_grad():
                step = recompute_step(info.cell, **args)
            recomputed.append(step)
            torch.testing.assert_close(step["h"], call.state[0], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(step["c"], call.state[1], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(step["h"], out[:, t], rtol=1e-5, atol=1e-6)
            for gate in "ifo":
                assert step[gate].min() >= 0 and step[gate].max() <= 1
        # the final state is taken after the last step of the direction's time order
        last = recomputed[-1] if direction == 0 else recomputed[0]
        final_c = state[1][index]
        torch.testing.assert_close(last["c"], final_c, rtol=1e-5, atol=1e-6)
    assert not any(cell.has_step_hooks for cell in layer.cells)  # the hooks are gone


@pytest.mark.parametrize("bias, side", [(100.0, "above"), (-100.0, "below")])
def test_huge_biases_saturate_every_gate(bias, side):
    layer = ConvLSTM2d(1, 3, kernel_size=3)
    with torch.no_grad():
        layer.cells[0].bias.fill_(bias)
    batches = [(clips(2, steps=3, seed=s), torch.tensor([0, 1])) for s in range(2)]
    result = gate_statistics(layer, batches, bins=10)
    stats = result["layers"]["cells.0"]
    for gate in ("input", "forget", "output"):
        assert stats[gate]["saturated"] == 1.0
        assert stats[gate][side] == 1.0
        assert sum(stats[gate]["histogram"]) == 2 * 2 * 3 * 3 * 12 * 12
    assert stats["steps"] == 3 and len(stats["cell_norm"]) == 3


def test_default_biases_are_not_saturated_and_plot(tmp_path, clip_model, loader):
    result = gate_statistics(clip_model, loader, max_batches=1)
    assert list(result["layers"]) == ["layers.0.cells.0", "layers.1.cells.0"]
    stats = result["layers"]["layers.0.cells.0"]
    assert stats["forget"]["saturated"] < 0.5
    assert stats["forget"]["mean"] > stats["input"]["mean"]  # unit forget bias
    assert len(stats["cell_rms"]) == 4 and all(v > 0 for v in stats["cell_rms"])
    assert plot_gate_statistics(result, tmp_path / "gates.png").stat().st_size > 1000
    assert clip_model.training  # the train/eval mode is restored


def test_model_without_cells():
    from convlstm.models import create_model

    model = create_model("frame-classifier", in_channels=1, conv_channels=[2])
    result = gate_statistics(model, [clips(2)])
    assert result["layers"] == {} and "no ConvLSTM" in result["note"]
