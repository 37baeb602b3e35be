"""Diagnostics: why does a ConvLSTM (or CNN+LSTM) confuse similar classes? Evidence per layer.

Every function takes a model and a loader of ``(clip (B, T, C, *S), target)`` batches and
returns plain dicts of numbers and lists (JSON-friendly); each has a plot function
(matplotlib Agg, no pyplot)::

    from convlstm.diagnostics import run_diagnostics, write_diagnostics
    result = run_diagnostics(model, val_loader, object_scale=24)
    json_path, html_path = write_diagnostics(result, "runs/my-run/diagnostics")

or one at a time: ``class_similarity`` (class-mean cosine similarity and
between/within-class distance ratio per layer), ``gradient_flow`` (``||dL/dh_t||`` per
step and cell, parameter-gradient norms), ``receptive_field`` (analytic with recurrence,
empirical from input gradients, object-scale warnings), ``gate_statistics`` (gate
distributions, saturation, cell-state norm over time) and ``attention_maps``.
The command line does the same for a run folder: ``convlstm diagnose RUN_DIR``.
"""

from .attention import attention_maps, plot_attention
from .gates import gate_statistics, plot_gate_statistics, recompute_step
from .gradients import gradient_flow, plot_gradient_flow
from .receptive_field import (
    analytic_receptive_field,
    empirical_receptive_field,
    plot_receptive_field,
    receptive_field,
)
from .report import run_diagnostics, summarize, write_diagnostics
from .similarity import (
    class_similarity,
    collect_features,
    plot_class_similarity,
    similarity_from_features,
)

__all__ = [
    "analytic_receptive_field",
    "attention_maps",
    "class_similarity",
    "collect_features",
    "empirical_receptive_field",
    "gate_statistics",
    "gradient_flow",
    "plot_attention",
    "plot_class_similarity",
    "plot_gate_statistics",
    "plot_gradient_flow",
    "plot_receptive_field",
    "receptive_field",
    "recompute_step",
    "run_diagnostics",
    "similarity_from_features",
    "summarize",
    "write_diagnostics",
]
