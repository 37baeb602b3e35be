"""Tiny models and loaders for the diagnostics tests (seconds on one CPU thread)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from convlstm.models import create_model


def clips(n: int = 8, steps: int = 4, size: int = 12, seed: int = 0) -> torch.Tensor:
    """Random clips ``(n, steps, 1, size, size)``."""
    return torch.rand(n, steps, 1, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def loader() -> DataLoader:
    """16 random clips, labels alternating 0/1, batches of 8."""
    x = clips(16)
    y = torch.arange(16) % 2
    return DataLoader(TensorDataset(x, y), batch_size=8)


@pytest.fixture
def clip_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("clip-classifier", in_channels=1, hidden_channels=[3, 4], batch_norm=False)
