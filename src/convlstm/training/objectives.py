"""The training objective of a task: a loss from ``convlstm.losses``, plus an optional
metric-learning term on the clip embedding for classes that differ only subtly.

Config (``loss`` section)::

    loss:
      name: cross_entropy        # default: bce (binary), cross_entropy, or mse (forecasting)
      label_smoothing: 0.1       # any option of that loss
      metric: triplet            # optional: triplet or supcon on model.embed(x)
      metric_weight: 0.5
      metric_options: {margin: 0.3}
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..losses import create_loss
from .config import ConfigError

METRIC_LOSSES = ("triplet", "supcon")


class Objective(nn.Module):
    """``loss(output, target) + metric_weight * metric(embedding, target)``."""

    def __init__(self, loss: nn.Module, metric: nn.Module | None = None, weight: float = 0.0):
        super().__init__()
        self.loss, self.metric, self.weight = loss, metric, weight

    @property
    def needs_embedding(self) -> bool:
        return self.metric is not None

    def forward(
        self, output: torch.Tensor, target: torch.Tensor, embedding: torch.Tensor | None = None
    ) -> torch.Tensor:
        value = self.loss(output, target)
        if self.metric is not None:
            value = value + self.weight * self.metric(embedding, target)
        return value


def build_objective(
    task: str,
    loss: dict[str, Any],
    num_classes: int | None = None,
    class_weights: torch.Tensor | None = None,
) -> Objective:
    """An ``Objective`` from the ``loss`` config section (see the module docstring)."""
    options = dict(loss)
    name = options.pop("name", None)
    metric_name = options.pop("metric", None)
    metric_weight = float(options.pop("metric_weight", 1.0))
    metric_options = options.pop("metric_options", {}) or {}
    if name is None:
        name = "mse" if task == "forecasting" else ("bce" if num_classes == 1 else "cross_entropy")
    if class_weights is not None:
        if name not in ("bce", "cross_entropy"):
            raise ConfigError(
                f"data.class_weights needs loss.name bce or cross_entropy, got {name}"
            )
        options["class_weights"] = [float(w) for w in class_weights]
    try:
        base = create_loss(name, **options)
        metric = None
        if metric_name is not None:
            if task != "classification" or metric_name not in METRIC_LOSSES:
                raise ConfigError(
                    f"loss.metric must be one of {list(METRIC_LOSSES)} (classification only), "
                    f"got {metric_name!r}"
                )
            metric = create_loss(metric_name, **metric_options)
    except (KeyError, TypeError) as error:
        raise ConfigError(f"loss: {error.args[0]}") from None
    return Objective(base, metric, metric_weight)
