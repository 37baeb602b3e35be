"""Frame grids: input / truth / forecast strips and attention-map overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .plotting import (
    as_array,
    evenly_spaced,
    frame_image,
    new_figure,
    save_figure,
    upsample_bilinear,
    value_range,
)

SEQ = "(n, T, C, H, W)"


def _check_forecast(inputs: Any, truth: Any, forecast: Any) -> tuple[np.ndarray, ...]:
    x = as_array(inputs, "inputs", 5, "(n, T_in, C, H, W)")
    y = as_array(truth, "truth", 5, "(n, T_out, C, H, W)")
    f = as_array(forecast, "forecast", 5, "(n, T_out, C, H, W)")
    if f.shape != y.shape:
        raise ValueError(f"forecast must have the shape of truth {y.shape}, got {f.shape}")
    if x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
        raise ValueError(f"inputs {x.shape} and truth {y.shape} must share n, C, H and W")
    return x, y, f


def plot_forecast_strip(
    inputs: Any,
    truth: Any,
    forecast: Any,
    path: str | Path,
    max_sequences: int = 3,
    max_frames: int = 10,
    cmap: str = "gray",
) -> Path:
    """For each of the first ``max_sequences`` sequences, rows of input, truth and forecast
    frames (at most ``max_frames`` evenly spaced per row), titled by time step: inputs end at
    ``+0``, forecasts start at ``+1``. A sequence's three rows share one colour scale, taken from
    its inputs and truth.

    Args:
        inputs: ``(n, T_in, C, H, W)``; truth, forecast: ``(n, T_out, C, H, W)``.
    """
    x, y, f = _check_forecast(inputs, truth, forecast)
    n = min(x.shape[0], max_sequences)
    t_in, t_out = evenly_spaced(x.shape[1], max_frames), evenly_spaced(y.shape[1], max_frames)
    cols = max(len(t_in), len(t_out))
    fig = new_figure(1.25 * cols + 0.8, 3.9 * n)
    for s, sub in enumerate(np.atleast_1d(fig.subfigures(n, 1))):
        sub.suptitle(f"sequence {s}", fontsize=10)
        vmin, vmax = value_range(x[s], y[s])
        axes = sub.subplots(3, cols, squeeze=False)
        rows = [
            ("input", x[s], t_in, 1 - x.shape[1]),
            ("truth", y[s], t_out, 1),
            ("forecast", f[s], t_out, 1),
        ]
        for r, (name, frames, steps, first) in enumerate(rows):
            for c, ax in enumerate(axes[r]):
                ax.set_xticks([])
                ax.set_yticks([])
                if c >= len(steps):
                    ax.set_axis_off()
                    continue
                ax.imshow(frame_image(frames[steps[c]], vmin, vmax), cmap=cmap, vmin=0, vmax=1)
                ax.set_title(f"{steps[c] + first:+d}", fontsize=8)
            axes[r][0].set_ylabel(name, fontsize=9)
    return save_figure(fig, path)


def plot_attention_overlays(
    frames: Any,
    maps: Any,
    path: str | Path,
    max_sequences: int = 3,
    max_frames: int = 6,
    cmap: str = "gray",
    alpha: float = 0.5,
) -> Path:
    """Attention maps upsampled (bilinear) to the frame size and overlaid with ``alpha``.

    Args:
        frames: ``(n, T, C, H, W)``.
        maps: ``(n, T, h, w)``, one map per frame; each sequence's maps are scaled to [0, 1]
            by their own minimum and maximum, so frames of a sequence compare directly.
    """
    x = as_array(frames, "frames", 5, SEQ)
    a = as_array(maps, "maps", 4, "(n, T, h, w)")
    if a.shape[:2] != x.shape[:2]:
        raise ValueError(
            f"maps must have shape (n, T, h, w) with (n, T) = {x.shape[:2]} of "
            f"frames, got {a.shape}"
        )
    n = min(x.shape[0], max_sequences)
    steps = evenly_spaced(x.shape[1], max_frames)
    height, width = x.shape[3:]
    fig = new_figure(1.6 * len(steps) + 1.0, 1.9 * n + 0.3)
    axes = fig.subplots(n, len(steps), squeeze=False)
    for s in range(n):
        vmin, vmax = value_range(x[s])
        lo, hi = value_range(a[s])
        for ax, t in zip(axes[s], steps):
            overlay = (upsample_bilinear(a[s, t], height, width) - lo) / (hi - lo)
            ax.imshow(frame_image(x[s, t], vmin, vmax), cmap=cmap, vmin=0, vmax=1)
            image = ax.imshow(overlay, cmap="inferno", vmin=0, vmax=1, alpha=alpha)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"t = {t}", fontsize=8)
        axes[s][0].set_ylabel(f"sequence {s}", fontsize=9)
    fig.colorbar(image, ax=axes, label="attention (scaled per sequence)", shrink=0.8)
    return save_figure(fig, path)
