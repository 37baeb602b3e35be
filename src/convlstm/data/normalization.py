"""Normalisation statistics computed on the training split and saved with a run."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ._utils import DatasetWrapper


@dataclass
class NormStats:
    """Per-channel statistics of the training frames.

    ``normalize`` maps ``x`` to ``(x - mean) / std`` along the channel axis of
    ``(..., C, H, W)`` tensors; a single-entry list applies to every channel.
    Save with the run (``stats.save(run_dir / "norm_stats.json")``) and reload with
    :meth:`load`.
    """

    mean: list[float]
    std: list[float]
    min: list[float] = field(default_factory=list)
    max: list[float] = field(default_factory=list)
    count: int = 0

    def _shaped(self, values: list[float], like: torch.Tensor) -> torch.Tensor:
        t = torch.tensor(values, dtype=like.dtype, device=like.device)
        if like.ndim < 3:
            raise ValueError(f"expected a (..., C, H, W) tensor, got shape {tuple(like.shape)}")
        if len(values) not in (1, like.shape[-3]):
            raise ValueError(
                f"statistics have {len(values)} channels but the tensor has "
                f"{like.shape[-3]} (shape {tuple(like.shape)})"
            )
        return t.view(-1, 1, 1)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std``, any ``(..., C, H, W)`` shape."""
        return (x - self._shaped(self.mean, x)) / self._shaped(self.std, x)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`."""
        return x * self._shaped(self.std, x) + self._shaped(self.mean, x)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NormStats:
        unknown = set(data) - {"mean", "std", "min", "max", "count"}
        if unknown or not {"mean", "std"} <= set(data):
            raise ValueError(
                f"normalisation statistics need 'mean' and 'std' (optional 'min', 'max', "
                f"'count'); got keys {sorted(data)}"
            )
        return cls(**data)

    def save(self, path: str | os.PathLike) -> None:
        """Write the statistics as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> NormStats:
        """Read statistics written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read normalisation statistics from {path}: {err}") from err
        return cls.from_dict(data)


def _frames(sample: object) -> list[torch.Tensor]:
    """The ``(T, C, H, W)`` tensors of a sample (inputs and targets, or the clip)."""
    items = sample if isinstance(sample, (tuple, list)) else (sample,)
    return [t for t in items if torch.is_tensor(t) and t.ndim == 4]


def compute_norm_stats(
    dataset: Dataset,
    max_samples: int | None = 1000,
    per_channel: bool = True,
    seed: int = 0,
) -> NormStats:
    """Mean, std, min and max of the frames of a (training) data set.

    Args:
        dataset: the training split; every 4-D tensor of a sample counts (the inputs and
            targets of a forecasting pair, the clip of a classification pair).
        max_samples: use at most this many samples, drawn at random with ``seed``
            (``None``: all). Default 1000.
        per_channel: one value per channel, else one for all. Default ``True``.
        seed: Default 0.
    """
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("cannot compute normalisation statistics of an empty data set")
    indices = np.arange(n)
    if max_samples is not None and n > max_samples:
        indices = np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False))
    total = squares = low = high = None
    count = 0
    for i in indices:
        for x in _frames(dataset[int(i)]):
            x = x.double().transpose(0, 1).reshape(x.shape[1], -1)
            if not per_channel:
                x = x.reshape(1, -1)
            if total is None:
                total, squares = x.sum(1), (x * x).sum(1)
                low, high = x.min(1).values, x.max(1).values
            else:
                total, squares = total + x.sum(1), squares + (x * x).sum(1)
                low, high = (
                    torch.minimum(low, x.min(1).values),
                    torch.maximum(high, x.max(1).values),
                )
            count += x.shape[1]
    if total is None:
        raise ValueError(f"samples of {type(dataset).__name__} hold no (T, C, H, W) tensor")
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))  # constant data: keep scale
    return NormStats(mean.tolist(), std.tolist(), low.tolist(), high.tolist(), int(count))


class Normalized(DatasetWrapper):
    """Wrap a data set so every ``(T, C, H, W)`` tensor of a sample is normalised."""

    def __init__(self, dataset: Dataset, stats: NormStats) -> None:
        super().__init__(dataset)
        self.stats = stats

    def __getitem__(self, index: int):
        sample = self.dataset[index]
        return tuple(
            self.stats.normalize(t) if torch.is_tensor(t) and t.ndim == 4 else t for t in sample
        )
