"""Losses for clip classification, metric learning and frame forecasting.

Each is an ``nn.Module`` with a registry name for configs::

    >>> from convlstm.losses import create_loss
    >>> loss = create_loss("bce", class_weights=[1.0, 3.0])
"""

from __future__ import annotations

from torch import nn

from .classification import BinaryCrossEntropy, CrossEntropy, FocalLoss
from .forecasting import FrameBCELoss, MAELoss, MSELoss, MSEMAELoss, SSIMLoss, gaussian_window, ssim
from .metric import SupConLoss, TripletLoss, pairwise_distances

LOSSES: dict[str, type[nn.Module]] = {
    "bce": BinaryCrossEntropy,
    "cross_entropy": CrossEntropy,
    "focal": FocalLoss,
    "supcon": SupConLoss,
    "triplet": TripletLoss,
    "mse": MSELoss,
    "mae": MAELoss,
    "mse+mae": MSEMAELoss,
    "frame_bce": FrameBCELoss,
    "ssim": SSIMLoss,
}


def list_losses() -> list[str]:
    """Registry names of the losses."""
    return sorted(LOSSES)


def create_loss(name: str, **config) -> nn.Module:
    """Build the loss registered as ``name`` (see ``list_losses``) from plain values."""
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; known losses: {', '.join(list_losses())}")
    return LOSSES[name](**config)


__all__ = [
    "LOSSES",
    "BinaryCrossEntropy",
    "CrossEntropy",
    "FocalLoss",
    "FrameBCELoss",
    "MAELoss",
    "MSELoss",
    "MSEMAELoss",
    "SSIMLoss",
    "SupConLoss",
    "TripletLoss",
    "create_loss",
    "gaussian_window",
    "list_losses",
    "pairwise_distances",
    "ssim",
]
