"""Class folders of videos (``root/<class>/<clip>.mp4``) or of frame images."""

from __future__ import annotations

import hashlib
import json
import math
import os
import reprlib
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checks import as_size, check_choice, check_int
from ..runtime import ConvLSTMWarning
from ._utils import SPLITS, natural_key, optional_import
from .augment import jitter_start
from .preprocessing import Preprocessing
from .registry import register_dataset
from .splits import split_by_time, split_groups

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
INDEX_VERSION = 1


def _warn_list(what: str, items: list[tuple[str, str]], root: Path, verb: str = "skipped") -> None:
    shown = "; ".join(f"{Path(p).relative_to(root)}: {r}" for p, r in items[:5])
    more = f"; and {len(items) - 5} more" if len(items) > 5 else ""
    # stacklevel 5: _warn_list <- _scan/_build_index <- _ClipFolder <- subclass <- caller
    warnings.warn(
        f"{verb} {len(items)} {what} under {root}: {shown}{more}", ConvLSTMWarning, stacklevel=5
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entry_problem(entry: Any) -> str | None:
    """Why one cached video entry cannot be trusted, or ``None``."""
    if not isinstance(entry, dict):
        return f"expected an object, got {type(entry).__name__}"
    size = entry.get("size")
    if not _is_int(size) or size < 0:
        return f"size must be a byte count, got {reprlib.repr(size)}"
    if not _is_int(entry.get("mtime_ns")):
        return f"mtime_ns must be an integer, got {reprlib.repr(entry.get('mtime_ns'))}"
    if "error" in entry:
        error = entry["error"]
        return None if isinstance(error, str) else f"error must be text, got {reprlib.repr(error)}"
    frames = entry.get("frames")
    # Every frame is stored in at least one byte of the file, so a count above the file's
    # size is impossible whatever the codec.
    if not _is_int(frames) or not 1 <= frames <= size:
        return (
            f"frames must be an integer from 1 to the file size {size}, got {reprlib.repr(frames)}"
        )
    for key in ("height", "width"):
        if key in entry and (not _is_int(entry[key]) or entry[key] < 0):
            return f"{key} must be a pixel count, got {reprlib.repr(entry[key])}"
    fps = entry.get("fps", 0.0)
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not 0 <= fps < math.inf:
        return f"fps must be a finite number >= 0, got {reprlib.repr(fps)}"
    return None


def _index_problem(data: Any) -> str | None:
    """Why a parsed index file cannot be trusted, or ``None``."""
    if not isinstance(data, dict):
        return f"expected a JSON object, got {type(data).__name__}"
    if data.get("version") != INDEX_VERSION:
        return f"'version' must be {INDEX_VERSION}, got {reprlib.repr(data.get('version'))}"
    if not isinstance(data.get("count"), bool):
        return f"'count' must be true or false, got {reprlib.repr(data.get('count'))}"
    videos = data.get("videos")
    if not isinstance(videos, dict):
        return f"'videos' must map file names to entries, got {type(videos).__name__}"
    for rel, entry in videos.items():
        problem = _entry_problem(entry)
        if problem is not None:
            return f"videos[{rel!r}]: {problem}"
    return None


_EMPTY_SPLIT_HINTS = {
    "clip": "each class's sources are shared out by the fractions, so every split needs "
    "enough of them per class; add data, change split_fractions or use split_by='time'",
    "time": "each source's frames are cut at the fractions and a clip must fit inside one "
    "part; use shorter clips, change split_fractions or use split_by='clip'",
}


class _ClipFolder(Dataset, ABC):
    """Shared logic: class scan, clip index, splits, jitter and failure replacement.

    Subclasses fill ``self.sources`` (``[path, class_index, num_frames]`` per source)
    and implement ``_read(path, indices) -> (T, H, W, C) uint8``.
    """

    kind = "clip"

    def __init__(
        self,
        root: str,
        frames: int,
        frame_step: int,
        clip_stride: int | None,
        size: int | list[int] | None,
        grayscale: bool,
        classes: list[str] | None,
        max_clips_per_video: int | None,
        temporal_jitter: int,
        short_clips: str,
        split: str | None,
        split_by: str,
        split_fractions: Sequence[float],
        seed: int,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.kind} folder not found: {self.root}")
        self.frames = check_int("frames", frames)
        self.frame_step = check_int("frame_step", frame_step)
        self.span = (self.frames - 1) * self.frame_step + 1
        self.clip_stride = check_int("clip_stride", clip_stride or self.span)
        self.size, self.grayscale = as_size(size), bool(grayscale)
        self.temporal_jitter = check_int("temporal_jitter", temporal_jitter, 0)
        self.short_clips = check_choice("short_clips", short_clips, ("skip", "pad"))
        check_choice("split", split, (None, *SPLITS))
        check_choice("split_by", split_by, ("clip", "time"))
        found = sorted(d.name for d in self.root.iterdir() if d.is_dir() and d.name[0] != ".")
        if classes is not None:
            missing = sorted(set(classes) - set(found))
            if missing:
                raise ValueError(f"class folders {missing} not found under {self.root}")
        self.classes = list(classes) if classes is not None else found
        if not self.classes:
            raise ValueError(
                f"no class folders under {self.root}; expected {self.root}/<class>/<clip>"
            )
        self.skipped: list[tuple[str, str]] = []
        self.failed: dict[str, str] = {}
        self.sources: list[tuple[str, int, int]] = []
        self._scan()
        self._build_index(max_clips_per_video, split, split_by, split_fractions, seed)

    @abstractmethod
    def _scan(self) -> None:
        """Find the clips' files (``VideoFolder``: videos; ``FrameFolder``: frame lists)."""

    @abstractmethod
    def _read(self, path: str, indices: list[int]) -> np.ndarray:
        """Decode frames ``indices`` of clip ``path`` as ``(len(indices), H, W, C)`` uint8."""

    def _build_index(self, max_clips, split, split_by, fractions, seed) -> None:
        short, rows = [], []
        for s, (path, _, n) in enumerate(self.sources):
            if n < self.span:
                short.append((path, f"{n} frames, a clip needs {self.span}"))
                if self.short_clips == "pad":
                    rows.append((s, 0))
                continue
            starts = np.arange(0, n - self.span + 1, self.clip_stride)
            if max_clips and len(starts) > max_clips:
                starts = starts[np.linspace(0, len(starts) - 1, max_clips).round().astype(int)]
            rows.extend((s, int(t)) for t in starts)
        if short:
            verb = "padded" if self.short_clips == "pad" else "skipped"
            _warn_list(f"{self.kind}s shorter than a clip", short, self.root, verb)
            if self.short_clips == "skip":
                self.skipped.extend((p, f"too short: {r}") for p, r in short)
        if not rows:
            raise ValueError(
                f"no clip of {self.frames} frames (frame_step={self.frame_step}) can be cut "
                f"from the {len(self.sources)} readable {self.kind}s under {self.root}"
            )
        self.index = np.array(rows, dtype=np.int64)
        if split is not None:
            if split_by == "clip":
                parts = split_groups(self.groups, fractions, seed, self.labels)
            else:
                parts = split_by_time(self.spans, fractions, self.groups)
            self.index = self.index[parts[split]]
            if not len(self.index):
                raise ValueError(
                    f"split {split!r} of the {len(self.sources)} {self.kind}s under {self.root} "
                    f"has no samples (split_by={split_by!r}, split_fractions "
                    f"{list(fractions)}, frames={self.frames}, frame_step={self.frame_step}): "
                    + _EMPTY_SPLIT_HINTS[split_by]
                )

    @property
    def labels(self) -> np.ndarray:
        """``(len(self),)`` int64 class indices."""
        return np.array([self.sources[s][1] for s in self.index[:, 0]], dtype=np.int64)

    @property
    def groups(self) -> list[str]:
        """The source (video file or frame folder) of each sample."""
        return [self.sources[s][0] for s in self.index[:, 0]]

    @property
    def spans(self) -> np.ndarray:
        return np.stack([self.index[:, 1], self.index[:, 1] + self.span], 1)

    def summary(self) -> dict:
        """Counts of sources, clips and skipped or failed sources, for logs and reports."""
        return {
            "root": str(self.root),
            "classes": self.classes,
            f"{self.kind}s": len(self.sources),
            "clips": len(self),
            "skipped": len(self.skipped),
            "failed_reads": len(self.failed),
            "skipped_files": [{"path": p, "reason": r} for p, r in self.skipped],
            "failed_files": [{"path": p, "reason": r} for p, r in self.failed.items()],
        }

    def __len__(self) -> int:
        return len(self.index)

    def _clip(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, start = (int(v) for v in self.index[index])
        path, label, n = self.sources[s]
        start = jitter_start(start, self.temporal_jitter, 0, max(0, n - self.span))
        indices = [min(start + k * self.frame_step, n - 1) for k in range(self.frames)]
        array = self._read(path, indices)
        clip = self.preprocessing().to_float(array.transpose(0, 3, 1, 2))
        return clip, torch.tensor(label, dtype=torch.long)

    def preprocessing(self) -> Preprocessing:
        """Frames decoded at ``size``, grayscale or colour, every ``frame_step``-th,
        8-bit pixels divided by 255."""
        size = None if self.size is None else list(self.size)
        reader = {"kind": "video", "grayscale": self.grayscale, "size": size,
                  "frame_step": self.frame_step}  # fmt: skip
        return Preprocessing(reader=reader, uint8="unit")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The clip ``(frames, C, H, W)`` and its label; an unreadable source is skipped
        with a warning (counted in :meth:`summary`) and the next readable clip returned."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        for k in range(len(self)):
            i = (index + k) % len(self)
            path = self.sources[int(self.index[i, 0])][0]
            if path in self.failed:
                continue
            try:
                return self._clip(i)
            except (ValueError, OSError, RuntimeError, EOFError) as err:
                self.failed[path] = str(err)
                warnings.warn(
                    f"skipping unreadable {self.kind} {path} ({err}); "
                    f"{len(self.failed)} failed so far, see summary()",
                    ConvLSTMWarning,
                    stacklevel=2,
                )
        raise RuntimeError(f"every {self.kind} under {self.root} failed to read: {self.failed}")


@register_dataset("video_folder")
class VideoFolder(_ClipFolder):
    """Videos in class folders, ``root/<class>/<clip>.mp4|avi|mkv|webm`` (UCF101 layout).

    Clips of ``frames`` frames, ``frame_step`` apart, start every ``clip_stride`` frames
    of each video. Decoding with PyAV (``convlstm[video]``) is lazy: only a clip's frames
    are decoded, when it is read. The frame counts of all videos are found once and
    cached in an index file (``root/.convlstm_index.json``, or ``cache_dir``), reused
    while file sizes and modification times are unchanged; an index with impossible
    values (a frame count below 1 or above the file's size in bytes, wrong types) is
    rebuilt with one warning naming it. Unreadable videos are
    skipped with one warning and listed by :meth:`summary`; a video that fails while
    reading is skipped from then on and another clip is returned instead.

    Sample: ``(clip, label)``, clip ``(frames, C, H, W)`` float32 in [0, 1] (``C`` = 1
    with ``grayscale``, else 3), label an int64 scalar tensor.

    Args:
        root: the folder of class folders.
        frames: frames per clip. Default 16.
        frame_step: take every ``frame_step``-th frame. Default 1.
        clip_stride: frames between clip starts. Default: the clip's span
            (non-overlapping clips).
        size: resize to ``[H, W]`` (or an int for a square) while decoding. Default 112.
        grayscale: Default ``False``.
        classes: class folder names to use, in label order. Default: all, sorted.
        extensions: video file suffixes. Default ``[".mp4", ".avi", ".mkv", ".webm"]``.
        max_clips_per_video: keep at most this many evenly spaced clips per video.
        temporal_jitter: move each clip's start by up to this many frames at random
            (for training). Default 0.
        short_clips: ``"skip"`` videos shorter than a clip (with a warning) or
            ``"pad"`` them by repeating the last frame. Default ``"skip"``.
        split: ``None``, ``"train"``, ``"val"`` or ``"test"``.
        split_by: ``"clip"`` (whole videos, stratified by class) or ``"time"`` (each
            video cut in time). Default ``"clip"``.
        split_fractions: Default ``[0.7, 0.15, 0.15]``.
        seed: split seed. Default 0.
        cache_dir: folder for the index file. Default: ``root`` (or the user cache when
            ``root`` is read-only).
        count_frames: count frames by decoding instead of trusting container headers
            (slow, exact). Default ``False``.
    """

    kind = "video"

    def __init__(
        self,
        root: str,
        frames: int = 16,
        frame_step: int = 1,
        clip_stride: int | None = None,
        size: int | list[int] | None = 112,
        grayscale: bool = False,
        classes: list[str] | None = None,
        extensions: list[str] | tuple[str, ...] = VIDEO_EXTENSIONS,
        max_clips_per_video: int | None = None,
        temporal_jitter: int = 0,
        short_clips: str = "skip",
        split: str | None = None,
        split_by: str = "clip",
        split_fractions: list[float] | tuple[float, ...] = (0.7, 0.15, 0.15),
        seed: int = 0,
        cache_dir: str | None = None,
        count_frames: bool = False,
    ) -> None:
        optional_import("av", "video", "VideoFolder")
        self.extensions = tuple(e.lower() for e in extensions)
        self.cache_dir, self.count_frames = cache_dir, bool(count_frames)
        super().__init__(
            root, frames, frame_step, clip_stride, size, grayscale, classes,
            max_clips_per_video, temporal_jitter, short_clips, split, split_by,
            split_fractions, seed,
        )  # fmt: skip

    def index_path(self) -> Path:
        """Where the frame-count index is cached."""
        name = ".convlstm_index.json"
        if self.cache_dir is not None:
            key = hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:12]
            return Path(self.cache_dir) / f"video-index-{key}.json"
        if os.access(self.root, os.W_OK):
            return self.root / name
        key = hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:12]
        return Path.home() / ".cache" / "convlstm" / f"video-index-{key}.json"

    def _load_index(self, path: Path) -> dict:
        """The cached entries of ``path``, or ``{}`` (everything re-probed) when there is
        none, it belongs to another format version or counting mode, or it is damaged."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as err:
            problem = f"cannot read it ({err})"
        except ValueError as err:
            problem = f"not valid JSON ({err})"
        else:
            if isinstance(data, dict) and data.get("version", INDEX_VERSION) != INDEX_VERSION:
                return {}  # another version's format: replaced, not inspected
            problem = _index_problem(data)
            if problem is None:
                return data["videos"] if data["count"] == self.count_frames else {}
        # stacklevel 5: _load_index <- _scan <- _ClipFolder <- VideoFolder <- caller
        warnings.warn(
            f"ignoring the video index {path}: {problem}; re-probing every video and rewriting it",
            ConvLSTMWarning,
            stacklevel=5,
        )
        return {}

    def _scan(self) -> None:
        from ._av import probe_video

        index_file = self.index_path()
        cached, fresh, changed = self._load_index(index_file), {}, False
        for label, name in enumerate(self.classes):
            files = sorted((self.root / name).iterdir(), key=lambda p: natural_key(p.name))
            for file in files:
                if not file.is_file() or file.suffix.lower() not in self.extensions:
                    continue
                rel, stat = str(file.relative_to(self.root)), file.stat()
                entry = cached.get(rel)
                if entry is None or [entry["size"], entry["mtime_ns"]] != [
                    stat.st_size,
                    stat.st_mtime_ns,
                ]:
                    entry, changed = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}, True
                    try:
                        entry.update(probe_video(file, count=self.count_frames))
                    except ValueError as err:
                        entry["error"] = str(err).replace(f"cannot decode video {file}: ", "")
                fresh[rel] = entry
                if "error" in entry:
                    self.skipped.append((str(file), entry["error"]))
                else:
                    self.sources.append((str(file), label, int(entry["frames"])))
        if changed or set(fresh) != set(cached):
            self._save_index(index_file, fresh)
        if self.skipped:
            _warn_list("unreadable videos", self.skipped, self.root)
        if not fresh:
            raise ValueError(
                f"no videos ({', '.join(self.extensions)}) found under {self.root}; "
                f"expected {self.root}/<class>/<clip>.mp4 for classes {self.classes}"
            )
        if not self.sources:
            raise ValueError(f"none of the {len(fresh)} videos under {self.root} is readable")

    def _save_index(self, path: Path, videos: dict) -> None:
        data = {"version": INDEX_VERSION, "count": self.count_frames, "videos": videos}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, path)
        except OSError as err:
            warnings.warn(
                f"could not write the video index {path}: {err}", ConvLSTMWarning, stacklevel=3
            )

    def _read(self, path: str, indices: list[int]) -> np.ndarray:
        from ._av import read_frames

        return read_frames(path, indices, self.size, self.grayscale)


@register_dataset("frame_folder")
class FrameFolder(_ClipFolder):
    """Folders of frame images in class folders, ``root/<class>/<clip>/*.png|jpg``.

    Frames are ordered by natural sort of their names (``2.png`` before ``10.png``) and
    read lazily with Pillow (``convlstm[data]``). Clips, splits, jitter and unreadable
    images behave as in :class:`VideoFolder`; folders without images are skipped with a
    warning.

    Sample: ``(clip, label)``, clip ``(frames, C, H, W)`` float32 in [0, 1], label an
    int64 scalar tensor.

    Args: as :class:`VideoFolder`, with ``size`` defaulting to ``None`` (keep the image
    size; all frames of a clip must then share it) and ``extensions`` to image suffixes.
    """

    kind = "frame folder"

    def __init__(
        self,
        root: str,
        frames: int = 16,
        frame_step: int = 1,
        clip_stride: int | None = None,
        size: int | list[int] | None = None,
        grayscale: bool = False,
        classes: list[str] | None = None,
        extensions: list[str] | tuple[str, ...] = IMAGE_EXTENSIONS,
        max_clips_per_video: int | None = None,
        temporal_jitter: int = 0,
        short_clips: str = "skip",
        split: str | None = None,
        split_by: str = "clip",
        split_fractions: list[float] | tuple[float, ...] = (0.7, 0.15, 0.15),
        seed: int = 0,
    ) -> None:
        optional_import("PIL.Image", "data", "FrameFolder")
        self.extensions = tuple(e.lower() for e in extensions)
        self.files: dict[str, list[str]] = {}
        super().__init__(
            root, frames, frame_step, clip_stride, size, grayscale, classes,
            max_clips_per_video, temporal_jitter, short_clips, split, split_by,
            split_fractions, seed,
        )  # fmt: skip

    def _scan(self) -> None:
        empty = []
        for label, name in enumerate(self.classes):
            for clip in sorted((self.root / name).iterdir(), key=lambda p: natural_key(p.name)):
                if not clip.is_dir():
                    continue
                images = sorted(
                    (f.name for f in clip.iterdir() if f.suffix.lower() in self.extensions),
                    key=natural_key,
                )
                if not images:
                    empty.append((str(clip), f"no {'/'.join(self.extensions)} images"))
                    continue
                self.files[str(clip)] = images
                self.sources.append((str(clip), label, len(images)))
        if empty:
            self.skipped.extend(empty)
            _warn_list("empty frame folders", empty, self.root)
        if not self.sources:
            raise ValueError(
                f"no frame folders with images found under {self.root}; expected "
                f"{self.root}/<class>/<clip>/*.png for classes {self.classes}"
            )

    def _read(self, path: str, indices: list[int]) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        out, first = [], None
        for i in indices:
            file = Path(path) / self.files[path][i]
            try:
                with Image.open(file) as image:
                    image = image.convert("L" if self.grayscale else "RGB")
                    if self.size is not None:
                        image = image.resize(self.size[::-1], Image.Resampling.BILINEAR)
                    array = np.asarray(image)
            except (UnidentifiedImageError, OSError, SyntaxError) as err:
                raise ValueError(f"cannot read image {file}: {err}") from err
            first = array.shape if first is None else first
            if array.shape != first:
                raise ValueError(
                    f"image {file} is {array.shape[:2]} but the clip's first frame is "
                    f"{first[:2]}; set size=[H, W] to resize"
                )
            out.append(array[..., None] if array.ndim == 2 else array)
        return np.stack(out)
