"""Evaluation metrics built on torchmetrics (DDP-safe: states are synced across ranks).

* :class:`ClassificationMetrics`: accuracy, balanced accuracy, ROC-AUC, F1, confusion matrix,
  Youden threshold and the ROC curve for clip classifiers.
* :class:`ForecastMetrics`: OpenSTL-style MSE/MAE, SSIM, PSNR, per-lead-time curves and
  CSI/POD/FAR at nowcasting thresholds; :func:`nowcast_scores` for a single pair of tensors.
"""

from .classification import ClassificationMetrics
from .forecast import ForecastMetrics, nowcast_scores

__all__ = ["ClassificationMetrics", "ForecastMetrics", "nowcast_scores"]
