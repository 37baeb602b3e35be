"""Class balance: labels of a data set, class weights and a balanced sampler."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset, WeightedRandomSampler

from ..runtime import ConvLSTMWarning
from .augment import Augmented
from .normalization import Normalized


def labels_of(dataset: Dataset, allow_scan: bool = True) -> np.ndarray | None:
    """Per-sample int labels of a classification data set, ``(N,)`` int64.

    Uses a ``labels`` attribute when there is one (also through ``Subset`` and
    ``ConcatDataset``); otherwise reads every sample's second element if ``allow_scan``
    (slow for video), else returns ``None``. Returns ``None`` for forecasting data.
    """
    if isinstance(dataset, (Augmented, Normalized)):
        return labels_of(dataset.dataset, allow_scan)
    if isinstance(dataset, Subset):
        inner = labels_of(dataset.dataset, allow_scan)
        return None if inner is None else inner[np.asarray(dataset.indices, dtype=np.int64)]
    if isinstance(dataset, ConcatDataset):
        parts = [labels_of(d, allow_scan) for d in dataset.datasets]
        return None if any(p is None for p in parts) else np.concatenate(parts)
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return np.asarray(labels, dtype=np.int64)
    if not allow_scan:
        return None
    out = []
    for i in range(len(dataset)):  # type: ignore[arg-type]
        target = dataset[i][1]
        if torch.is_tensor(target) and target.ndim > 0:
            return None  # (inputs, targets) forecasting pairs have no labels
        out.append(int(target))
    return np.asarray(out, dtype=np.int64)


def _labels(labels: Sequence[int] | np.ndarray | Dataset) -> np.ndarray:
    if isinstance(labels, Dataset):
        found = labels_of(labels)
        if found is None:
            raise ValueError(f"{type(labels).__name__} has no class labels (forecasting data?)")
        return found
    return np.asarray(labels, dtype=np.int64).reshape(-1)


def class_counts(
    labels: Sequence[int] | np.ndarray | Dataset, num_classes: int | None = None
) -> np.ndarray:
    """Samples per class, ``(num_classes,)`` int64 array."""
    y = _labels(labels)
    if len(y) and y.min() < 0:
        raise ValueError(f"labels must be >= 0, got {int(y.min())}")
    k = num_classes if num_classes is not None else (int(y.max()) + 1 if len(y) else 0)
    if len(y) and y.max() >= k:
        raise ValueError(f"label {int(y.max())} >= num_classes={k}")
    return np.bincount(y, minlength=k)


def class_weights(
    labels: Sequence[int] | np.ndarray | Dataset, num_classes: int | None = None
) -> torch.Tensor:
    """Loss weights ``n / (K * count_k)`` (scikit-learn's "balanced") from training labels.

    Pass the training split only. A class with no training sample gets weight 0 and a
    warning.

    Returns:
        ``(K,)`` float32 tensor, e.g. for ``nn.CrossEntropyLoss(weight=...)``.
    """
    counts = class_counts(labels, num_classes)
    if len(counts) == 0 or counts.sum() == 0:
        raise ValueError("cannot compute class weights from an empty label set")
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        warnings.warn(
            f"classes {missing.tolist()} have no training samples; their weight is 0",
            ConvLSTMWarning,
            stacklevel=2,
        )
    weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def set_dataset_epoch(dataset: Dataset, epoch: int) -> None:
    """Call ``set_epoch`` on ``dataset`` or the first data set it wraps that has one
    (generated data sets draw fresh training samples per epoch)."""
    target = dataset
    while target is not None:
        if hasattr(type(target), "set_epoch"):
            target.set_epoch(epoch)
            return
        target = getattr(target, "dataset", None)


class BalancedSampler(WeightedRandomSampler):
    """``WeightedRandomSampler`` whose draws depend only on ``(seed, epoch)``, so a run
    resumed at epoch ``e`` draws what an uninterrupted run draws there. Lightning calls
    ``set_epoch`` every epoch; it is passed on to the data set. With ``seed=None`` the
    draws come from torch's global RNG."""

    def __init__(self, weights, num_samples: int, replacement: bool, seed: int | None,
                 dataset: Dataset | None = None) -> None:  # fmt: skip
        super().__init__(weights, num_samples=num_samples, replacement=replacement)
        self.seed, self.epoch, self.dataset = seed, 0, dataset

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.dataset is not None:
            set_dataset_epoch(self.dataset, self.epoch)

    def skip_next(self, count: int) -> None:
        """Start the next pass ``count`` draws in (resuming mid-epoch; see
        ``EpochShuffleSampler.skip_next``)."""
        self._skip = count

    def __iter__(self):
        if self.seed is not None:
            self.generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        skip, self._skip = getattr(self, "_skip", 0), 0
        return itertools.islice(super().__iter__(), skip, None)


def balanced_sampler(
    labels: Sequence[int] | np.ndarray | Dataset,
    num_samples: int | None = None,
    replacement: bool = True,
    seed: int | None = None,
) -> BalancedSampler:
    """A sampler drawing every class equally often (weight ``1 / count`` per sample).

    Args:
        labels: training labels ``(N,)`` or the training data set.
        num_samples: draws per epoch. Default ``N``.
        replacement: draw with replacement. Default ``True``.
        seed: with the epoch (``set_epoch``), fixes the draws; ``None``: torch's global RNG.
    """
    y = _labels(labels)
    counts = class_counts(y)
    weights = 1.0 / counts[y]
    return BalancedSampler(
        torch.as_tensor(weights, dtype=torch.double),
        num_samples=int(num_samples or len(y)),
        replacement=replacement,
        seed=None if seed is None else int(seed),
        dataset=labels if isinstance(labels, Dataset) else None,
    )
