"""Evaluation metrics built on torchmetrics (DDP-safe: states are synced across ranks).

* :class:`ClassificationMetrics`: accuracy, balanced accuracy, ROC-AUC, F1, confusion matrix,
  Youden threshold and the ROC curve for clip classifiers.
* :class:`ForecastMetrics`: OpenSTL-style MSE/MAE, SSIM, PSNR, per-lead-time curves and
  CSI/POD/FAR at nowcasting thresholds (over the set and per lead time) and the fractions
  skill score; :func:`nowcast_scores` and :func:`fractions_skill_score` for one pair of tensors.
"""

from .classification import ClassificationMetrics
from .forecast import ForecastMetrics, fractions_skill_score, nowcast_scores

__all__ = ["ClassificationMetrics", "ForecastMetrics", "fractions_skill_score", "nowcast_scores"]
