"""Whole-run reports: make every plot for a classifier or forecaster run, then ``report.html``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .animation import write_forecast_animation
from .classification import plot_clip_predictions, plot_confusion_matrix
from .curves import plot_lead_time_curves, plot_learning_curves, plot_roc, plot_skill_by_lead
from .frames import plot_attention_overlays, plot_forecast_strip
from .html import write_report
from .plotting import as_array

_CURVE_KEYS = ("roc_fpr", "roc_tpr", "roc_thresholds")

History = Sequence[Mapping[str, Any]]


def _learning_section(run_dir: Path, history: History | None) -> list[tuple[str, list[Path]]]:
    if not history:
        return []
    try:
        return [
            ("Learning curves", [plot_learning_curves(history, run_dir / "learning_curves.png")])
        ]
    except ValueError:  # no numeric values logged yet
        return []


def build_classification_report(
    run_dir: str | Path, history: History | None, eval_result: Mapping[str, Any]
) -> Path:
    """Plot a classifier run into ``run_dir`` and write ``run_dir/report.html``.

    ``eval_result`` keys:
        * ``metrics`` (required): the dict of :class:`convlstm.metrics.ClassificationMetrics`;
          ``roc_fpr``/``roc_tpr``/``roc_auc`` give the ROC plot (binary), ``confusion_matrix``
          the confusion-matrix plot. Shown as the metrics table (ROC curve lists left out).
        * ``class_names``: ``K`` names (default ``"0"``, ``"1"``, ...).
        * ``probs`` ``(N,)`` or ``(N, K)`` and ``labels`` ``(N,)``: the evaluated set.
        * ``clips`` ``(n, T, C, H, W)``: a few samples to show, by default the first ``n`` of
          ``probs``/``labels``; ``clip_indices`` ``(n,)`` picks other rows instead.
        * ``attention`` ``(n, T, h, w)``: optional maps for ``clips``, drawn as overlays.
        * ``title``, ``notes``: optional page title and free text.

    Writes ``learning_curves.png`` (when ``history`` has values), ``roc.png``,
    ``confusion_matrix.png``, ``clip_predictions.png`` and ``attention.png`` as available.
    """
    run_dir = Path(run_dir)
    metrics = dict(eval_result["metrics"])
    names = eval_result.get("class_names")
    sections = _learning_section(run_dir, history)

    evaluation = []
    if "roc_fpr" in metrics and "roc_tpr" in metrics:
        auc = float(metrics.get("roc_auc", float("nan")))
        evaluation.append(
            plot_roc(metrics["roc_fpr"], metrics["roc_tpr"], auc, run_dir / "roc.png")
        )
    if "confusion_matrix" in metrics:
        matrix = metrics["confusion_matrix"]
        names = [str(i) for i in range(len(matrix))] if names is None else list(names)
        evaluation.append(plot_confusion_matrix(matrix, names, run_dir / "confusion_matrix.png"))
    if evaluation:
        sections.append(("Evaluation", evaluation))

    if eval_result.get("clips") is not None:
        clips = as_array(eval_result["clips"], "eval_result['clips']", 5, "(n, T, C, H, W)")
        default = np.arange(len(clips))
        rows = np.asarray(eval_result.get("clip_indices", default), dtype=int)
        probs = as_array(eval_result["probs"], "eval_result['probs']", (1, 2), "(N,) or (N, K)")
        labels = as_array(eval_result["labels"], "eval_result['labels']", 1, "(N,)")
        k = probs.shape[1] if probs.ndim == 2 else 2
        names = [str(i) for i in range(k)] if names is None else list(names)
        clip_plot = plot_clip_predictions(
            clips, probs[rows], labels[rows], names, run_dir / "clip_predictions.png"
        )
        sections.append(("Sample clips", [clip_plot]))
        if eval_result.get("attention") is not None:
            overlay = plot_attention_overlays(
                clips, eval_result["attention"], run_dir / "attention.png"
            )
            sections.append(("Attention", [overlay]))

    table = {k: v for k, v in metrics.items() if k not in _CURVE_KEYS}
    title = eval_result.get("title") or f"{run_dir.name}: clip classification"
    return write_report(run_dir, title, table, sections, eval_result.get("notes", ""))


def _is_skill_curve(key: str) -> bool:
    return key.endswith("_per_lead") and (key.startswith(("csi@", "fss@"))
                                          or key == "mae_per_pixel_per_lead")  # fmt: skip


def _comparison(
    metrics: Mapping[str, Any], minutes_per_step: float | None
) -> tuple[dict[str, dict[str, Any]], list[tuple[str, list[list[Any]]]]]:
    """Skill curves of the model and its baselines, and the side-by-side tables: scores
    over the set, and the CSI per lead time at each threshold."""
    forecasters = {"model": metrics, **metrics["baselines"]}
    curves = {
        key.removesuffix("_per_lead"): {
            name: values[key] for name, values in forecasters.items() if key in values
        }
        for key in metrics
        if _is_skill_curve(key)
    }
    names = list(forecasters)
    overall = [["score", *names]]
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and key.startswith(("csi@", "pod@", "far@", "fss@",
                                                               "mae_per_pixel")):  # fmt: skip
            overall.append([key, *(forecasters[n].get(key, float("nan")) for n in names)])
    tables = [("Model and baselines on the same windows", overall)]
    for key in metrics:
        if key.startswith("csi@") and key.endswith("_per_lead"):
            rows = [["lead", *names]]
            for k in range(len(metrics[key])):
                lead = f"+{(k + 1) * minutes_per_step:g} min" if minutes_per_step else f"+{k + 1}"
                rows.append([lead, *(forecasters[n].get(key, [float("nan")] * (k + 1))[k]
                                     for n in names)])  # fmt: skip
            tables.append((f"{key.removesuffix('_per_lead')} by lead time", rows))
    return curves, tables


def build_forecast_report(
    run_dir: str | Path, history: History | None, eval_result: Mapping[str, Any]
) -> Path:
    """Plot a forecaster run into ``run_dir`` and write ``run_dir/report.html``.

    ``eval_result`` keys:
        * ``metrics`` (required): the dict of :class:`convlstm.metrics.ForecastMetrics`; its
          ``*_per_lead`` lists give the lead-time plot, the rest the metrics table.
        * ``inputs`` ``(n, T_in, C, H, W)``, ``truth`` and ``forecast`` ``(n, T_out, C, H, W)``:
          a few sequences for the frame strip (first three) and the animation (first one).
        * ``attention`` ``(n, T, h, w)``: optional maps, overlaid on the inputs when
          ``T == T_in``, else on the forecast frames (``T == T_out``).
        * ``cmap``: colour map for one-channel frames (default ``"gray"``; ``"viridis"`` suits
          radar); ``title``, ``notes``: optional page title and free text.
        * nowcasting: ``metrics["baselines"]`` (``{name: metrics}`` on the same windows) adds
          ``skill_by_lead.png`` (CSI and FSS per lead, MAE per pixel, every forecaster) and
          side-by-side tables; ``baseline_forecasts`` (``{name: (n, T_out, C, H, W)}``) adds
          a panel per baseline but persistence to the animation; ``minutes_per_step``
          labels lead times in minutes.

    Writes ``learning_curves.png``, ``forecast_strip.png``, ``forecast.gif`` (embedded too),
    ``lead_time.png`` and ``attention.png`` as available.
    """
    run_dir = Path(run_dir)
    metrics = dict(eval_result["metrics"])
    cmap = eval_result.get("cmap", "gray")
    sections = _learning_section(run_dir, history)
    baselines = metrics.pop("baselines", None)
    tables: list = []
    if baselines:
        minutes = eval_result.get("minutes_per_step")
        curves, tables = _comparison({**metrics, "baselines": baselines}, minutes)
        if curves:
            plot = plot_skill_by_lead(curves, run_dir / "skill_by_lead.png", minutes)
            sections.append(("Model and baselines by lead time", [plot]))

    has_frames = all(eval_result.get(k) is not None for k in ("inputs", "truth", "forecast"))
    if has_frames:
        inputs, truth, forecast = (eval_result[k] for k in ("inputs", "truth", "forecast"))
        strip = plot_forecast_strip(
            inputs, truth, forecast, run_dir / "forecast_strip.png", cmap=cmap
        )
        others = {
            name: frames[:1][0]
            for name, frames in (eval_result.get("baseline_forecasts") or {}).items()
            if name != "persistence"
        }
        gif = write_forecast_animation(
            run_dir / "forecast.gif", inputs[:1], truth[:1], forecast[:1], cmap=cmap,
            others=others, forecast_label="model" if others else "forecast",
        )  # fmt: skip
        panels = " / ".join(["input", "truth", "forecast", *others])
        sections.append((f"Forecasts: {panels}", [strip, gif]))

    per_lead = {
        k: v for k, v in metrics.items()
        if k.endswith("_per_lead") and not (baselines and _is_skill_curve(k))
    }  # fmt: skip
    if per_lead:
        sections.append(
            ("Error by lead time", [plot_lead_time_curves(per_lead, run_dir / "lead_time.png")])
        )

    if has_frames and eval_result.get("attention") is not None:
        maps = as_array(eval_result["attention"], "eval_result['attention']", 4, "(n, T, h, w)")
        x = as_array(inputs, "eval_result['inputs']", 5, "(n, T_in, C, H, W)")
        f = as_array(forecast, "eval_result['forecast']", 5, "(n, T_out, C, H, W)")
        if maps.shape[1] not in (x.shape[1], f.shape[1]):
            raise ValueError(
                f"eval_result['attention'] must have T = T_in = {x.shape[1]} or "
                f"T = T_out = {f.shape[1]} maps per sequence, got {maps.shape}"
            )
        frames = x if maps.shape[1] == x.shape[1] else f
        overlay = plot_attention_overlays(frames, maps, run_dir / "attention.png", cmap=cmap)
        sections.append(("Attention", [overlay]))

    table = {k: v for k, v in metrics.items() if not k.endswith("_per_lead")}
    title = eval_result.get("title") or f"{run_dir.name}: frame forecasting"
    return write_report(run_dir, title, table, sections, eval_result.get("notes", ""), tables)
