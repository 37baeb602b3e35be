"""Predict on files with a run folder alone: read, window, preprocess, predict, write.

The way from a file to the model's input is the one training took, as the run's
``model.json`` records it (``convlstm.data.Preprocessing``): the same video decoding
(size, colour, frame step), the same NetCDF crop, resampling and coarsening, 8-bit
pixels to [0, 1] where training did that, then the same normalisation, time channels and
NaN filling. A file longer than the model's clip is cut into windows of exactly that
length (by default only the last one); forecasts come back in the data's units.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..runtime import ConvLSTMWarning
from .run_folder import ModelSpec

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")
ARRAY_SUFFIXES = (".npy", ".npz")
GRIDDED_SUFFIXES = (".nc", ".nc4", ".netcdf", ".zarr")


@dataclass
class Window:
    """Frames ``[start, stop)`` of sequence ``sequence`` of a file (file frames, after any
    frame step), and the model's output for them."""

    source: str
    sequence: int | None
    start: int
    stop: int

    @property
    def label(self) -> str:
        seq = "" if self.sequence is None else f"[{self.sequence}]"
        return f"{self.source}{seq} [{self.start}-{self.stop - 1}]"


def read_sequences(
    path: str | Path,
    spec: ModelSpec,
    variable: str | None = None,
    time_dim: str | None = None,
) -> list[np.ndarray]:
    """The frame sequences of a file as the run's reader yields them, each
    ``(T, C, H, W)`` with the file's dtype (8-bit video stays uint8).

    ``.npy``/``.npz``: ``(T, C, H, W)``, ``(B, T, C, H, W)`` (B sequences) or
    ``(T, H, W)``; a video: every frame; NetCDF/Zarr: ``variable`` (default: the run's,
    or the file's only one) along its time dimension.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input file not found: {path}")
    channels = spec.channels // spec.preprocessing.frames_per_step
    suffix = path.suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        from ..data.arrays import load_array_file

        array = load_array_file(path)
        if array.ndim == 3 and channels == 1:
            array = array[:, None]
        sequences = [array] if array.ndim == 4 else list(array) if array.ndim == 5 else []
        if not sequences or sequences[0].shape[1] != channels:
            raise ValueError(
                f"{path}: expected an array (T, {channels}, H, W), (B, T, {channels}, H, W)"
                f"{' or (T, H, W)' if channels == 1 else ''}, got shape {array.shape}"
            )
        return sequences
    if suffix in VIDEO_SUFFIXES:
        return [_read_video(path, spec, channels)]
    if suffix in GRIDDED_SUFFIXES or path.is_dir():
        return [_read_gridded(path, spec, variable, time_dim)]
    raise ValueError(
        f"{path}: unsupported input type {suffix!r}; expected .npy/.npz, a video "
        f"({', '.join(VIDEO_SUFFIXES)}) or NetCDF/Zarr ({', '.join(GRIDDED_SUFFIXES)})"
    )


def _read_video(path: Path, spec: ModelSpec, channels: int) -> np.ndarray:
    from ..data._av import iter_frames, probe_video

    if channels not in (1, 3):
        raise ValueError(f"{path}: the model takes {channels} channels per frame; a video has "
                         "1 (grayscale) or 3")  # fmt: skip
    reader = spec.preprocessing.reader
    video = reader if reader.get("kind") == "video" else {}
    size = video.get("size", spec.size)
    step = int(video.get("frame_step", 1))
    grayscale = channels == 1
    frames = list(iter_frames(path, None if size is None else tuple(size), grayscale))
    promised = probe_video(path).get("frames")
    if promised and promised > len(frames):
        warnings.warn(
            f"{path}: the header promises {promised} frames but {len(frames)} decode; "
            "predicting on the decoded ones",
            ConvLSTMWarning,
            stacklevel=3,
        )
    if not frames:
        raise ValueError(f"{path}: no frame could be decoded")
    return np.stack(frames[::step]).transpose(0, 3, 1, 2)  # (T, C, H, W) uint8


def _read_gridded(
    path: Path, spec: ModelSpec, variable: str | None, time_dim: str | None
) -> np.ndarray:
    from ..data.xarray_sequences import XarraySequences, open_gridded

    reader = spec.preprocessing.reader
    trained_on_grids = reader.get("kind") == "xarray"
    options = {k: v for k, v in reader.items() if k not in ("kind", "variable")}
    if not trained_on_grids:
        options = {}
    if time_dim is not None:
        options["time_dim"] = time_dim
    if variable is None:
        variable = reader.get("variable")
        names = list(open_gridded(path).data_vars)
        if variable not in names:
            if len(names) != 1:
                raise ValueError(f"{path} has variables {names}: choose one with --variable")
            if variable is not None:
                warnings.warn(
                    f"{path} has no variable {variable!r}, which the run was trained on; "
                    f"using its only variable {names[0]!r}",
                    ConvLSTMWarning,
                    stacklevel=3,
                )
            variable = names[0]
    dataset = XarraySequences(str(path), variable, input_frames=1, output_frames=0, **options)
    return dataset.frames(0, dataset.length)


def windows_of(
    sequences: list[np.ndarray], length: int, stride: int | None, source: str
) -> tuple[list[Window], list[np.ndarray]]:
    """Cut every sequence into windows of ``length`` frames ``stride`` apart (``None``:
    only the last window)."""
    windows, clips = [], []
    for index, frames in enumerate(sequences):
        total = len(frames)
        if total < length:
            raise ValueError(f"{source}: the model needs clips of {length} frames, "
                             f"the input has {total}")  # fmt: skip
        if stride is None:
            starts = [total - length]
        else:
            if stride < 1:
                raise ValueError(f"--stride must be >= 1 frame, got {stride}")
            starts = list(range(0, total - length + 1, stride))
        sequence = index if len(sequences) > 1 else None
        for start in starts:
            windows.append(Window(source, sequence, start, start + length))
            clips.append(frames[start : start + length])
    return windows, clips


@torch.no_grad()
def predict_file(
    run,
    path: str | Path,
    stride: int | None = None,
    variable: str | None = None,
    time_dim: str | None = None,
    logits: bool = False,
    batch_size: int = 16,
) -> tuple[list[Window], torch.Tensor, np.ndarray]:
    """Windows of a file, the run's predictions for them, and the windows' raw frames.

    Returns:
        ``(windows, predictions, clips)``: predictions as ``Run.predict`` gives them, one
        row per window; ``clips`` ``(W, T, C, H, W)`` in the file's units.
    """
    spec = run.spec
    sequences = read_sequences(path, spec, variable, time_dim)
    length = spec.frames * spec.preprocessing.frames_per_step
    windows, clips = windows_of(sequences, length, stride, Path(path).name)
    stacked = np.stack(clips)
    predictions = run.predict(stacked, batch_size=batch_size, logits=logits)
    return windows, predictions, stacked


def describe(windows: list[Window], predictions: torch.Tensor, spec: ModelSpec,
             logits: bool = False) -> list[str]:  # fmt: skip
    """One readable line per window: ``clip.mp4 [0-29]: jerky 0.91``."""
    lines = []
    if spec.task == "forecasting":
        for window, frames in zip(windows, predictions):
            lines.append(
                f"{window.label}: {frames.shape[0]} forecast frames, values "
                f"{frames.min().item():.4g} to {frames.max().item():.4g}"
            )
        return lines
    names = class_names(spec, predictions)
    for window, row in zip(windows, predictions):
        if logits:
            values = ", ".join(f"{v:.4g}" for v in row.reshape(-1).tolist())
            lines.append(f"{window.label}: logits {values}")
            continue
        probs = probabilities(row)
        best = int(probs.argmax())
        lines.append(f"{window.label}: {names[best]} {probs[best]:.2f}")
    return lines


def class_names(spec: ModelSpec, predictions: torch.Tensor) -> list[str]:
    count = 2 if predictions.dim() == 1 else predictions.shape[-1]
    if spec.classes and len(spec.classes) == count:
        return list(spec.classes)
    return [f"class {k}" for k in range(count)]


def probabilities(row: torch.Tensor) -> np.ndarray:
    """Per-class probabilities of one prediction (a binary model's ``p`` -> ``[1-p, p]``)."""
    values = row.double().reshape(-1).numpy()
    return np.array([1 - values[0], values[0]]) if values.size == 1 else values


def write_predictions(
    output: str | Path,
    windows: list[Window],
    clips: np.ndarray,
    predictions: torch.Tensor,
    spec: ModelSpec,
    logits: bool = False,
) -> dict[str, Any]:
    """``predictions.npy`` and a ``predictions.csv`` of windows and results (classifiers),
    or ``forecast.gif`` of the first window (forecasts). Returns the paths written."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = {"predictions": str(output / "predictions.npy")}
    np.save(output / "predictions.npy", predictions.numpy())
    if spec.task == "forecasting":
        from ..reports import write_forecast_animation

        gif = output / "forecast.gif"
        inputs = spec.preprocessing.to_float(clips[0]).numpy()
        write_forecast_animation(gif, inputs, None, predictions[0].numpy())
        written["animation"] = str(gif)
        return written
    names = class_names(spec, predictions)
    table = output / "predictions.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        kind = "logit" if logits else "p"
        columns = names if not logits or predictions.dim() > 1 else [names[1]]
        writer.writerow(["source", "sequence", "start", "stop", "predicted",
                         *(f"{kind}_{n}" for n in columns)])  # fmt: skip
        for window, row in zip(windows, predictions):
            values = row.reshape(-1).tolist() if logits else probabilities(row).tolist()
            best = names[int(np.argmax(probabilities(row)))] if not logits else ""
            seq = "" if window.sequence is None else window.sequence
            writer.writerow([window.source, seq, window.start, window.stop - 1, best,
                             *(f"{v:.6g}" for v in values)])  # fmt: skip
    written["table"] = str(table)
    return written
