"""RadarEchoes: synthetic precipitation fields (mm/h) for nowcasting."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checks import check_choice, check_int
from ._utils import SPLIT_CODES, sample_rng
from .preprocessing import Preprocessing
from .registry import register_dataset


@register_dataset("radar_echoes")
class RadarEchoes(Dataset):
    """Synthetic radar rain-rate sequences for nowcasting, in mm/h.

    Rain cells are anisotropic Gaussians with a log-normal peak rate (median 4 mm/h, a
    heavy tail up to 150 mm/h) that grow and decay over a lifetime of 8-30 frames (a
    half-sine envelope); cells are born throughout the sequence, some before its start.
    Each cell centre is advected by a smooth wind: a uniform mean wind of about
    ``wind_speed`` px/frame plus a sinusoidal perturbation of 30 % that drifts slowly in
    time. Rates below ``min_rate`` are set to 0 (dry pixels), so the distribution is
    skewed like real radar: mostly dry, a few intense cores. ``noise`` adds
    multiplicative log-normal speckle. Metrics are usually CSI/POD/FAR at
    :attr:`thresholds` mm/h.

    Sample ``index`` is generated from ``(seed, split, index)``.

    Sample: ``(inputs, targets)`` of shapes ``(input_frames, 1, S, S)`` and
    ``(output_frames, 1, S, S)``, float32 mm/h (``S = image_size``).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (independent draws). Default ``"train"``.
        num_samples: sequences. Default 1000.
        input_frames, output_frames: Default 10 and 10.
        image_size: side in px. Default 64.
        num_cells: mean number of cells per sequence (Poisson, at least 1). Default 8.
        wind_speed: mean advection speed in px/frame at size 64. Default 1.5.
        noise: sigma of the multiplicative log-normal noise (0: none). Default 0.0.
        min_rate: rates below this are 0 mm/h. Default 0.1.
        seed: Default 0.
    """

    thresholds = (0.5, 2.0, 5.0, 10.0, 30.0)

    def __init__(
        self,
        split: str = "train",
        num_samples: int = 1000,
        input_frames: int = 10,
        output_frames: int = 10,
        image_size: int = 64,
        num_cells: float = 8.0,
        wind_speed: float = 1.5,
        noise: float = 0.0,
        min_rate: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.split = check_choice("split", split, tuple(SPLIT_CODES))
        self.num_samples = check_int("num_samples", num_samples)
        self.input_frames = check_int("input_frames", input_frames)
        self.output_frames = check_int("output_frames", output_frames, 0)
        self.image_size = check_int("image_size", image_size, 8)
        if num_cells <= 0 or wind_speed < 0 or noise < 0 or min_rate < 0:
            raise ValueError(
                "num_cells must be > 0 and wind_speed, noise, min_rate >= 0; got "
                f"num_cells={num_cells}, wind_speed={wind_speed}, noise={noise}, "
                f"min_rate={min_rate}"
            )
        self.num_cells, self.wind_speed = float(num_cells), float(wind_speed)
        self.noise, self.min_rate, self.seed = float(noise), float(min_rate), int(seed)

    @property
    def num_frames(self) -> int:
        return self.input_frames + self.output_frames

    def __len__(self) -> int:
        return self.num_samples

    def mean_wind(self, index: int) -> np.ndarray:
        """The uniform part of sample ``index``'s wind, ``(row, col)`` px/frame."""
        return self._wind_parameters(sample_rng(self.seed, SPLIT_CODES[self.split], index))[0]

    def sequence(self, index: int) -> torch.Tensor:
        """The whole sequence ``(T, 1, S, S)`` in mm/h."""
        rng = sample_rng(self.seed, SPLIT_CODES[self.split], index)
        mean, amp, k, phase, omega = self._wind_parameters(rng)
        size, T, scale = self.image_size, self.num_frames, self.image_size / 64

        def wind(pos: np.ndarray, t: int) -> np.ndarray:  # pos (n, 2) -> (n, 2) px/frame
            arg = k * pos[:, ::-1] + phase + omega * t
            return mean + amp * np.sin(arg)

        n = max(1, rng.poisson(self.num_cells))
        margin = 0.25 * size
        pos = rng.uniform(-margin, size + margin, (n, 2))
        birth = rng.uniform(-0.5 * T, T - 2, n)
        life = rng.uniform(8, 30, n)
        peak = np.minimum(rng.lognormal(np.log(4.0), 0.9, n), 150.0)
        sig_major = rng.uniform(3, 9, n) * scale
        sig_minor = sig_major / rng.uniform(1, 3, n)
        angle = rng.uniform(0, np.pi, n)
        rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
        frames = np.zeros((T, size, size))
        for t in range(T):
            envelope = np.sin(np.pi * np.clip((t - birth) / life, 0, 1))
            for c in np.flatnonzero(envelope > 0):
                dy, dx = rows - pos[c, 0], cols - pos[c, 1]
                u = dy * np.cos(angle[c]) + dx * np.sin(angle[c])
                v = -dy * np.sin(angle[c]) + dx * np.cos(angle[c])
                frames[t] += (
                    peak[c]
                    * envelope[c]
                    * np.exp(-0.5 * ((u / sig_major[c]) ** 2 + (v / sig_minor[c]) ** 2))
                )
            pos = pos + wind(pos, t)
        if self.noise > 0:
            frames *= rng.lognormal(-0.5 * self.noise**2, self.noise, frames.shape)
        frames[frames < self.min_rate] = 0.0
        return torch.from_numpy(frames.astype(np.float32))[:, None]

    def preprocessing(self) -> Preprocessing:
        """Rain rates in mm/h, taken as they are (also from 8-bit files)."""
        return Preprocessing(uint8="keep")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        frames = self.sequence(index)
        return frames[: self.input_frames], frames[self.input_frames :]

    def _wind_parameters(self, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        speed = self.wind_speed * self.image_size / 64 * rng.uniform(0.6, 1.4)
        direction = rng.uniform(0, 2 * np.pi)
        mean = speed * np.array([np.sin(direction), np.cos(direction)])
        amp = 0.3 * speed * rng.uniform(0.5, 1.0, 2)
        k = 2 * np.pi / (self.image_size * rng.uniform(1.5, 3.0, 2))
        phase = rng.uniform(0, 2 * np.pi, 2)
        omega = rng.uniform(0.01, 0.05)
        return mean, amp, k, phase, omega
