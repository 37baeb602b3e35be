"""Clip-classification metrics on top of torchmetrics, safe under DDP.

The metric keeps every score and target in ``cat`` states, so under DDP torchmetrics gathers
them from all ranks before :meth:`ClassificationMetrics.compute`; every number is then computed
on the whole evaluation set, never averaged over per-rank values.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_confusion_matrix,
    binary_f1_score,
    binary_roc,
    multiclass_accuracy,
    multiclass_auroc,
    multiclass_confusion_matrix,
    multiclass_f1_score,
)
from torchmetrics.utilities import dim_zero_cat


@dataclass(frozen=True)
class BinarySummary:
    """What a binary classifier's probabilities achieve over all thresholds (float64).

    A threshold ``t`` predicts class 1 when ``p >= t``; ``inf`` predicts class 0 for all.

    Attributes:
        roc_auc: area under the ROC curve (ties count one half); ``nan`` without both classes.
        peak_accuracy: the highest accuracy any threshold reaches, and
            ``peak_accuracy_threshold`` the highest threshold reaching it.
        youden_j: the largest ``TPR - FPR`` over the ROC curve; ``youden_tpr``,
            ``youden_fpr`` and ``youden_threshold`` where the highest threshold reaches it
            (``nan`` without both classes).
        num_samples, num_positive: the counts the numbers come from.
    """

    roc_auc: float
    peak_accuracy: float
    peak_accuracy_threshold: float
    youden_j: float
    youden_tpr: float
    youden_fpr: float
    youden_threshold: float
    num_samples: int
    num_positive: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _as_float64(values: Any, name: str) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must have shape (N,) (or (N, 1)), got {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.int64)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold numbers, got dtype {array.dtype}")
    return array.astype(np.float64)


def binary_summary(probabilities: Any, labels: Any) -> BinarySummary:
    """ROC-AUC, peak accuracy over thresholds and the Youden point, in float64.

    Args:
        probabilities: ``(N,)`` probability of class 1 per sample (a NumPy array, tensor or
            list; float32 values are widened to float64 first, so that scores closer than
            float32 resolves are not tied).
        labels: ``(N,)`` true classes, 0 or 1 (ints, bools or integral floats).

    Returns:
        A ``BinarySummary`` (see its attributes).

    Raises:
        ValueError: shapes that differ, no samples, probabilities outside ``[0, 1]`` (or
            NaN), labels other than 0 and 1.
    """
    p = _as_float64(probabilities, "probabilities")
    y = _as_float64(labels, "labels")
    if p.shape != y.shape:
        raise ValueError(
            f"probabilities {p.shape} and labels {y.shape} must have the same shape (N,)"
        )
    if p.size == 0:
        raise ValueError("binary_summary: no samples (is the evaluation split empty?)")
    bad = ~((p >= 0) & (p <= 1))
    if bad.any():
        raise ValueError(
            f"probabilities must lie in [0, 1] (apply sigmoid first), got {p[bad][0]!r} "
            f"at index {int(np.flatnonzero(bad)[0])}"
        )
    wrong = (y != 0) & (y != 1)
    if wrong.any():
        raise ValueError(
            f"labels must be 0 or 1, got {y[wrong][0]!r} at index {int(np.flatnonzero(wrong)[0])}"
        )
    n, positives = p.size, int(y.sum())
    negatives = n - positives
    # Distinct thresholds, highest first; counts of positives/negatives at p >= t.
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(p_sorted)), n - 1]  # last index of each score
    thresholds = np.r_[np.inf, p_sorted[last]]
    tp = np.r_[0.0, np.cumsum(y_sorted)[last]]
    fp = np.r_[0.0, np.cumsum(1 - y_sorted)[last]]
    accuracy = (tp + (negatives - fp)) / n
    peak = int(np.argmax(accuracy))
    if positives and negatives:
        tpr, fpr = tp / positives, fp / negatives
        auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
        j = tpr - fpr
        best = int(np.argmax(j))
        youden = (float(j[best]), float(tpr[best]), float(fpr[best]), float(thresholds[best]))
    else:
        auc, youden = math.nan, (math.nan,) * 4
    return BinarySummary(
        roc_auc=auc, peak_accuracy=float(accuracy[peak]),
        peak_accuracy_threshold=float(thresholds[peak]), youden_j=youden[0],
        youden_tpr=youden[1], youden_fpr=youden[2], youden_threshold=youden[3],
        num_samples=n, num_positive=positives,
    )  # fmt: skip


class ClassificationMetrics(Metric):
    """Accuracy, balanced accuracy, ROC-AUC, F1, confusion matrix and Youden threshold.

    Args:
        num_classes: number of classes ``K >= 2``.

    ``update(scores, target)``:
        * ``K == 2``: ``scores`` is ``(N,)`` (or ``(N, 1)``) with the probability of class 1,
          i.e. a sigmoid output; ``(N, 2)`` probabilities are accepted too (column 1 is used).
        * ``K > 2``: ``scores`` is ``(N, K)`` class probabilities (softmax output).
        * ``target`` is ``(N,)`` integer class indices in ``[0, K)``.

    ``compute()`` returns python floats and lists:
        * ``accuracy``: fraction correct; binary predicts class 1 when ``p > 0.5``
          (torchmetrics' convention), multiclass predicts the arg-max.
        * ``balanced_accuracy``: mean recall over the classes present in the targets.
        * ``roc_auc``: binary AUROC, or macro one-vs-rest AUROC over the classes that have both
          positives and negatives; ``nan`` when no class has both.
        * ``f1``: binary F1 of class 1 for ``K == 2``, macro F1 for ``K > 2``.
        * ``confusion_matrix``: ``K x K`` list of lists of ints, rows = true class,
          columns = predicted class.
        * binary only: ``best_threshold`` maximising Youden's J = TPR - FPR over the ROC curve
          (predict class 1 when ``p >= best_threshold``), ``accuracy_at_best_threshold``,
          ``youden_j``, ``youden_tpr``, ``youden_fpr``, ``peak_accuracy`` (the best accuracy
          over all thresholds) and ``peak_accuracy_threshold``, all from
          :func:`binary_summary` in float64; and the ROC curve ``roc_fpr``, ``roc_tpr``,
          ``roc_thresholds``
          (torchmetrics' ``binary_roc``: decreasing thresholds, the first point (0, 0) has
          threshold 1.0).
        * ``num_samples``.

    Use it with ``update``/``compute``/``reset``; calling the module on a batch also works but
    computes every number on that batch alone.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.num_classes = num_classes
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, scores: Tensor, target: Tensor) -> None:
        """Add a batch: ``scores`` ``(N,)`` (binary) or ``(N, K)``, ``target`` ``(N,)``."""
        scores, target = _check_inputs(scores, target, self.num_classes)
        # Kept in the scores' own dtype on their device (MPS has no float64); compute()
        # widens them to float64 on the CPU.
        self.scores.append(scores.detach())
        self.targets.append(target.detach().long())

    def compute(self) -> dict[str, Any]:
        """All metrics over every sample seen since the last reset (all ranks under DDP)."""
        if isinstance(self.scores, list) and not self.scores:
            raise ValueError(
                "ClassificationMetrics.compute(): no samples were evaluated (update() was never "
                "called since the last reset); is the evaluation data set or split empty?"
            )
        scores = dim_zero_cat(self.scores).cpu().double()
        target = dim_zero_cat(self.targets).cpu()
        if self.num_classes == 2:
            return _binary_metrics(scores, target)
        return _multiclass_metrics(scores, target, self.num_classes)


def _check_inputs(scores: Tensor, target: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    if target.dim() != 1:
        raise ValueError(f"target must have shape (N,), got {tuple(target.shape)}")
    n = target.shape[0]
    if num_classes == 2:
        if scores.dim() == 2 and scores.shape[1] in (1, 2):
            scores = scores[:, -1]
        if scores.shape != (n,):
            raise ValueError(
                f"scores for num_classes=2 must have shape (N,) = ({n},) with the probability "
                f"of class 1, got {tuple(scores.shape)}"
            )
    elif scores.shape != (n, num_classes):
        raise ValueError(
            f"scores must have shape (N, num_classes) = ({n}, {num_classes}), "
            f"got {tuple(scores.shape)}"
        )
    if not torch.is_floating_point(scores):
        raise TypeError(f"scores must be floating-point probabilities, got dtype {scores.dtype}")
    if scores.numel() and (scores.min() < 0 or scores.max() > 1 or scores.isnan().any()):
        raise ValueError("scores must be probabilities in [0, 1] (apply sigmoid/softmax first)")
    if torch.is_floating_point(target) or target.dtype == torch.bool:
        if target.dtype != torch.bool and (target != target.round()).any():
            raise ValueError("target must hold integer class indices")
        target = target.long()
    if target.numel() and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(
            f"target values must be class indices in [0, {num_classes}), "
            f"got range [{int(target.min())}, {int(target.max())}]"
        )
    return scores, target


def _balanced_accuracy(confmat: Tensor) -> float:
    """Mean recall over the classes that occur in the targets (rows with support)."""
    support = confmat.sum(dim=1)
    present = support > 0
    recall = confmat.diag()[present].double() / support[present].double()
    return float(recall.mean())


def _binary_metrics(scores: Tensor, target: Tensor) -> dict[str, Any]:
    confmat = binary_confusion_matrix(scores, target)
    both_classes = bool((target == 1).any() and (target == 0).any())
    fpr, tpr, thresholds = binary_roc(scores, target)
    summary = binary_summary(scores, target)
    j = tpr - fpr
    best = int(torch.argmax(j))
    best_threshold = float(thresholds[best])
    if both_classes:  # the same point, from float64 counts
        best_threshold = summary.youden_threshold
    at_best = ((scores >= best_threshold).long() == target).double().mean()
    return {
        "num_samples": int(target.numel()),
        "accuracy": float(binary_accuracy(scores, target)),
        "balanced_accuracy": _balanced_accuracy(confmat),
        "roc_auc": float(binary_auroc(scores, target)) if both_classes else math.nan,
        "f1": float(binary_f1_score(scores, target)),
        "confusion_matrix": confmat.tolist(),
        "best_threshold": best_threshold,
        "youden_j": float(j[best]) if not both_classes else summary.youden_j,
        "youden_tpr": summary.youden_tpr,
        "youden_fpr": summary.youden_fpr,
        "accuracy_at_best_threshold": float(at_best),
        "peak_accuracy": summary.peak_accuracy,
        "peak_accuracy_threshold": summary.peak_accuracy_threshold,
        "roc_fpr": fpr.tolist(),
        "roc_tpr": tpr.tolist(),
        "roc_thresholds": thresholds.tolist(),
    }


def _multiclass_metrics(scores: Tensor, target: Tensor, k: int) -> dict[str, Any]:
    confmat = multiclass_confusion_matrix(scores, target, num_classes=k)
    per_class_auc = multiclass_auroc(scores, target, num_classes=k, average="none")
    positives = torch.bincount(target, minlength=k)
    defined = (positives > 0) & (positives < target.numel())
    roc_auc = float(per_class_auc[defined].mean()) if defined.any() else math.nan
    return {
        "num_samples": int(target.numel()),
        "accuracy": float(multiclass_accuracy(scores, target, num_classes=k, average="micro")),
        "balanced_accuracy": _balanced_accuracy(confmat),
        "roc_auc": roc_auc,
        "f1": float(multiclass_f1_score(scores, target, num_classes=k, average="macro")),
        "confusion_matrix": confmat.tolist(),
    }
