"""Time-channels clips from one long video, with self-supervised burst-of-motion labels.

The fish-video study's setting: the clip for frame ``i`` is frames ``[i-119, i]`` cut into
30 slices of 4 consecutive frames stacked as channels, ``(30, 4, H, W)``, and its target
says whether a burst of motion follows within the next 45 frames.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checks import as_size, check_choice, check_int
from ..runtime import ConvLSTMWarning
from ._utils import SPLITS
from .arrays import open_array, parse_axes
from .preprocessing import Preprocessing
from .registry import register_dataset
from .splits import time_split_bounds

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")


def frame_differences(frames: np.ndarray | torch.Tensor, chunk: int = 256) -> np.ndarray:
    """Mean absolute pixel difference between consecutive frames.

    ``y[t] = mean |frames[t + 1] - frames[t]|`` over all pixels and channels. Integer
    frames are scaled to [0, 1] by their dtype's maximum (uint8: 255) so the default
    thresholds of :func:`burst_labels` apply; float frames are used as they are. Works
    on memory-mapped arrays chunk by chunk.

    Args:
        frames: ``(T, ...)``, e.g. ``(T, H, W)`` or ``(T, C, H, W)``.

    Returns:
        ``(T - 1,)`` float64 array.
    """
    if torch.is_tensor(frames):
        frames = frames.detach().cpu().numpy()
    if frames.ndim < 2 or len(frames) < 2:
        raise ValueError(f"frames must be (T, ...) with T >= 2, got shape {frames.shape}")
    scale = 1.0
    if np.issubdtype(frames.dtype, np.integer):
        scale = 1.0 / np.iinfo(frames.dtype).max
    out = np.empty(len(frames) - 1)
    for lo in range(0, len(frames) - 1, chunk):
        block = np.asarray(frames[lo : lo + chunk + 1], dtype=np.float64)
        diff = np.abs(np.diff(block, axis=0)).reshape(len(block) - 1, -1)
        out[lo : lo + len(diff)] = diff.mean(1) * scale
    return out


def burst_labels(
    y_tilde: np.ndarray | list[float],
    horizon: int = 45,
    min_range: float = 0.001,
    fraction: float = 0.1,
    first: int = 119,
) -> np.ndarray:
    """Self-supervised "a burst of motion follows" labels, one per frame.

    With ``y = y_tilde`` (from :func:`frame_differences`, ``y[t]`` between frames ``t``
    and ``t + 1``) and ``W = y[i], ..., y[i + horizon]`` (inclusive), frame ``i`` is
    labelled 1 iff ``max(W) - min(W) >= min_range`` and
    ``y[i] <= min(W) + fraction * (max(W) - min(W))``: the motion is low now and rises
    within the horizon. Frames without a full clip before them (``i < first``) or a full
    horizon after them (``i > T - 2 - horizon``, ``T = len(y) + 1`` frames) get 0.

    Returns:
        ``(len(y_tilde) + 1,)`` int64 array.
    """
    y = np.asarray(y_tilde, dtype=np.float64).reshape(-1)
    horizon, first = check_int("horizon", horizon, 0), check_int("first", first, 0)
    labels = np.zeros(len(y) + 1, dtype=np.int64)
    last = len(y) - 1 - horizon  # = T - 2 - horizon
    if last < first:
        return labels
    windows = np.lib.stride_tricks.sliding_window_view(y, horizon + 1)[first : last + 1]
    low, span = windows.min(1), np.ptp(windows, axis=1)
    current = y[first : last + 1]
    labels[first : last + 1] = (span >= min_range) & (current <= low + fraction * span)
    return labels


def _cache_dir(source: Path, cache_dir: str | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    local = source.parent / ".convlstm_cache"
    try:
        local.mkdir(exist_ok=True)
        if os.access(local, os.W_OK):
            return local
    except OSError:
        pass
    return Path.home() / ".cache" / "convlstm"


def decode_to_cache(
    source: str | os.PathLike,
    size: tuple[int, int] | None = None,
    grayscale: bool = True,
    cache_dir: str | None = None,
) -> np.ndarray:
    """Decode a whole video once into a raw uint8 file and memory-map it.

    The cache (next to the video in ``.convlstm_cache/``, or ``cache_dir``) is keyed by
    the file's path, size, modification time and the decoding options; it is rebuilt
    when any of them changes.

    Returns:
        ``(T, H, W, C)`` uint8 memory map.
    """
    from ._av import iter_frames

    source = Path(source)
    stat = source.stat()
    key = json.dumps([str(source.resolve()), stat.st_size, stat.st_mtime_ns, size, grayscale])
    name = f"{source.stem}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
    folder = _cache_dir(source, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    raw, meta = folder / f"{name}.u8", folder / f"{name}.json"
    if raw.is_file() and meta.is_file():
        shape = tuple(json.loads(meta.read_text())["shape"])
        if raw.stat().st_size == int(np.prod(shape)):
            return np.memmap(raw, dtype=np.uint8, mode="r", shape=shape)
    count, shape = 0, None
    tmp = raw.with_suffix(f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            for frame in iter_frames(source, size, grayscale):
                fh.write(np.ascontiguousarray(frame).tobytes())
                count, shape = count + 1, frame.shape
    except Exception as err:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot decode video {source}: {err}") from err
    if count == 0 or shape is None:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"video {source} has no decodable frames")
    os.replace(tmp, raw)
    meta.write_text(json.dumps({"source": key, "shape": [count, *shape]}))
    return np.memmap(raw, dtype=np.uint8, mode="r", shape=(count, *shape))


@register_dataset("time_channel_clips")
class TimeChannelClips(Dataset):
    """Clips of one long video as time-channel stacks, labelled by :func:`burst_labels`.

    The clip for frame ``i`` is frames ``[i - L + 1, i]`` with
    ``L = slices * slice_frames``, cut into ``slices`` groups of ``slice_frames``
    consecutive frames stacked as channels: ``(slices, slice_frames * C, H, W)``,
    ``(30, 4, H, W)`` for grayscale with the defaults. Only frames with a full clip and
    a full label horizon are samples (``L - 1 <= i <= T - 2 - horizon``), ``stride``
    apart. The label uses the frame differences of the frames as stored (after resizing
    and grayscale conversion, in [0, 1]).

    Videos are decoded once into a uint8 cache and memory-mapped (see
    :func:`decode_to_cache`); arrays (``.npy``/``.npz``/HDF5/Zarr) are memory-mapped.

    Sample: ``(clip, label)``, clip ``(slices, slice_frames * C, H, W)`` float32 in [0, 1]
    for uint8 sources, label an int64 scalar tensor.

    Args:
        source: a video file or an array file.
        slices: Default 30.
        slice_frames: Default 4.
        horizon: label horizon in frames. Default 45.
        min_range, fraction: thresholds of the label rule. Default 0.001 and 0.1.
        stride: frames between consecutive samples. Default 1.
        size: resize video frames to ``[H, W]`` (or an int) while decoding. Default ``None``.
        grayscale: decode video as grayscale. Default ``True``.
        axes: axis order of an array source, from ``T``, ``C``, ``H``, ``W``. Default ``"THW"``.
        key: array name in an ``.npz``/HDF5/Zarr container.
        split: ``None``, ``"train"``, ``"val"`` or ``"test"``: contiguous time ranges;
            a sample belongs to a split only if its clip and label horizon lie inside.
        split_fractions: Default ``[0.7, 0.15, 0.15]``.
        cache_dir: where decoded video frames are cached. Default: next to the video.
    """

    def __init__(
        self,
        source: str,
        slices: int = 30,
        slice_frames: int = 4,
        horizon: int = 45,
        min_range: float = 0.001,
        fraction: float = 0.1,
        stride: int = 1,
        size: int | list[int] | None = None,
        grayscale: bool = True,
        axes: str = "THW",
        key: str | None = None,
        split: str | None = None,
        split_fractions: list[float] | tuple[float, ...] = (0.7, 0.15, 0.15),
        cache_dir: str | None = None,
    ) -> None:
        self.source = Path(source)
        if not self.source.exists():
            raise FileNotFoundError(f"time-channels source not found: {self.source}")
        self.slices = check_int("slices", slices)
        self.slice_frames = check_int("slice_frames", slice_frames)
        self.horizon = check_int("horizon", horizon, 0)
        self.stride = check_int("stride", stride)
        check_choice("split", split, (None, *SPLITS))
        self.clip_length = self.slices * self.slice_frames
        if self.source.suffix.lower() in VIDEO_SUFFIXES:
            self.size, self.grayscale = as_size(size), bool(grayscale)
            self.frames = decode_to_cache(self.source, self.size, self.grayscale, cache_dir)
            self.axes = "THWC"
        else:
            self.key = key
            self.frames = open_array(self.source, key)[0]
            self.axes = parse_axes(axes, self.frames.shape, f"the array in {self.source}")
            if "N" in self.axes:
                raise ValueError(f"axes for {self.source} must not have N (one long video)")
        total = self.frames.shape[self.axes.index("T")]
        needed = self.clip_length + self.horizon + 1
        if total < needed:
            raise ValueError(
                f"{self.source} has {total} frames; a clip of {self.clip_length} frames plus "
                f"a label horizon of {self.horizon} needs at least {needed}"
            )
        self.differences = self._differences(total)
        self.all_labels = burst_labels(
            self.differences, self.horizon, min_range, fraction, self.clip_length - 1
        )
        lo, hi = (0, total) if split is None else time_split_bounds(total, split_fractions)[split]
        first = max(self.clip_length - 1, lo + self.clip_length - 1)
        last = min(total - 2 - self.horizon, hi - 2 - self.horizon)
        self.frame_index = np.arange(first, last + 1, self.stride, dtype=np.int64)
        if len(self.frame_index) == 0:
            warnings.warn(
                f"split {split!r} of {self.source} (frames [{lo}, {hi})) is too short for a "
                f"clip of {self.clip_length} frames plus a horizon of {self.horizon}: no samples",
                ConvLSTMWarning,
                stacklevel=2,
            )

    def _differences(self, total: int) -> np.ndarray:
        """:func:`frame_differences` of all frames, cached beside a decoded video's frames."""
        cache = None
        if isinstance(self.frames, np.memmap) and self.axes == "THWC":  # decoded video
            cache = Path(self.frames.filename).with_suffix(".diff.npy")
            if cache.is_file():
                values = np.load(cache)
                if len(values) == total - 1:
                    return values
        values = frame_differences(self._ordered(0, total))
        if cache is not None:
            np.save(cache, values)
        return values

    def __getstate__(self) -> dict:  # HDF5/Zarr sources are reopened by each worker
        state = self.__dict__.copy()
        if not isinstance(self.frames, np.memmap):
            state["frames"] = None
        return state

    def _ordered(self, start: int, stop: int) -> np.ndarray:
        """Frames ``[start, stop)`` as a ``(T, C, H, W)`` array (lazy for memory maps)."""
        if self.frames is None:
            self.frames = open_array(self.source, self.key)[0]
        selector = tuple(slice(start, stop) if a == "T" else slice(None) for a in self.axes)
        block = self.frames[selector]
        axes = self.axes if "C" in self.axes else self.axes + "C"
        if "C" not in self.axes:
            block = block[..., None]
        return block.transpose([axes.index(a) for a in "TCHW"])

    @property
    def labels(self) -> np.ndarray:
        """``(len(self),)`` int64 labels."""
        return self.all_labels[self.frame_index]

    @property
    def groups(self) -> list[str]:
        return [str(self.source)] * len(self.frame_index)

    @property
    def spans(self) -> np.ndarray:
        """Frames each sample uses: its clip and its label horizon."""
        i = self.frame_index
        return np.stack([i - self.clip_length + 1, i + self.horizon + 2], 1)

    def __len__(self) -> int:
        return len(self.frame_index)

    def preprocessing(self) -> Preprocessing:
        """The source's frames (a video decoded at ``size``, in colour unless
        ``grayscale``), 8-bit ones divided by 255, then ``slice_frames`` consecutive
        frames stacked as channels."""
        if self.axes == "THWC":  # a decoded video
            size = None if self.size is None else list(self.size)
            reader = {"kind": "video", "grayscale": self.grayscale, "size": size}
        else:
            reader = {"kind": "array"}
        steps = ({"op": "stack_time", "frames": self.slice_frames},)
        return Preprocessing(reader=reader, uint8="unit", steps=steps)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = int(self.frame_index[index])
        preprocessing = self.preprocessing()
        block = self._ordered(i - self.clip_length + 1, i + 1)
        clip = preprocessing(preprocessing.to_float(block))
        return clip, torch.tensor(self.all_labels[i], dtype=torch.long)
