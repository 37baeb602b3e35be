"""Export a run to ONNX or TorchScript, with its preprocessing and output transform inside,
checked against PyTorch.

The exported graph is ``convlstm.training.inference.Predictor``: frames in the units of
the training files in (float32, ``(B, T, C, H, W)``; 8-bit pixels divided by 255 first
where the run says so), probabilities or de-normalised forecasts out. The batch axis is
dynamic; the time axis is fixed at the run's clip length, because the layers' loop over
time is unrolled when traced. A JSON file beside the export states all of this.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

TOLERANCE = 1e-4


@dataclass
class Exported:
    path: Path
    description: Path
    max_error: float | None  # against PyTorch; None when onnxruntime is not installed
    checked_batches: tuple[int, ...]


def export_run(
    run_dir: str | Path, fmt: str = "onnx", output: str | Path | None = None
) -> Exported:
    """Write ``model.onnx`` or ``model.pt`` (TorchScript) for a run folder, and
    ``<file>.json`` describing its input and output, and check the export against PyTorch
    on batches of 1 and 3 (max abs error 1e-4).

    Raises:
        ImportError: ONNX export without ``onnx``/``onnxscript`` (``convlstm[onnx]``).
        RuntimeError: the export differs from PyTorch by more than 1e-4.
    """
    from .run import Run

    if fmt not in ("onnx", "torchscript"):
        raise ValueError(f"format must be onnx or torchscript, got {fmt!r}")
    run = Run.open(run_dir)
    reason = getattr(run.model, "not_exportable", None)
    if reason:
        raise ValueError(f"{run_dir}: this model cannot be exported: {reason}")
    spec = run.spec
    predictor = run.predictor()
    steps = spec.frames * spec.preprocessing.frames_per_step
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.rand(b, steps, spec.channels // spec.preprocessing.frames_per_step,
                         *spec.size, generator=generator) for b in (1, 3)]  # fmt: skip
    with torch.no_grad():
        expected = [predictor(x) for x in inputs]
    if fmt == "onnx":
        from ..data._utils import optional_import

        for module in ("onnx", "onnxscript"):
            optional_import(module, "onnx", "ONNX export")
        path = Path(output or run.run_dir / "model.onnx")
        batch = torch.export.Dim("batch", min=1)
        with contextlib.redirect_stdout(sys.stderr), torch.no_grad():  # it prints progress
            torch.onnx.export(
                predictor, (inputs[1],), str(path), input_names=["x"], output_names=["y"],
                dynamic_shapes=({0: batch},), verbose=False,
            )  # fmt: skip
        got = _run_onnx(path, inputs)
    else:
        path = Path(output or run.run_dir / "model.pt")
        with torch.no_grad():
            scripted = torch.jit.trace(predictor, inputs[1])
        scripted.save(str(path))
        loaded = torch.jit.load(str(path))
        with torch.no_grad():
            got = [loaded(x) for x in inputs]
    error = None
    if got is not None:
        error = max((g - e).abs().max().item() for g, e in zip(got, expected))
        if error > TOLERANCE:
            raise RuntimeError(
                f"the exported model {path} differs from PyTorch by {error:.2e} (> {TOLERANCE})"
            )
    description = path.with_name(path.name + ".json")
    description.write_text(json.dumps(_describe(spec, fmt, steps), indent=2) + "\n")
    return Exported(path, description, error, (1, 3))


def _describe(spec, fmt: str, steps: int) -> dict:
    pre = spec.preprocessing
    shape = ["batch", steps, spec.channels // pre.frames_per_step, *spec.size]
    if spec.task == "classification":
        names = spec.classes or []
        output = (
            {"shape": ["batch"], "meaning": f"probability of class {names[1] if names else 1}"}
            if spec.transform == "sigmoid"
            else {"shape": ["batch", len(names) or "K"], "meaning": "class probabilities"}
        )
        output["classes"] = names
    else:
        output = {"shape": ["batch", spec.output_frames, spec.channels, *spec.size],
                  "meaning": "forecast frames in the units of the input"}  # fmt: skip
    return {
        "format": fmt,
        "input": {
            "name": "x", "dtype": "float32", "shape": shape,
            "units": "as the training files; 8-bit pixels divided by 255 before the graph"
            if pre.uint8 == "unit" else "as the training files",
            "time_axis": f"fixed at {steps} frames (the time loop is unrolled)",
        },
        "output": {"name": "y", **output},
        "in_graph": {"preprocessing": [dict(s) for s in pre.steps],
                     "output_transform": spec.transform},
        "reader": dict(pre.reader),
        "model": {"name": spec.name, "options": spec.options},
    }  # fmt: skip


def _run_onnx(path: Path, inputs: list[torch.Tensor]) -> list[torch.Tensor] | None:
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        return None  # nothing to check against; pip install convlstm[onnx] to check
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(session.run(None, {"x": x.numpy()})[0]) for x in inputs]
