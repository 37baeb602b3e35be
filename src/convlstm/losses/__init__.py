"""Losses for clip classification, metric learning and frame forecasting.

Each is an ``nn.Module`` with a registry name for configs (``LOSSES``, a
``convlstm.registry.Registry`` as the models' and data sets')::

    >>> from convlstm.losses import create_loss
    >>> loss = create_loss("bce", class_weights=[1.0, 3.0])
"""

from __future__ import annotations

from .classification import BinaryCrossEntropy, CrossEntropy, FocalLoss
from .forecasting import (
    FrameBCELoss,
    MAELoss,
    MSEGDLLoss,
    MSELoss,
    MSEMAELoss,
    SSIMLoss,
    gaussian_window,
    gradient_difference,
    ssim,
)
from .metric import SupConLoss, TripletLoss, pairwise_distances
from .registry import LOSSES, create_loss, get_loss_class, list_losses, register_loss

__all__ = [
    "LOSSES",
    "BinaryCrossEntropy",
    "CrossEntropy",
    "FocalLoss",
    "FrameBCELoss",
    "MAELoss",
    "MSEGDLLoss",
    "MSELoss",
    "MSEMAELoss",
    "SSIMLoss",
    "SupConLoss",
    "TripletLoss",
    "create_loss",
    "gaussian_window",
    "get_loss_class",
    "gradient_difference",
    "list_losses",
    "pairwise_distances",
    "register_loss",
    "ssim",
]
