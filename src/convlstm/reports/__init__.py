"""Run reports: PNG plots (matplotlib, Agg only; pyplot is never imported) and a self-contained
``report.html`` with the images embedded, plus forecast animations (GIF or MP4).

Every function takes plain numpy arrays (CPU tensors work too) and dicts, so reports can be
made and tested without training. See :func:`build_classification_report` and
:func:`build_forecast_report` for the ``eval_result`` keys they read.
"""

from .animation import write_forecast_animation
from .build import build_classification_report, build_forecast_report
from .classification import plot_clip_predictions, plot_confusion_matrix
from .curves import plot_lead_time_curves, plot_learning_curves, plot_roc, plot_skill_by_lead
from .frames import plot_attention_overlays, plot_forecast_strip
from .html import write_report

__all__ = [
    "build_classification_report",
    "build_forecast_report",
    "plot_attention_overlays",
    "plot_clip_predictions",
    "plot_confusion_matrix",
    "plot_forecast_strip",
    "plot_lead_time_curves",
    "plot_learning_curves",
    "plot_roc",
    "plot_skill_by_lead",
    "write_forecast_animation",
    "write_report",
]
