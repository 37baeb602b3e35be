"""Clip-consistent augmentation: one random draw per clip, applied to every frame."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ._utils import DatasetWrapper


class ClipAugment:
    """Random augmentation of ``(T, C, H, W)`` clips, identical for every frame.

    One set of parameters is drawn per call and applied to all frames (and to any extra
    clips passed along, e.g. forecasting targets), so a clip stays consistent: the same
    flip, crop window, brightness and contrast in every frame. Gaussian noise has the
    same standard deviation in every frame and is added to the first clip only.

    Args:
        hflip: probability of a horizontal flip. Default 0.
        vflip: probability of a vertical flip. Default 0.
        crop_scale: ``[min, max]`` fraction of the frame area kept by a random crop (same
            aspect ratio), resized back to ``H x W``; ``None`` for no crop. Default ``None``.
        brightness: multiply by a factor in ``[1 - b, 1 + b]``. Default 0.
        contrast: scale deviations from the clip mean by ``[1 - c, 1 + c]``. Default 0.
        noise_std: standard deviation of added Gaussian noise. Default 0.
        clamp: ``[low, high]`` to clamp results to (e.g. ``[0, 1]``), or ``None``.
        seed: seed of a private generator; ``None`` uses torch's global RNG (seeded per
            DataLoader worker). Default ``None``.
    """

    def __init__(
        self,
        hflip: float = 0.0,
        vflip: float = 0.0,
        crop_scale: Sequence[float] | None = None,
        brightness: float = 0.0,
        contrast: float = 0.0,
        noise_std: float = 0.0,
        clamp: Sequence[float] | None = None,
        seed: int | None = None,
    ) -> None:
        for name, p in (("hflip", hflip), ("vflip", vflip)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} is a probability in [0, 1], got {p!r}")
        if crop_scale is not None and (
            len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1
        ):
            raise ValueError(
                f"crop_scale must be [min, max] with 0 < min <= max <= 1, got {crop_scale!r}"
            )
        for name, v in (("brightness", brightness), ("contrast", contrast)):
            if not 0 <= v < 1:
                raise ValueError(f"{name} must be in [0, 1), got {v!r}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
        self.hflip, self.vflip = float(hflip), float(vflip)
        self.crop_scale = (
            None if crop_scale is None else (float(crop_scale[0]), float(crop_scale[1]))
        )
        self.brightness, self.contrast, self.noise_std = (
            float(brightness),
            float(contrast),
            float(noise_std),
        )
        self.clamp = None if clamp is None else (float(clamp[0]), float(clamp[1]))
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=self.generator).item()

    def sample_params(self, height: int, width: int) -> dict:
        """Draw one set of parameters for a clip of ``height x width`` frames."""
        params: dict = {
            "hflip": self._uniform(0, 1) < self.hflip,
            "vflip": self._uniform(0, 1) < self.vflip,
            "brightness": self._uniform(1 - self.brightness, 1 + self.brightness),
            "contrast": self._uniform(1 - self.contrast, 1 + self.contrast),
            "crop": None,
        }
        if self.crop_scale is not None:
            area = self._uniform(*self.crop_scale)
            h = max(1, round(height * area**0.5))
            w = max(1, round(width * area**0.5))
            top = int(torch.randint(0, height - h + 1, (), generator=self.generator))
            left = int(torch.randint(0, width - w + 1, (), generator=self.generator))
            params["crop"] = (top, left, h, w)
        return params

    def apply(self, clip: torch.Tensor, params: dict, noise: bool = True) -> torch.Tensor:
        """Apply drawn ``params`` to a ``(T, C, H, W)`` clip."""
        if clip.ndim != 4:
            raise ValueError(f"expected a (T, C, H, W) clip, got shape {tuple(clip.shape)}")
        height, width = clip.shape[-2:]
        if params["crop"] is not None:
            top, left, h, w = params["crop"]
            clip = clip[..., top : top + h, left : left + w]
            clip = F.interpolate(clip, size=(height, width), mode="bilinear", align_corners=False)
        if params["hflip"]:
            clip = clip.flip(-1)
        if params["vflip"]:
            clip = clip.flip(-2)
        if params["contrast"] != 1:
            mean = clip.mean()
            clip = (clip - mean) * params["contrast"] + mean
        if params["brightness"] != 1:
            clip = clip * params["brightness"]
        if noise and self.noise_std > 0:
            clip = clip + self.noise_std * torch.randn(
                clip.shape, generator=self.generator, dtype=clip.dtype
            )
        if self.clamp is not None:
            clip = clip.clamp(*self.clamp)
        return clip

    def __call__(self, clip: torch.Tensor, *others: torch.Tensor):
        """Augment ``clip`` and, with the same draw (no noise), any ``others``.

        Returns the augmented clip, or a tuple ``(clip, *others)`` when others are given.
        """
        params = self.sample_params(*clip.shape[-2:])
        out = self.apply(clip, params)
        if not others:
            return out
        return (out, *(self.apply(o, params, noise=False) for o in others))


class Augmented(DatasetWrapper):
    """Wrap a data set with a :class:`ClipAugment` (use on the training split only).

    Forecasting pairs ``(inputs, targets)`` get the same geometric and photometric draw
    (noise on the inputs only); classification pairs ``(clip, label)`` augment the clip.
    """

    def __init__(self, dataset: Dataset, augment: ClipAugment) -> None:
        super().__init__(dataset)
        self.augment = augment

    def __getitem__(self, index: int):
        first, second, *rest = self.dataset[index]
        if torch.is_tensor(second) and second.ndim == 4:
            return (*self.augment(first, second), *rest)
        return (self.augment(first), second, *rest)


def jitter_start(
    start: int, jitter: int, low: int, high: int, generator: torch.Generator | None = None
) -> int:
    """Temporal jitter: ``start`` moved by a uniform offset in ``[-jitter, jitter]``,
    kept inside ``[low, high]`` (the valid start frames)."""
    if jitter <= 0:
        return start
    offset = int(torch.randint(-jitter, jitter + 1, (), generator=generator))
    return min(max(start + offset, low), high)
