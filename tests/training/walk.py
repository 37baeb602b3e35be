"""Helpers for tests that walk as a user does: real files, a trained run, a copied folder."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

CLI = [sys.executable, "-m", "convlstm.cli"]
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def cli(*args: str, check: bool = True, cwd: str | Path | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:  # fmt: skip
    """Run ``convlstm ARGS`` in a new process (from ``cwd``), as a user would."""
    result = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env=ENV, cwd=cwd)  # fmt: skip
    if check and result.returncode != 0:
        command = " ".join(map(str, args))
        raise AssertionError(f"convlstm {command} failed:\n{result.stderr[-4000:]}")
    return result


def write_video(path: Path, frames: np.ndarray, rate: int = 5) -> None:
    """``(T, H, W, 3)`` uint8 frames as an MPEG-4 video."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def moving_square_video(path: Path, frames: int, size: int, speed: int, seed: int) -> None:
    """A bright square moving ``speed`` px per frame over a noisy background."""
    rng = np.random.default_rng(seed)
    video = (rng.random((frames, size, size, 3)) * 60).astype(np.uint8)
    for t in range(frames):
        top = (5 + speed * t) % (size - 12)
        video[t, top : top + 12, 10:22] = 230
    write_video(path, video)


def relocate(run_dir: Path, destination: Path, *data: Path) -> Path:
    """Copy a run folder elsewhere and delete its training data, as when a run is
    handed to another machine."""
    copied = Path(shutil.copytree(run_dir, destination))
    for path in data:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(run_dir)
    return copied


def tiny(config: dict, root: Path, **sections) -> dict:
    """A copy of ``config`` writing its runs under ``root``, with sections updated."""
    out = copy.deepcopy(config)
    for name, values in sections.items():
        out[name] = {**out.get(name, {}), **values}
    out["output"] = {"root": str(root)}
    return out
