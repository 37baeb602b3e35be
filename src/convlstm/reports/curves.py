"""Line plots: learning curves, ROC curve and per-lead-time curves."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .plotting import as_array, grid, new_figure, save_figure

_SPLITS = ("train", "val", "test")


def _number(value: Any) -> float | None:
    """``value`` as a finite float (numeric strings, as read from a CSV log, included), or None
    for missing, empty, NaN, bools, other strings and lists."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _panel_name(key: str) -> str:
    """``val_accuracy`` and ``train_accuracy_epoch`` share the panel ``accuracy``."""
    key = re.sub(rf"^({'|'.join(_SPLITS)})[_/]", "", key)
    return re.sub(r"_(step|epoch)$", "", key)


def learning_curve_panels(
    history: Sequence[Mapping[str, Any]],
) -> tuple[str, dict[str, dict[str, tuple[list[float], list[float]]]]]:
    """Group a metric history into panels.

    Returns ``(x_label, panels)`` with ``panels[panel][key] = (xs, ys)``: the x axis is
    ``step`` when rows have one, else ``epoch``, else the row index; missing, NaN and
    non-numeric values are dropped; ``loss`` comes first, then one panel per other metric.
    """
    x_key = next((k for k in ("step", "epoch") if any(k in row for row in history)), None)
    panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for index, row in enumerate(history):
        x = _number(row.get(x_key)) if x_key else float(index)
        if x is None:
            continue
        for key, value in row.items():
            y = _number(value)
            if key in ("step", "epoch") or y is None:
                continue
            xs, ys = panels.setdefault(_panel_name(key), {}).setdefault(key, ([], []))
            xs.append(x)
            ys.append(y)
    order = sorted(panels, key=lambda name: (name != "loss", name))
    return x_key or "row", {name: panels[name] for name in order}


def plot_learning_curves(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Loss curves and one panel per other metric from rows like
    ``{"epoch": 0, "step": 120, "train_loss": 0.7, "val_loss": 0.6, "val_accuracy": 0.55}``.

    Keys may differ between rows; missing, empty and NaN values are skipped and numeric strings
    (rows of Lightning's ``metrics.csv`` read with ``csv.DictReader``) are parsed. Train and
    validation
    versions of a metric (``train_x``, ``val_x``, ``x_step``, ``x_epoch``) share a panel.
    """
    x_label, panels = learning_curve_panels(history)
    if not panels:
        raise ValueError("history has no numeric metric values to plot")
    rows, cols = grid(len(panels))
    fig = new_figure(4.2 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, series) in zip(axes, panels.items()):
        for key, (xs, ys) in sorted(series.items()):
            ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=key)
        ax.set_title(name)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    return save_figure(fig, path)


def plot_roc(fpr: Sequence[float], tpr: Sequence[float], auc: float, path: str | Path) -> Path:
    """ROC curve from matching ``fpr`` and ``tpr`` lists, with the chance diagonal and the point
    of maximal Youden's J (TPR - FPR) marked."""
    fpr_a = as_array(fpr, "fpr", 1, "(P,)")
    tpr_a = as_array(tpr, "tpr", 1, "(P,)")
    if fpr_a.shape != tpr_a.shape or fpr_a.size == 0:
        raise ValueError(
            f"fpr and tpr must be non-empty and of equal length, "
            f"got {fpr_a.shape} and {tpr_a.shape}"
        )
    fig = new_figure(4.8, 4.4)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.plot(fpr_a, tpr_a, linewidth=2, label=f"ROC (AUC = {auc:.3f})")
    best = int(np.argmax(tpr_a - fpr_a))
    ax.scatter(
        [fpr_a[best]],
        [tpr_a[best]],
        color="crimson",
        zorder=3,
        label=f"max Youden J = {tpr_a[best] - fpr_a[best]:.3f}",
    )
    ax.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        xlabel="false positive rate",
        ylabel="true positive rate",
        title="ROC curve",
        aspect="equal",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return save_figure(fig, path)


def plot_lead_time_curves(per_lead: Mapping[str, Sequence[float]], path: str | Path) -> Path:
    """One panel per metric (e.g. ``{"mse_per_lead": [...], "ssim_per_lead": [...]}``) against
    lead time 1..T_out."""
    if not per_lead:
        raise ValueError("per_lead is empty: give at least one metric curve")
    rows, cols = grid(len(per_lead))
    fig = new_figure(4.2 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, values) in zip(axes, per_lead.items()):
        ys = as_array(values, f"per_lead[{name!r}]", 1, "(T_out,)")
        ax.plot(np.arange(1, ys.size + 1), ys, marker="o", markersize=4)
        ax.set_title(name.removesuffix("_per_lead"))
        ax.set_xlabel("lead time (frames ahead)")
        ax.grid(alpha=0.3)
    for ax in axes[len(per_lead) :]:
        ax.set_axis_off()
    return save_figure(fig, path)


def plot_skill_by_lead(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    minutes_per_step: float | None = None,
) -> Path:
    """One panel per score, one line per forecaster, against lead time: e.g.
    ``{"csi@1.0": {"model": [...], "persistence": [...], "optical_flow": [...]}}``.
    NaN values (a score undefined at a lead) leave gaps. With ``minutes_per_step`` the
    lead axis is in minutes."""
    if not curves:
        raise ValueError("curves is empty: give at least one score")
    for name, lines in curves.items():
        lengths = {key: len(values) for key, values in lines.items()}
        first = next(iter(lengths.values()), 0)
        for key, length in lengths.items():
            if length != first:
                raise ValueError(
                    f"curves[{name!r}][{key!r}] has {length} values, the first forecaster "
                    f"{first}: every forecaster needs one value per lead time"
                )
    rows, cols = grid(len(curves))
    fig = new_figure(4.2 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, lines) in zip(axes, curves.items()):
        for key, values in lines.items():
            ys = as_array([math.nan if v is None else v for v in values],
                          f"curves[{name!r}][{key!r}]", 1, "(T_out,)")  # fmt: skip
            xs = np.arange(1, ys.size + 1) * (minutes_per_step or 1)
            ax.plot(xs, ys, marker="o", markersize=3, label=key)
        ax.set_title(name)
        ax.set_xlabel("lead time (min)" if minutes_per_step else "lead time (frames ahead)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(curves) :]:
        ax.set_axis_off()
    return save_figure(fig, path)
