"""SimilarMotions: same object, slightly different motion; single frames carry no class."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..checks import check_choice, check_int
from ._utils import SPLIT_CODES, sample_rng
from .preprocessing import Preprocessing
from .registry import register_dataset

MOTIONS = ("gentle", "jerky", "accelerating", "pausing")

# (row offset, col offset, row radius, col radius, angle) of the hand's parts at size 64
_HAND = (
    (0.0, 0.0, 8.0, 7.0, 0.0),  # palm
    (11.0, -5.2, 5.0, 1.7, 0.12),  # four fingers pointing down
    (12.5, -1.8, 5.8, 1.7, 0.04),
    (12.2, 1.7, 5.5, 1.7, -0.04),
    (10.5, 4.9, 4.4, 1.6, -0.14),
    (3.0, -9.0, 4.2, 1.9, 0.9),  # thumb
)


def motion_steps(
    motion: str, num_steps: int, speed: float, difficulty: float, rng: np.random.Generator
) -> np.ndarray:
    """Downward step (px) between consecutive frames for one motion profile.

    ``"gentle"`` moves ``speed`` px every frame. The others move faster on average by
    ``1 + 0.5 (1 - difficulty)`` and vary their steps by a relative amplitude
    ``0.15 + 0.75 (1 - difficulty)``: ``"jerky"`` at random, ``"accelerating"`` linearly
    from slow to fast, ``"pausing"`` by stopping on random frames.

    Returns:
        ``(num_steps,)`` non-negative float array.
    """
    fast = speed * (1 + 0.5 * (1 - difficulty))
    amplitude = 0.15 + 0.75 * (1 - difficulty)
    if motion == "gentle":
        steps = np.full(num_steps, speed)
    elif motion == "jerky":
        steps = fast * (1 + amplitude * rng.uniform(-1, 1, num_steps))
    elif motion == "accelerating":
        steps = fast * np.linspace(1 - amplitude, 1 + amplitude, num_steps)
    elif motion == "pausing":
        pause = 0.5 * amplitude
        moving = rng.random(num_steps) >= pause
        steps = fast / (1 - pause) * moving
    else:
        raise ValueError(f"unknown motion {motion!r}; expected one of {list(MOTIONS)}")
    return np.clip(steps, 0, None)


def _shift(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Shift by a sub-pixel amount with wrap-around (bilinear between integer shifts)."""
    out = np.zeros_like(image)
    iy, ix = int(np.floor(dy)), int(np.floor(dx))
    fy, fx = dy - iy, dx - ix
    for sy, wy in ((iy, 1 - fy), (iy + 1, fy)):
        for sx, wx in ((ix, 1 - fx), (ix + 1, fx)):
            if wy * wx > 0:
                out += wy * wx * np.roll(image, (sy, sx), (0, 1))
    return out


@register_dataset("similar_motions")
class SimilarMotions(Dataset):
    """Clips of a hand-like blob moving down over a textured, noisy background.

    Every class shows the same object; only its motion differs (see
    :func:`motion_steps`): class 0 ``"gentle"`` moves at a constant speed, class 1
    ``"jerky"`` slightly faster with uneven steps; with 4 classes ``"accelerating"`` and
    ``"pausing"`` join. ``difficulty`` in [0, 1] brings speeds and jerk closer (1 is
    hardest). The field wraps around vertically (what leaves at the bottom enters at the
    top) and the start row is uniform, so in any single frame the object's position is
    uniform whatever its class: appearance alone cannot reveal the class. Shape, size,
    brightness, horizontal position, background texture and base speed (+-15 %) vary per
    clip independently of the class.

    Sample ``index`` has label ``index % num_classes`` and is generated from
    ``(seed, split, index)``; with ``resample=True`` the training split draws fresh clips
    every epoch (:meth:`set_epoch`, called by the training loop), from
    ``(seed, split, index, epoch)`` after the first: as many distinct clips as the
    training sees, at no extra cost since clips are generated when read anyway.

    Sample: ``(clip, label)`` with ``clip`` ``(frames, 1, image_size, image_size)``
    float32 in [0, 1] and ``label`` an int64 scalar tensor.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (independent draws). Default ``"train"``.
        num_samples: clips. Default 1000.
        classes: number of classes (2 to 4) or a list of motion names from
            ``"gentle"``, ``"jerky"``, ``"accelerating"``, ``"pausing"``. Default 2.
        frames: clip length. Default 16.
        image_size: frame side in px. Default 64.
        difficulty: 0 (easy) to 1 (hard). Default 0.5.
        speed: base speed in px/frame at size 64 (scaled with ``image_size``). Default 1.5.
        noise: standard deviation of per-frame Gaussian pixel noise. Default 0.05.
        texture: contrast of the static background texture. Default 0.3.
        seed: Default 0.
        resample: fresh training clips every epoch (no effect on ``"val"``/``"test"``).
            Default ``False``.
    """

    def __init__(
        self,
        split: str = "train",
        num_samples: int = 1000,
        classes: int | list[str] = 2,
        frames: int = 16,
        image_size: int = 64,
        difficulty: float = 0.5,
        speed: float = 1.5,
        noise: float = 0.05,
        texture: float = 0.3,
        seed: int = 0,
        resample: bool = False,
    ) -> None:
        self.split = check_choice("split", split, tuple(SPLIT_CODES))
        if isinstance(classes, int):
            if not 2 <= classes <= len(MOTIONS):
                raise ValueError(f"classes must be 2 to {len(MOTIONS)} or a list, got {classes}")
            classes = list(MOTIONS[:classes])
        for name in classes:
            check_choice("each entry of classes", name, MOTIONS)
        if len(set(classes)) != len(classes) or len(classes) < 2:
            raise ValueError(f"classes must name at least 2 distinct motions, got {classes!r}")
        if not 0 <= difficulty <= 1:
            raise ValueError(f"difficulty must be in [0, 1], got {difficulty!r}")
        self.classes = list(classes)
        self.num_samples = check_int("num_samples", num_samples)
        self.frames = check_int("frames", frames, 2)
        self.image_size = check_int("image_size", image_size, 16)
        self.difficulty = float(difficulty)
        self.speed, self.noise, self.texture = float(speed), float(noise), float(texture)
        self.seed = int(seed)
        self.resample = bool(resample)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw fresh training clips for ``epoch`` if ``resample`` (else no effect)."""
        self.epoch = int(epoch)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> np.ndarray:
        """``(num_samples,)`` int64 labels, known without generating any clip."""
        return np.arange(self.num_samples) % self.num_classes

    def __len__(self) -> int:
        return self.num_samples

    def trajectory(self, index: int) -> np.ndarray:
        """Row of the object's centre in each frame ``(frames,)``, wrapped to ``[0, H)``."""
        return self._draw(index)["rows"]

    def preprocessing(self) -> Preprocessing:
        """Generated intensities in [0, 1]: files given to a trained model are taken as
        they are, 8-bit ones divided by 255."""
        return Preprocessing(uint8="unit")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        p = self._draw(index)
        size = self.image_size
        sprite = self._hand(p["scale"], p["angle"])  # centred at (size / 2, size / 2)
        clip = np.empty((self.frames, size, size), np.float32)
        for t, (row, col) in enumerate(zip(p["rows"], p["cols"])):
            alpha = _shift(sprite, row - size / 2, col - size / 2)
            frame = p["background"] * (1 - alpha) + p["brightness"] * alpha
            clip[t] = frame + p["rng"].normal(0, self.noise, frame.shape)
        label = torch.tensor(index % self.num_classes, dtype=torch.long)
        return torch.from_numpy(np.clip(clip, 0, 1))[:, None], label

    def _hand(self, size_factor: float, rotation: float) -> np.ndarray:
        """Soft (anti-aliased) hand mask ``(S, S)`` in [0, 1], centred in the frame."""
        size, scale = self.image_size, self.image_size / 64
        rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) - size / 2
        alpha = np.zeros((size, size))
        for oy, ox, ry, rx, angle in _HAND:
            a = angle + rotation
            cy, cx = rows / scale / size_factor - oy, cols / scale / size_factor - ox
            u = cy * np.cos(a) + cx * np.sin(a)
            v = -cy * np.sin(a) + cx * np.cos(a)
            r = np.sqrt((u / ry) ** 2 + (v / rx) ** 2)
            np.maximum(alpha, np.clip((1 - r) * min(ry, rx) * scale + 0.5, 0, 1), out=alpha)
        return alpha

    def _draw(self, index: int) -> dict:
        keys = [SPLIT_CODES[self.split], index]
        if self.resample and self.split == "train" and self.epoch > 0:
            keys.append(self.epoch)  # epoch 0 draws what resample=False draws
        rng = sample_rng(self.seed, *keys)
        size = self.image_size
        motion = self.classes[index % self.num_classes]
        speed = self.speed * size / 64 * rng.uniform(0.85, 1.15)
        steps = motion_steps(motion, self.frames - 1, speed, self.difficulty, rng)
        rows = (rng.uniform(0, size) + np.concatenate([[0], np.cumsum(steps)])) % size
        cols = rng.uniform(0.35, 0.65) * size + rng.normal(0, 0.15) * np.arange(self.frames)
        coarse = torch.from_numpy(rng.random((1, 1, 6, 6)).astype(np.float32))
        smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
        grain = rng.random((size, size)) * 0.3
        background = self.texture * (0.7 * smooth[0, 0].numpy() + grain) + 0.1
        return {
            "rows": rows,
            "cols": cols,
            "scale": rng.uniform(0.85, 1.15),
            "angle": rng.uniform(-0.3, 0.3),
            "brightness": rng.uniform(0.65, 0.85),
            "background": background,
            "rng": rng,
        }
