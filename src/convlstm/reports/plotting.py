"""Public plotting helpers shared by the reports and the diagnostics: array checks, figures
without pyplot (Agg only, so plotting never touches the global backend) and frame-to-image
conversion."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def as_array(x: Any, name: str, ndim: int | tuple[int, ...], shape_doc: str) -> np.ndarray:
    """``x`` (numpy array, CPU tensor or nested lists) as a float array with ``ndim`` dims."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x, dtype=np.float64)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in allowed:
        raise ValueError(f"{name} must have shape {shape_doc}, got {arr.shape}")
    return arr


def new_figure(width: float, height: float) -> Figure:
    """A figure rendered by Agg, independent of pyplot and of the global backend."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    """Rows and columns for ``n`` panels."""
    cols = max(1, min(max_cols, n))
    return math.ceil(n / cols), cols


def value_range(*arrays: np.ndarray) -> tuple[float, float]:
    """Common finite ``(vmin, vmax)`` of the arrays, widened when flat."""
    finite = [a[np.isfinite(a)] for a in arrays if a.size]
    values = np.concatenate([f.ravel() for f in finite]) if finite else np.zeros(1)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def frame_image(frame: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """A ``(C, H, W)`` frame scaled into [0, 1]: ``(H, W, 3)`` when ``C == 3``, else the first
    channel as ``(H, W)`` (to be shown with a colour map)."""
    scaled = np.clip((np.nan_to_num(frame) - vmin) / (vmax - vmin), 0.0, 1.0)
    return np.moveaxis(scaled, 0, -1) if scaled.shape[0] == 3 else scaled[0]


def to_rgb(image: np.ndarray, cmap: str) -> np.ndarray:
    """``frame_image`` output as ``(H, W, 3)`` uint8, 2-D images through colour map ``cmap``."""
    if image.ndim == 2:
        image = matplotlib.colormaps[cmap](image)[..., :3]
    return (image * 255).round().astype(np.uint8)


def upsample_bilinear(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize the last two axes of ``maps`` (``(..., h, w)``) to ``(height, width)`` bilinearly,
    with pixel centres aligned like ``torch.nn.functional.interpolate(align_corners=False)``."""

    def axis(out: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(out) + 0.5) * size / out - 0.5, 0, size - 1)
        lo = np.floor(pos).astype(int)
        return lo, np.minimum(lo + 1, size - 1), pos - lo

    y0, y1, wy = axis(height, maps.shape[-2])
    x0, x1, wx = axis(width, maps.shape[-1])
    rows = maps[..., y0, :] * (1 - wy)[:, None] + maps[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


def evenly_spaced(total: int, count: int) -> list[int]:
    """Up to ``count`` indices spread over ``range(total)``, first and last included."""
    if total <= count:
        return list(range(total))
    if count <= 1:
        return [0]
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})
