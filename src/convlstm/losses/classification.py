"""Classification losses on logits: class-weighted BCE and cross-entropy, focal loss.

Binary logits are ``(B,)`` or ``(B, 1)`` (the models' one-logit head) with targets in
``{0, 1}`` (or soft labels in ``[0, 1]``); multi-class logits are ``(B, K)`` with
integer targets ``(B,)``. ``reduction`` is ``"mean"``, ``"sum"`` or ``"none"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_loss

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _binary(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten ``(B,)``/``(B, 1)`` logits and targets to ``(B,)`` floats."""
    if logits.dim() == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if target.dim() == 2 and target.shape[1] == 1:
        target = target[:, 0]
    if logits.dim() != 1 or target.shape != logits.shape:
        raise ValueError(
            f"binary logits must be (B,) or (B, 1) with matching targets, got logits "
            f"{tuple(logits.shape)} and target {tuple(target.shape)}"
        )
    return logits, target.to(logits.dtype)


def _reduce(losses: torch.Tensor, weights: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return losses if weights is None else losses * weights
    if reduction == "sum":
        return losses.sum() if weights is None else (losses * weights).sum()
    return losses.mean() if weights is None else (losses * weights).sum() / weights.sum()


def _weights(values: Sequence[float] | None, count: int | None, name: str) -> torch.Tensor | None:
    if values is None:
        return None
    weights = torch.as_tensor(values, dtype=torch.float32)
    if weights.dim() != 1 or (count is not None and len(weights) != count):
        expected = f"{count} " if count is not None else ""
        raise ValueError(f"{name} must be a list of {expected}per-class weights, got {values!r}")
    if (weights < 0).any():
        raise ValueError(f"{name} must be non-negative, got {values!r}")
    return weights


@register_loss("bce")
class BinaryCrossEntropy(nn.Module):
    """Binary cross-entropy on one logit per sample, optionally class-weighted.

    ``loss_i = -[y_i log σ(z_i) + (1 - y_i) log(1 - σ(z_i))]``, weighted by
    ``w_i = w_1 y_i + w_0 (1 - y_i)``. The mean is the weighted mean
    ``sum_i w_i loss_i / sum_i w_i`` (as ``torch.nn.CrossEntropyLoss`` does; Keras's
    ``class_weight`` divides by ``B`` instead), so weights change the balance of the
    classes, not the scale of the loss.

    Args:
        class_weights: ``[w_0, w_1]`` for negatives and positives, or ``None``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
    """

    def __init__(self, class_weights: Sequence[float] | None = None, reduction: str = "mean"):
        super().__init__()
        self.reduction = _check_reduction(reduction)
        weights = _weights(class_weights, 2, "class_weights")
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = _binary(logits, target)
        losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        weights = None
        if self.class_weights is not None:
            w = self.class_weights.to(logits)
            weights = w[1] * target + w[0] * (1 - target)
        return _reduce(losses, weights, self.reduction)


@register_loss("cross_entropy")
class CrossEntropy(nn.Module):
    """Multi-class cross-entropy on ``(B, K)`` logits, optionally class-weighted.

    ``loss_i = -log softmax(z_i)[y_i]`` weighted by ``w_{y_i}``; the mean is the weighted
    mean ``sum_i w_{y_i} loss_i / sum_i w_{y_i}`` (``torch.nn.CrossEntropyLoss``).

    Args:
        class_weights: ``K`` per-class weights, or ``None``.
        label_smoothing: as in ``torch.nn.CrossEntropyLoss``. Default 0.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ):
        super().__init__()
        self.reduction = _check_reduction(reduction)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        weights = _weights(class_weights, None, "class_weights")
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2 or target.shape != logits.shape[:1]:
            raise ValueError(
                f"CrossEntropy expects logits (B, K) and integer targets (B,), got "
                f"{tuple(logits.shape)} and {tuple(target.shape)}"
            )
        weight = self.class_weights
        if weight is not None:
            if len(weight) != logits.shape[1]:
                raise ValueError(
                    f"class_weights has {len(weight)} entries but logits have "
                    f"{logits.shape[1]} classes"
                )
            weight = weight.to(logits)
        return F.cross_entropy(
            logits,
            target.long(),
            weight=weight,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


@register_loss("focal")
class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): ``-α_t (1 - p_t)^γ log p_t``.

    ``p_t`` is the predicted probability of the true class: ``σ(z)`` or ``1 - σ(z)`` for
    binary logits ``(B,)``/``(B, 1)``, ``softmax(z)[y]`` for multi-class logits ``(B, K)``.
    ``γ = 0`` and no ``α`` gives the plain cross-entropy. The mean is over samples.

    Args:
        gamma: focusing parameter ``γ >= 0``. Default 2.
        alpha: binary: a float, ``α`` for positives and ``1 - α`` for negatives;
            multi-class: ``K`` per-class weights. Default ``None`` (no weighting).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        reduction: str = "mean",
    ):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if isinstance(alpha, (int, float)) and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha as a float must be in [0, 1], got {alpha}")
        self.gamma = float(gamma)
        self.alpha = alpha
        self.reduction = _check_reduction(reduction)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() == 2 and logits.shape[1] > 1:
            log_p = F.log_softmax(logits, dim=1).gather(1, target.long().unsqueeze(1))[:, 0]
            alpha_t = None
            if self.alpha is not None:
                alpha = _weights(self.alpha, logits.shape[1], "alpha").to(logits)
                alpha_t = alpha[target.long()]
        else:
            logits, target = _binary(logits, target)
            # log p_t for soft or hard labels: -BCE
            log_p = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            alpha_t = None
            if self.alpha is not None:
                if not isinstance(self.alpha, (int, float)):
                    raise ValueError(f"binary focal loss takes a float alpha, got {self.alpha!r}")
                alpha_t = self.alpha * target + (1 - self.alpha) * (1 - target)
        losses = -((1 - log_p.exp()) ** self.gamma) * log_p
        if alpha_t is not None:
            losses = alpha_t * losses
        return _reduce(losses, None, self.reduction)
