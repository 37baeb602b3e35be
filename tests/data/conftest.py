"""Helpers for the data tests: every file a test reads is written here, into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_video(path: Path, frames: np.ndarray, fps: int = 25, codec: str = "mpeg4") -> Path:
    """Write ``(T, H, W)`` or ``(T, H, W, 3)`` uint8 frames as a video with PyAV."""
    av = pytest.importorskip("av")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.gop_size = 8
        for frame in frames:
            rgb = np.repeat(frame[..., None], 3, -1) if frame.ndim == 2 else frame
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def ramp_frames(num: int, size: int = 32, step: int = 5, offset: int = 0) -> np.ndarray:
    """Uniform gray frames whose value encodes the frame number: ``offset + step * t``."""
    values = (offset + step * np.arange(num)) % 256
    return np.broadcast_to(values[:, None, None], (num, size, size)).astype(np.uint8).copy()


@pytest.fixture
def video_writer():
    return write_video


@pytest.fixture
def ramp():
    return ramp_frames
