"""Read prediction inputs from files and write predictions (and forecast animations)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")


def _resize(frames: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``(T, C, H, W)`` frames resized to ``size`` (area interpolation) if they differ."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return torch.nn.functional.interpolate(frames, size=size, mode="area")


def read_input(
    path: str | Path, sample_shape: tuple[int, ...], variable: str | None = None
) -> torch.Tensor:
    """A batch ``(B, T, C, H, W)`` shaped like the run's samples from a file.

    ``.npy``/``.npz``: ``(T, C, H, W)``, ``(B, T, C, H, W)`` or ``(T, H, W)``; a video:
    its last ``T`` frames (grayscale when the model takes one channel), resized; NetCDF
    (``.nc``): the last ``T`` time steps of ``variable``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    steps, channels, *spatial = sample_shape
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        loaded = np.load(path)
        array = loaded[loaded.files[0]] if suffix == ".npz" else loaded
        x = torch.as_tensor(np.asarray(array, dtype=np.float32))
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() == 4:
            x = x.unsqueeze(0)
        if x.dim() != 5 or x.shape[2] != channels:
            raise ValueError(
                f"{path}: expected an array (T, {channels}, H, W), (B, T, {channels}, H, W) "
                f"or (T, H, W), got shape {tuple(array.shape)}"
            )
        return x
    if suffix in VIDEO_SUFFIXES:
        from ..data._av import iter_frames

        frames = [f for f in iter_frames(path, tuple(spatial), grayscale=channels == 1)]
        if len(frames) < steps:
            raise ValueError(f"{path}: the model needs {steps} frames, the video has {len(frames)}")
        clip = np.stack(frames[-steps:]).astype(np.float32) / 255.0  # (T, H, W, C)
        return torch.from_numpy(clip).permute(0, 3, 1, 2).unsqueeze(0)
    if suffix in (".nc", ".nc4", ".netcdf", ".zarr"):
        import xarray as xr

        dataset = xr.open_dataset(path)
        if variable is None:
            names = list(dataset.data_vars)
            if len(names) != 1:
                raise ValueError(f"{path} has variables {names}: choose one with --variable")
            variable = names[0]
        values = torch.as_tensor(dataset[variable].values[-steps:], dtype=torch.float32)
        if values.dim() == 3:
            values = values.unsqueeze(1)
        return _resize(values, tuple(spatial)).unsqueeze(0)
    raise ValueError(
        f"{path}: unsupported input type {suffix!r}; expected .npy/.npz, a video "
        f"({', '.join(VIDEO_SUFFIXES)}) or NetCDF (.nc)"
    )


def write_predictions(
    output: str | Path, inputs: torch.Tensor, predictions: torch.Tensor, task: str
) -> dict[str, Any]:
    """Save ``predictions`` as ``.npy``; forecasts also get an animated GIF of
    input, truth-free forecast side by side. Returns the paths written."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = {"predictions": str(output / "predictions.npy")}
    np.save(output / "predictions.npy", predictions.numpy())
    if task == "forecasting":
        from ..reports import write_forecast_animation

        gif = output / "forecast.gif"
        write_forecast_animation(gif, inputs[0].numpy(), None, predictions[0].numpy())
        written["animation"] = str(gif)
    return written
