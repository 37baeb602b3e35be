"""Small building blocks and argument checks shared by the models."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..checks import check_choice, check_int

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
GLOBAL_POOLS = ("max", "avg")
#: FrameCNN's per-frame reductions: global pooling, or the whole map flattened.
FRAME_POOLS = (*GLOBAL_POOLS, "flatten")


def check_clip(x: torch.Tensor, ndim: int, in_channels: int) -> None:
    """Check a clip batch ``(B, T, C, *spatial)``."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"input must be a floating-point torch.Tensor, got {type(x).__name__}")
    rank = ndim + 3
    if x.dim() != rank or x.shape[2] != in_channels:
        raise ValueError(
            f"expected input (B, T, C={in_channels}, *spatial) of rank {rank}, "
            f"got shape {tuple(x.shape)}"
        )


def per_step(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply ``module`` to every step of ``(B, T, ...)`` (Keras's TimeDistributed)."""
    batch, steps = x.shape[:2]
    y = module(x.reshape(batch * steps, *x.shape[2:]))
    return y.reshape(batch, steps, *y.shape[1:])


def global_pool(x: torch.Tensor, mode: str) -> torch.Tensor:
    """``(N, C, *spatial)`` -> ``(N, C)`` by max or mean over positions."""
    flat = x.flatten(2)
    return flat.amax(-1) if mode == "max" else flat.mean(-1)


def make_head(in_features: int, num_classes: int, hidden: int, dropout: float) -> nn.Sequential:
    """Dropout -> [Linear -> ReLU -> Dropout] -> Linear(num_classes)."""
    layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
    if hidden > 0:
        layers += [nn.Linear(in_features, hidden), nn.ReLU()]
        layers += [nn.Dropout(dropout)] if dropout > 0 else []
        in_features = hidden
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


class FrameCNN(nn.Module):
    """A small per-frame CNN: ``[conv -> batch norm -> ReLU -> max pool 2]`` per entry of
    ``channels``, then global pooling to a ``(N, channels[-1])`` feature vector, or, with
    ``pool="flatten"``, the last feature map flattened (position kept).

    Shapes: ``(N, C, *spatial)`` -> ``(N, channels[-1])``; with ``"flatten"``
    ``(N, channels[-1] * prod(map size))``, the map size being ``spatial`` halved (rounded
    up) ``len(channels) - 1`` times (``map_size(spatial)``).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        kernel_size: int = 3,
        ndim: int = 2,
        batch_norm: bool = True,
        pool: str = "avg",
    ) -> None:
        super().__init__()
        check_int("kernel_size", kernel_size)
        check_choice("pool", pool, FRAME_POOLS)
        layers: list[nn.Module] = []
        for i, width in enumerate(channels):
            layers.append(
                CONV[ndim](in_channels, width, kernel_size, padding=kernel_size // 2,
                           bias=not batch_norm)
            )
            if batch_norm:
                layers.append(BATCH_NORM[ndim](width))
            layers.append(nn.ReLU())
            if i < len(channels) - 1:
                layers.append(MAX_POOL[ndim](2, ceil_mode=True))
            in_channels = width
        self.body = nn.Sequential(*layers)
        self.pool = pool
        self.out_features = channels[-1]
        self.num_pools = len(channels) - 1

    def map_size(self, spatial: Sequence[int]) -> list[int]:
        """The last feature map's size for frames of size ``spatial``."""
        size = list(spatial)
        for _ in range(self.num_pools):
            size = [-(-s // 2) for s in size]
        return size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        return features.flatten(1) if self.pool == "flatten" else global_pool(features, self.pool)
