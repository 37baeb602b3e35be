"""Train/validation/test splits by time, by clip (group) or at random, without leakage.

Data sets that cut many samples from the same source describe them with two optional
attributes, which :func:`split_dataset` uses:

- ``groups``: one hashable per sample naming its source (a video, a sequence); a split
  by clip keeps every sample of a group in the same part.
- ``spans``: ``(N, 2)`` int array, the ``[start, stop)`` frames of its source that a
  sample uses (including frames only its label looks at); a split by time cuts each
  source's time line at the fractions and drops samples that straddle a cut.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Subset

from ..checks import check_choice, check_fractions
from ._utils import SPLITS


def _bounds(length: int, fractions: Sequence[float]) -> list[int]:
    """Cut points ``[0, a, b, c]`` of ``length`` items for train/val/test fractions."""
    cum = np.cumsum(check_fractions(fractions))
    return [0, *(round(c * length) for c in cum)]


def time_split_bounds(
    length: int, fractions: Sequence[float] = (0.7, 0.15, 0.15)
) -> dict[str, tuple[int, int]]:
    """Contiguous ``[start, stop)`` frame ranges of a time line of ``length`` frames.

    Example: ``time_split_bounds(100, [0.7, 0.2, 0.1])`` ->
    ``{"train": (0, 70), "val": (70, 90), "test": (90, 100)}``.
    """
    b = _bounds(length, fractions)
    return {name: (b[i], b[i + 1]) for i, name in enumerate(SPLITS)}


def window_starts(start: int, stop: int, window: int, stride: int = 1) -> np.ndarray:
    """Start frames of every ``window``-frame window inside ``[start, stop)``, ``stride`` apart."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return np.arange(start, max(start, stop - window + 1), stride, dtype=np.int64)


def split_random(
    num_samples: int, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, np.ndarray]:
    """Shuffled sample indices per split (for independent samples only)."""
    order = np.random.default_rng(seed).permutation(num_samples)
    b = _bounds(num_samples, fractions)
    return {name: np.sort(order[b[i] : b[i + 1]]) for i, name in enumerate(SPLITS)}


def split_groups(
    groups: Sequence[Hashable],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    labels: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Sample indices per split such that no group is in two splits.

    Groups are shuffled with ``seed`` and assigned by the fractions of the number of
    groups. With ``labels`` and one label per group, the split is stratified: each
    class's groups are split by the fractions separately.
    """
    groups = list(groups)
    names = list(dict.fromkeys(groups))  # unique, first-seen order
    strata: dict[Any, list[Hashable]] = {None: names}
    if labels is not None:
        per_group: dict[Hashable, set] = {}
        for g, y in zip(groups, labels):
            per_group.setdefault(g, set()).add(int(y))
        if all(len(v) == 1 for v in per_group.values()):
            strata = {}
            for g in names:
                strata.setdefault(next(iter(per_group[g])), []).append(g)
    rng = np.random.default_rng(seed)
    assignment: dict[Hashable, str] = {}
    for key in sorted(strata, key=str):
        members = strata[key]
        order = rng.permutation(len(members))
        b = _bounds(len(members), fractions)
        for i, name in enumerate(SPLITS):
            for j in order[b[i] : b[i + 1]]:
                assignment[members[j]] = name
    return {
        name: np.array([i for i, g in enumerate(groups) if assignment.get(g) == name], np.int64)
        for name in SPLITS
    }


def split_by_time(
    spans: np.ndarray,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    groups: Sequence[Hashable] | None = None,
) -> dict[str, np.ndarray]:
    """Sample indices per split by cutting each group's time line at the fractions.

    A sample goes to a split only if its whole span ``[start, stop)`` lies inside that
    split's range; samples straddling a cut are dropped, so no frame is shared.
    """
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    groups = list(groups) if groups is not None else [0] * len(spans)
    out: dict[str, list[int]] = {name: [] for name in SPLITS}
    by_group: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    for members in by_group.values():
        idx = np.array(members)
        lo, hi = spans[idx, 0].min(), spans[idx, 1].max()
        b = [lo + c for c in _bounds(int(hi - lo), fractions)]
        for k, name in enumerate(SPLITS):
            inside = (spans[idx, 0] >= b[k]) & (spans[idx, 1] <= b[k + 1])
            out[name].extend(idx[inside].tolist())
    return {name: np.array(sorted(v), np.int64) for name, v in out.items()}


def split_dataset(
    dataset: Dataset,
    by: str = "clip",
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> dict[str, Subset]:
    """Split a data set into ``{"train", "val", "test"}`` subsets without leakage.

    Args:
        dataset: any map-style data set. ``by="clip"`` uses its ``groups`` attribute
            (every sample its own group if absent), ``by="time"`` needs ``spans``.
        by: ``"clip"`` (groups never shared), ``"time"`` (contiguous time ranges per
            group, straddling samples dropped) or ``"random"``. Default ``"clip"``.
        fractions: train, val, test fractions. Default ``(0.7, 0.15, 0.15)``.
        seed: shuffling seed for ``"clip"`` and ``"random"``. Default 0.
    """
    check_choice("by", by, ("clip", "time", "random"))
    n = len(dataset)  # type: ignore[arg-type]
    if by == "random":
        parts = split_random(n, fractions, seed)
    elif by == "clip":
        from .sampling import labels_of

        groups = getattr(dataset, "groups", None)
        labels = labels_of(dataset, allow_scan=False)
        parts = split_groups(groups if groups is not None else range(n), fractions, seed, labels)
    else:
        spans = getattr(dataset, "spans", None)
        if spans is None:
            raise ValueError(
                f"split by time needs a data set with a 'spans' attribute (frames each "
                f"sample uses); {type(dataset).__name__} has none: use by='clip' or 'random'"
            )
        parts = split_by_time(spans, fractions, getattr(dataset, "groups", None))
    return {name: Subset(dataset, idx.tolist()) for name, idx in parts.items()}
