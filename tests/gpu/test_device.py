"""The layers on the GPU: forward and backward against the CPU, the fast path against the
reference, autocast in bfloat16 and float16, and a tiny training run (issue 18).

Run with ``make test-gpu``; without a GPU every test is skipped, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch.utils._pytree import tree_flatten

import convlstm.nn as layers
from convlstm.nn import get_fusion, set_fusion

from .conftest import DEVICE

pytestmark = pytest.mark.cuda

LAYERS = [
    pytest.param("ConvLSTM2d", id="convlstm"),
    pytest.param(
        "ConvGRU2d",
        id="convgru",
        marks=pytest.mark.skipif(not hasattr(layers, "ConvGRU2d"), reason="no ConvGRU2d yet"),
    ),
]
# A state of 2 x 16 x 48 x 48 = 73,728 elements: at least the 65,536 that take the fast path.
FAST = (2, 5, 3, 48, 48)
SMALL = (2, 4, 3, 20, 20)


@contextmanager
def fusion(mode: str) -> Iterator[None]:
    saved = get_fusion()
    set_fusion(mode)
    try:
        yield
    finally:
        set_fusion(saved)


def make_layer(name: str, device: torch.device | str = "cpu", **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return getattr(layers, name)(3, 16, 3, num_layers=2, **options).to(device)


def clip(shape: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(device)


def forward_backward(layer: torch.nn.Module, x: torch.Tensor) -> tuple[list, list]:
    """Every output tensor (sequence and state) and the gradients of the input and the
    parameters for a fixed weighting of the outputs, in float32 on the CPU."""
    x = x.detach().clone().requires_grad_()
    layer.zero_grad(set_to_none=True)
    outputs = [t for t in tree_flatten(layer(x))[0] if torch.is_tensor(t)]
    loss = sum(
        (out.float() * torch.linspace(-1, 1, out.numel(), device=out.device).view(out.shape)).sum()
        for out in outputs
    )
    loss.backward()
    grads = [x.grad] + [p.grad for p in layer.parameters()]
    assert all(g is not None for g in grads), "every parameter must get a gradient"
    return [o.detach().float().cpu() for o in outputs], [g.float().cpu() for g in grads]


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm().clamp_min(1e-12))


@pytest.mark.parametrize("name", LAYERS)
def test_layer_forward_and_backward_match_the_cpu(name, device):
    x = clip(SMALL, "cpu")
    with fusion("never"):
        want_out, want_grads = forward_backward(make_layer(name), x)
    got_out, got_grads = forward_backward(make_layer(name, device), x.to(device))
    assert len(got_out) == len(want_out) >= 2
    for got, want in zip(got_out, want_out):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    for got, want in zip(got_grads, want_grads):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
@pytest.mark.parametrize("name", LAYERS)
def test_fast_path_matches_the_reference_on_the_device(name, bidirectional, device):
    layer = make_layer(name, device, bidirectional=bidirectional)
    x = clip(FAST, device)
    with fusion("never"):
        want_out, want_grads = forward_backward(layer, x)
    with fusion("always"):
        got_out, got_grads = forward_backward(layer, x)
    for got, want in zip(got_out, want_out):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    for got, want in zip(got_grads, want_grads):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)


# Relative error of the whole output / gradient against float32, from 8 (bfloat16) and
# 11 (float16) significant bits over two layers and five steps.
AUTOCAST = [
    pytest.param(torch.bfloat16, 0.05, id="bfloat16"),
    pytest.param(torch.float16, 0.01, id="float16"),
]


@pytest.mark.parametrize(("dtype", "tolerance"), AUTOCAST)
@pytest.mark.parametrize("name", LAYERS)
def test_autocast_follows_float32(name, dtype, tolerance, device):
    layer = make_layer(name, device)
    x = clip(FAST, device)
    want_out, want_grads = forward_backward(layer, x)
    with torch.autocast(device.type, dtype=dtype):
        sequence = layer(x)[0]
        got_out, got_grads = forward_backward(layer, x)
    assert sequence.dtype == dtype, "the sequence output is in the autocast dtype"
    for got, want in zip(got_out, want_out):
        assert relative_error(got, want) < tolerance
    for got, want in zip(got_grads, want_grads):
        assert torch.isfinite(got).all()
        assert relative_error(got, want) < 4 * tolerance


def test_tiny_training_through_train(tmp_path):
    from convlstm.training.run import train

    config = {
        "task": "forecasting",
        "seed": 5,
        "model": {"name": "encoder-forecaster", "in_channels": 1, "hidden_channels": [8],
                  "input_frames": 3, "output_frames": 2},
        "data": {"name": "moving_digits", "image_size": 32, "digit_size": 12, "num_digits": 1,
                 "input_frames": 3, "output_frames": 2, "batch_size": 4,
                 "train": {"num_samples": 16}, "val": {"num_samples": 8},
                 "test": {"num_samples": 8}},
        # Lightning refuses accelerator "gpu" without one, so a finished run trained there.
        "trainer": {"accelerator": "gpu" if DEVICE == "cuda" else DEVICE, "devices": 1,
                    "max_epochs": 1, "max_steps": 4, "enable_progress_bar": False,
                    "log_every_n_steps": 1},
        "evaluation": {"report_samples": 1},
        "output": {"root": str(tmp_path)},
    }  # fmt: skip
    run = train(config, report=False)
    assert (run.run_dir / "model.safetensors").is_file()
    assert len(run.metrics["mse_per_lead"]) == 2
    assert math.isfinite(run.metrics["mse"]) and run.metrics["mse"] > 0
    # The trained weights work back on the CPU from the run folder alone.
    forecast = run.predict(torch.rand(2, 3, 1, 32, 32))
    assert forecast.shape == (2, 2, 1, 32, 32) and torch.isfinite(forecast).all()
