"""Animated GIF (Pillow) or MP4 (PyAV) of input, truth and forecast side by side."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .plotting import as_array, frame_image, to_rgb, value_range

_GAP, _HEADER = 6, 16
_BACKGROUND, _BLANK, _TEXT = (24, 24, 24), (56, 56, 56), (235, 235, 235)


def _sequence(x: Any, name: str, shape_doc: str) -> np.ndarray:
    """One sequence ``(T, C, H, W)``; a leading batch axis of size 1 is dropped."""
    arr = as_array(x, name, (4, 5), shape_doc)
    if arr.ndim == 5:
        if arr.shape[0] != 1:
            raise ValueError(f"{name} must be one sequence {shape_doc}, got a batch {arr.shape}")
        arr = arr[0]
    return arr


def _render_frames(
    inputs: np.ndarray,
    truth: np.ndarray | None,
    forecast: np.ndarray,
    cmap: str,
    min_size: int,
    others: dict[str, np.ndarray] | None = None,
    forecast_label: str = "forecast",
) -> list[Image.Image]:
    """One RGB image per time step: panels input | truth | forecast | others (truth only
    if given)."""
    others = others or {}
    h, w = inputs.shape[2:]
    scale = max(1, math.ceil(min_size / min(h, w)))
    ph, pw = h * scale, w * scale
    vmin, vmax = value_range(inputs, *([] if truth is None else [truth]))
    names = ["input", *([] if truth is None else ["truth"]), "forecast", *others]
    width = len(names) * pw + (len(names) + 1) * _GAP
    height = ph + _HEADER + 2 * _GAP

    def panel(frame: np.ndarray | None) -> Image.Image:
        if frame is None:
            return Image.new("RGB", (pw, ph), _BLANK)
        image = Image.fromarray(to_rgb(frame_image(frame, vmin, vmax), cmap))
        return image.resize((pw, ph), Image.Resampling.NEAREST)

    t_in, t_out = inputs.shape[0], forecast.shape[0]
    images = []
    for step in range(t_in + t_out):
        t = step - t_in + 1  # time of this frame: inputs end at t+0, forecasts start at t+1
        if t <= 0:
            panels = {
                "input": (inputs[step], f"input t{t:+d}"),
                "truth": (None, "truth"),
                "forecast": (None, forecast_label),
                **{name: (None, name) for name in others},
            }
        else:
            panels = {
                "input": (inputs[-1], "input t+0 (last)"),
                "truth": (None if truth is None else truth[t - 1], f"truth t{t:+d}"),
                "forecast": (forecast[t - 1], f"{forecast_label} t{t:+d}"),
                **{name: (frames[t - 1], f"{name} t{t:+d}") for name, frames in others.items()},
            }
        canvas = Image.new("RGB", (width, height), _BACKGROUND)
        draw = ImageDraw.Draw(canvas)
        for i, name in enumerate(names):
            frame, label = panels[name]
            left = _GAP + i * (pw + _GAP)
            canvas.paste(panel(frame), (left, _HEADER + _GAP))
            draw.text((left, 3), label, fill=_TEXT)
        images.append(canvas)
    return images


def _write_mp4(path: Path, images: list[Image.Image], fps: float) -> None:
    try:
        import av
    except ImportError as err:
        raise ImportError(
            "writing .mp4 animations needs PyAV; install it with pip install 'convlstm[video]' "
            "or write a .gif instead"
        ) from err
    width, height = (images[0].width + 1) // 2 * 2, (images[0].height + 1) // 2 * 2
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for image in images:
            padded = Image.new("RGB", (width, height), _BACKGROUND)
            padded.paste(image, (0, 0))
            frame = av.VideoFrame.from_ndarray(np.asarray(padded), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_forecast_animation(
    path: str | Path,
    inputs: Any,
    truth: Any | None,
    forecast: Any,
    fps: float = 4.0,
    cmap: str = "gray",
    min_size: int = 128,
    others: dict[str, Any] | None = None,
    forecast_label: str = "forecast",
) -> Path:
    """Animate one sequence: the input frames first, then the forecast period with
    truth | forecast panels (the last input frame stays on the left), and a panel for
    each of ``others`` (e.g. a baseline's forecast) after the forecast.

    Args:
        path: ``.gif`` (Pillow) or ``.mp4`` (PyAV, the ``convlstm[video]`` extra).
        inputs: ``(T_in, C, H, W)``; truth: ``(T_out, C, H, W)`` or None when unknown;
            forecast: ``(T_out, C, H, W)``. A leading batch axis of size 1 is accepted.
        fps: frames per second; the GIF holds its last frame three times as long.
        min_size: panels are enlarged by an integer factor to at least this many pixels.
        others: ``{label: (T_out, C, H, W)}`` more forecasts, shown in this order.
        forecast_label: the title of the forecast panel (e.g. ``"ConvLSTM"``).

    Returns:
        ``path``; the animation has ``T_in + T_out`` frames.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"path must end in .gif or .mp4, got {path.name!r}")
    x = _sequence(inputs, "inputs", "(T_in, C, H, W)")
    f = _sequence(forecast, "forecast", "(T_out, C, H, W)")
    y = None if truth is None else _sequence(truth, "truth", "(T_out, C, H, W)")
    if y is not None and y.shape != f.shape:
        raise ValueError(f"truth must have the shape of forecast {f.shape}, got {y.shape}")
    if x.shape[1:] != f.shape[1:]:
        raise ValueError(f"inputs {x.shape} and forecast {f.shape} must share C, H and W")
    extra = {}
    for name, frames in (others or {}).items():
        extra[name] = _sequence(frames, f"others[{name!r}]", "(T_out, C, H, W)")
        if extra[name].shape != f.shape:
            raise ValueError(f"others[{name!r}] must have the shape of forecast {f.shape}, "
                             f"got {extra[name].shape}")  # fmt: skip
    images = _render_frames(x, y, f, cmap, min_size, extra, forecast_label)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".mp4":
        _write_mp4(path, images, fps)
        return path
    duration = [round(1000 / fps)] * len(images)
    duration[-1] *= 3
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)
    return path
