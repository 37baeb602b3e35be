"""Moving digits (the Moving MNIST protocol as OpenSTL generates it) and its fixed test file."""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..checks import check_choice, check_int
from ._utils import SPLIT_CODES, optional_import, sample_rng
from .preprocessing import Preprocessing
from .registry import register_dataset


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """Read an MNIST-format idx image file (``train-images-idx3-ubyte[.gz]``).

    Works for MNIST, Fashion-MNIST, KMNIST and any other ``uint8`` idx3 file.

    Returns:
        ``(N, H, W)`` uint8 array.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an idx3 ``uint8`` file, or truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"idx image file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read idx file {path}: {err}") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] != 3:
        raise ValueError(
            f"{path} is not an MNIST idx3 uint8 image file: expected magic bytes "
            f"00 00 08 03, got {data[:4].hex(' ') or 'an empty file'}"
        )
    dims = np.frombuffer(data, dtype=">u4", count=3, offset=4).astype(int)
    expected = 16 + int(np.prod(dims))
    if len(data) < expected:
        raise ValueError(
            f"idx file {path} is truncated: header says {tuple(dims)} images "
            f"({expected} bytes), file has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, count=int(np.prod(dims)), offset=16).reshape(dims)


@functools.lru_cache(maxsize=4)
def _sklearn_digits(digit_size: int) -> np.ndarray:
    """sklearn's 1797 bundled 8x8 digits, upscaled to a centred ``digit_size`` box, in [0, 1]."""
    datasets = optional_import("sklearn.datasets", "data", "MovingDigits(digits='sklearn')")
    images = torch.from_numpy(datasets.load_digits().images.astype(np.float32) / 16.0)
    inner = round(digit_size * 20 / 28)  # MNIST digits fill the central 20x20 of 28x28
    up = F.interpolate(images[:, None], size=(inner, inner), mode="bilinear", align_corners=False)
    pad = digit_size - inner
    up = F.pad(up, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
    return up[:, 0].clamp(0, 1).numpy()


def load_digit_images(digits: str, digit_size: int = 28) -> np.ndarray:
    """Digit images for :class:`MovingDigits`: ``"sklearn"`` or a path to an idx file.

    Returns:
        ``(N, digit_size, digit_size)`` float32 array in [0, 1].
    """
    if digits == "sklearn":
        return _sklearn_digits(digit_size)
    images = read_idx_images(digits).astype(np.float32) / 255.0
    if images.shape[1:] != (digit_size, digit_size):
        resized = F.interpolate(
            torch.from_numpy(images)[:, None], size=(digit_size, digit_size), mode="bilinear"
        )
        images = resized[:, 0].clamp(0, 1).numpy()
    return images


@register_dataset("moving_digits")
class MovingDigits(Dataset):
    """Moving digits generated on the fly, as OpenSTL generates Moving MNIST.

    Each digit starts at a uniform random position of the free range
    ``image_size - digit_size`` (36 px by default) with a uniform random direction, moves
    ``step_length`` of the free range per frame (0.1 -> 3.6 px) and bounces off the edges;
    positions are truncated to whole pixels and overlapping digits are merged by
    ``max``. Values are in [0, 1].

    Sample ``index`` is generated from ``(seed, split, epoch, index)``: the same seed gives
    the same data. The training split changes with :meth:`set_epoch` (fresh sequences
    each epoch, still reproducible); ``"val"``/``"test"`` are fixed sets. Digit images
    are split too: training uses the first ``1 - holdout`` of them, ``"val"``/``"test"``
    the rest, so test sequences never show a training digit image.

    Sample: ``(inputs, targets)`` of shapes ``(input_frames, 1, H, W)`` and
    ``(output_frames, 1, H, W)``, float32.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``. Default ``"train"``.
        num_samples: sequences per epoch. Default 10000.
        num_digits: digits per sequence. Default 2.
        input_frames, output_frames: Default 10 and 10.
        image_size: canvas side in px. Default 64.
        digit_size: digit side in px. Default 28.
        step_length: step per frame as a fraction of the free range. Default 0.1.
        digits: ``"sklearn"`` (scikit-learn's bundled 8x8 digits upscaled; needs
            ``convlstm[data]``) or a path to an MNIST-format idx file, e.g.
            ``train-images-idx3-ubyte.gz`` of MNIST or Fashion-MNIST. Default ``"sklearn"``.
        holdout: fraction of digit images kept for ``"val"``/``"test"``. Default 0.2.
        seed: Default 0.
    """

    def __init__(
        self,
        split: str = "train",
        num_samples: int = 10000,
        num_digits: int = 2,
        input_frames: int = 10,
        output_frames: int = 10,
        image_size: int = 64,
        digit_size: int = 28,
        step_length: float = 0.1,
        digits: str = "sklearn",
        holdout: float = 0.2,
        seed: int = 0,
    ) -> None:
        self.split = check_choice("split", split, tuple(SPLIT_CODES))
        self.num_samples = check_int("num_samples", num_samples)
        self.num_digits = check_int("num_digits", num_digits)
        self.input_frames = check_int("input_frames", input_frames)
        self.output_frames = check_int("output_frames", output_frames, 0)
        self.image_size = check_int("image_size", image_size)
        self.digit_size = check_int("digit_size", digit_size)
        if self.digit_size > self.image_size:
            raise ValueError(f"digit_size ({digit_size}) must not exceed image_size ({image_size})")
        if not 0 <= holdout < 1:
            raise ValueError(f"holdout must be in [0, 1), got {holdout!r}")
        self.step_length = float(step_length)
        self.seed = int(seed)
        self.epoch = 0
        images = load_digit_images(digits, self.digit_size)
        cut = len(images) - round(holdout * len(images))
        self.digit_images = images[:cut] if split == "train" or holdout == 0 else images[cut:]
        if len(self.digit_images) == 0:
            raise ValueError(f"no digit images left for split {split!r} with holdout={holdout}")

    @property
    def num_frames(self) -> int:
        return self.input_frames + self.output_frames

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Draw fresh training sequences for ``epoch`` (no effect on val/test)."""
        self.epoch = int(epoch)

    def trajectories(self, index: int) -> np.ndarray:
        """Sub-pixel digit positions ``(num_digits, T, 2)`` as ``(row, col)`` in px."""
        return self._draw(index)[0]

    def sequence(self, index: int) -> torch.Tensor:
        """The whole sequence ``(T, 1, H, W)`` (inputs then targets)."""
        positions, choices = self._draw(index)
        frames = np.zeros((self.num_frames, self.image_size, self.image_size), np.float32)
        d = self.digit_size
        for digit, path in zip(choices, positions.astype(np.int32)):
            image = self.digit_images[digit]
            for t, (top, left) in enumerate(path):
                window = frames[t, top : top + d, left : left + d]
                np.maximum(window, image, out=window)
        return torch.from_numpy(frames)[:, None]

    def preprocessing(self) -> Preprocessing:
        """Generated intensities in [0, 1]: files given to a trained model are taken as
        they are, 8-bit ones divided by 255."""
        return Preprocessing(uint8="unit")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        frames = self.sequence(index)
        return frames[: self.input_frames], frames[self.input_frames :]

    def _draw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        epoch = self.epoch if self.split == "train" else 0
        rng = sample_rng(self.seed, SPLIT_CODES[self.split], epoch, index)
        free = self.image_size - self.digit_size
        positions = np.empty((self.num_digits, self.num_frames, 2))
        choices = np.empty(self.num_digits, dtype=np.int64)
        for n in range(self.num_digits):
            y, x = rng.random(2)
            theta = rng.random() * 2 * np.pi
            vy, vx = np.sin(theta), np.cos(theta)
            for t in range(self.num_frames):  # OpenSTL: move, bounce, then record
                y, x = y + vy * self.step_length, x + vx * self.step_length
                if x <= 0 or x >= 1:
                    x, vx = min(max(x, 0.0), 1.0), -vx
                if y <= 0 or y >= 1:
                    y, vy = min(max(y, 0.0), 1.0), -vy
                positions[n, t] = (y * free, x * free)
            choices[n] = rng.integers(len(self.digit_images))
        return positions, choices


@register_dataset("moving_digits_file")
class MovingDigitsFile(Dataset):
    """The fixed Moving MNIST test file ``mnist_test_seq.npy`` (memory-mapped).

    The file holds ``(20, N, 64, 64)`` uint8 (time first, as distributed); values are
    scaled to [0, 1].

    Sample: ``(inputs, targets)`` of shapes ``(input_frames, 1, 64, 64)`` and
    ``(output_frames, 1, 64, 64)``, float32.

    Args:
        path: the ``.npy`` file.
        input_frames, output_frames: Default 10 and 10; their sum must not exceed the
            file's sequence length.
    """

    def __init__(self, path: str, input_frames: int = 10, output_frames: int = 10) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"Moving MNIST file not found: {self.path}")
        try:
            self.data = np.load(self.path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read {self.path} as a .npy file: {err}") from err
        if self.data.ndim != 4:
            raise ValueError(
                f"{self.path}: expected shape (T, N, H, W) like (20, 10000, 64, 64), "
                f"got {self.data.shape}"
            )
        self.input_frames = check_int("input_frames", input_frames)
        self.output_frames = check_int("output_frames", output_frames, 0)
        if self.input_frames + self.output_frames > self.data.shape[0]:
            raise ValueError(
                f"{self.path} has sequences of {self.data.shape[0]} frames, but "
                f"input_frames + output_frames = {self.input_frames + self.output_frames}"
            )

    def __len__(self) -> int:
        return self.data.shape[1]

    def preprocessing(self) -> Preprocessing:
        """8-bit frames divided by 255 (float files as they are)."""
        return Preprocessing(reader={"kind": "array"}, uint8="unit")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        total = self.input_frames + self.output_frames
        frames = self.preprocessing().to_float(np.asarray(self.data[:total, index]))[:, None]
        return frames[: self.input_frames], frames[self.input_frames :]
