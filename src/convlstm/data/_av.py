"""PyAV helpers: probe a video and decode frame ranges (imported lazily)."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ._utils import optional_import


def _av(path: Path | str) -> Any:
    return optional_import("av", "video", f"decoding video {path}")


def _reason(err: BaseException, path: Path | str) -> str:
    """An error's text without the file name PyAV repeats in it."""
    text = str(err).replace(f": '{path}'", "").replace(str(path), "the file").strip()
    return text or type(err).__name__


def _open_stream(path: Path | str):
    av = _av(path)
    container = av.open(str(path))
    if not container.streams.video:
        container.close()
        raise ValueError("no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def probe_video(path: Path | str, count: bool = False) -> dict:
    """Frame count, frame rate and size of a video's first video stream.

    The count comes from the container header when it has one, else (or with
    ``count=True``) from decoding every frame.

    Raises:
        ValueError: the file cannot be opened or decoded (the message names it).
    """
    av = _av(path)
    try:
        container, stream = _open_stream(path)
        with container:
            frames = int(stream.frames or 0)
            fps = stream.average_rate or stream.guessed_rate
            info = {
                "fps": float(fps) if fps else 0.0,
                "height": stream.height,
                "width": stream.width,
            }
            if count or frames <= 0:
                frames = sum(1 for _ in container.decode(stream))
            elif frames > 0:  # check the first frame decodes
                next(container.decode(stream))
    except (av.FFmpegError, ValueError, StopIteration, OSError) as err:
        raise ValueError(f"cannot decode video {path}: {_reason(err, path)}") from err
    if frames <= 0:
        raise ValueError(f"video {path} has no decodable frames")
    return {"frames": frames, **info}


def _convert(frame: Any, size: tuple[int, int] | None, grayscale: bool) -> np.ndarray:
    kwargs: dict = {"format": "gray" if grayscale else "rgb24"}
    if size is not None:
        kwargs.update(height=size[0], width=size[1], interpolation="AREA")
    array = frame.to_ndarray(**kwargs)
    return array[..., None] if array.ndim == 2 else array


def iter_frames(
    path: Path | str, size: tuple[int, int] | None = None, grayscale: bool = False
) -> Iterator[np.ndarray]:
    """Every frame of a video in order, each ``(H, W, C)`` uint8 (``C`` = 1 or 3)."""
    container, stream = _open_stream(path)
    with container:
        for frame in container.decode(stream):
            yield _convert(frame, size, grayscale)


def read_frames(
    path: Path | str,
    indices: list[int],
    size: tuple[int, int] | None = None,
    grayscale: bool = False,
) -> np.ndarray:
    """Decode the frames at sorted ``indices`` of a video.

    Seeks to the key frame before the first index when the stream has a constant frame
    rate and timestamps, and decodes forward from there.

    Returns:
        ``(len(indices), H, W, C)`` uint8.

    Raises:
        ValueError: decoding failed or the video ended before the last index.
    """
    av = _av(path)
    wanted = sorted(set(indices))
    found: dict[int, np.ndarray] = {}
    try:
        container, stream = _open_stream(path)
        with container:
            rate, base = stream.average_rate, stream.time_base
            origin = stream.start_time or 0
            use_pts = bool(rate and base)
            if use_pts and wanted[0] > 0:
                target = origin + int(Fraction(wanted[0]) / Fraction(rate) / Fraction(base))
                container.seek(target, stream=stream, backward=True, any_frame=False)
            position = -1
            for frame in container.decode(stream):
                if use_pts and frame.pts is not None:
                    position = round((frame.pts - origin) * base * rate)
                else:
                    position += 1
                if position in found or position < wanted[0]:
                    continue
                if position > wanted[-1]:
                    break
                if position in wanted:
                    found[position] = _convert(frame, size, grayscale)
                if len(found) == len(wanted):
                    break
    except (av.FFmpegError, ValueError, OSError) as err:
        raise ValueError(f"cannot decode video {path}: {_reason(err, path)}") from err
    missing = [i for i in wanted if i not in found]
    if missing:
        raise ValueError(
            f"video {path} ended or failed before frame {missing[0]} "
            f"({len(missing)} of {len(wanted)} requested frames missing)"
        )
    return np.stack([found[i] for i in indices])
