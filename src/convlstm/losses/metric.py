"""Metric-learning losses on clip embeddings ``(B, D)`` with integer labels ``(B,)``.

For classes that differ only subtly, pulling embeddings of a class together and
pushing other classes away (on the models' pooled embedding, ``model.embed(x)``)
adds a signal that cross-entropy alone does not give.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_loss


def _check(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    if embeddings.dim() != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"expected embeddings (B, D) and labels (B,), got {tuple(embeddings.shape)} "
            f"and {tuple(labels.shape)}"
        )


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``(B, B)`` between rows of ``x``, with a finite gradient at 0."""
    squared = (x.unsqueeze(1) - x.unsqueeze(0)).pow(2).sum(-1)
    return squared.clamp_min(1e-12).sqrt()


@register_loss("supcon")
class SupConLoss(nn.Module):
    """Supervised contrastive loss (Khosla et al. 2020, ``L_out``).

    Embeddings are L2-normalised to ``z``; for every anchor ``i`` with positives
    ``P(i)`` (same label, not ``i``) and all others ``A(i)`` (not ``i``)::

        loss_i = -1/|P(i)| sum_{p in P(i)} log(exp(z_i·z_p/τ) / sum_{a in A(i)} exp(z_i·z_a/τ))

    averaged over the anchors that have at least one positive (0 if none has).

    Args:
        temperature: ``τ``. Default 0.1.
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check(embeddings, labels)
        z = F.normalize(embeddings, dim=1)
        logits = z @ z.T / self.temperature
        eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(eye, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        positives = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~eye
        count = positives.sum(1)
        anchors = count > 0
        if not anchors.any():
            return embeddings.sum() * 0.0
        per_anchor = log_prob.masked_fill(~positives, 0.0).sum(1)[anchors] / count[anchors]
        return -per_anchor.mean()


@register_loss("triplet")
class TripletLoss(nn.Module):
    """Triplet loss with batch-hard mining (Hermans et al. 2017).

    For every anchor, the hardest positive (farthest sample of the same label) and the
    hardest negative (closest sample of another label) in the batch::

        loss_i = max(0, d(a, p_hard) - d(a, n_hard) + margin)   (or softplus(d_ap - d_an))

    averaged over the anchors that have both a positive and a negative (0 if none has).
    Distances are Euclidean, on L2-normalised embeddings when ``normalize``.

    Args:
        margin: the margin. Default 0.3.
        soft_margin: use ``softplus(d_ap - d_an)`` instead of the hinge. Default ``False``.
        normalize: L2-normalise the embeddings first. Default ``False``.
    """

    def __init__(self, margin: float = 0.3, soft_margin: bool = False, normalize: bool = False):
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin, self.soft_margin, self.normalize = margin, soft_margin, normalize

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check(embeddings, labels)
        if self.normalize:
            embeddings = F.normalize(embeddings, dim=1)
        dist = pairwise_distances(embeddings)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positives, negatives = same & ~eye, ~same
        hardest_positive = dist.masked_fill(~positives, float("-inf")).amax(1)
        hardest_negative = dist.masked_fill(~negatives, float("inf")).amin(1)
        valid = positives.any(1) & negatives.any(1)
        if not valid.any():
            return embeddings.sum() * 0.0
        gap = hardest_positive[valid] - hardest_negative[valid]
        losses = F.softplus(gap) if self.soft_margin else F.relu(gap + self.margin)
        return losses.mean()
