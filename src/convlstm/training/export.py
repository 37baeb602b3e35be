"""Export a trained run to ONNX or TorchScript, checked against the PyTorch model."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch
from torch import nn


class _TensorOutput(nn.Module):
    """Exports need a plain tensor in and out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def export_run(run_dir: str | Path, fmt: str = "onnx", output: str | Path | None = None) -> Path:
    """Write ``model.onnx`` or ``model.pt`` (TorchScript) for a run and check that the
    exported model reproduces PyTorch's output on a test sample (max abs error 1e-4).

    Returns:
        The path written.
    """
    from .evaluation import first_test_clip
    from .run import Run

    run = Run.open(run_dir)
    model = _TensorOutput(run.model).eval()
    sample = first_test_clip(run).unsqueeze(0).float()
    with torch.no_grad():
        expected = model(sample)
    if fmt == "onnx":
        path = Path(output or run.run_dir / "model.onnx")
        with contextlib.redirect_stdout(sys.stderr):  # the exporter prints progress
            torch.onnx.export(
                model, (sample,), str(path), input_names=["x"], output_names=["y"], verbose=False
            )
        got = _run_onnx(path, sample)
    elif fmt == "torchscript":
        path = Path(output or run.run_dir / "model.pt")
        with torch.no_grad():
            scripted = torch.jit.trace(model, sample)
        scripted.save(str(path))
        with torch.no_grad():
            got = torch.jit.load(str(path))(sample)
    else:
        raise ValueError(f"format must be onnx or torchscript, got {fmt!r}")
    if got is not None:
        error = (got - expected).abs().max().item()
        if error > 1e-4:
            raise RuntimeError(f"exported model differs from PyTorch by {error:.2e} (> 1e-4)")
    return path


def _run_onnx(path: Path, sample: torch.Tensor) -> torch.Tensor | None:
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        return None  # nothing to check against; pip install convlstm[onnx] to check
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": sample.numpy()})
    return torch.from_numpy(out)
