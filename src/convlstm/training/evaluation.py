"""Evaluate a run on a split and turn the result into the run's report.

A forecasting data set that names nowcasting ``baselines`` (such as ``radar_files``:
persistence and optical-flow extrapolation) is evaluated in the units of its files (its
preprocessing inverted, e.g. log rain rate back to mm/h), and every baseline is scored
on exactly the same windows, beside the model, under ``metrics["baselines"]``.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..metrics import ClassificationMetrics, ForecastMetrics
from .config import DataConfig, config_from_dict
from .tasks import class_probabilities, last_frame


def datamodule_for(run, data: dict[str, Any] | None = None):
    """The run's data module, set up (optionally with another ``data`` config section)."""
    from .datamodule import SequenceDataModule

    config = run.config
    if data is not None:
        raw = config.to_dict()
        raw["data"] = data
        config = config_from_dict(raw)
    data_config: DataConfig = copy.deepcopy(config.data)
    data_config.augment = None
    module = SequenceDataModule(data_config, seed=config.seed, run_dir=run.run_dir)
    module.setup()
    return module


def _spatial_maps(maps: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The last per-step spatial map ``(n, T, h, w)`` of an attention dict, if any."""
    for key in sorted(maps, reverse=True):
        value = maps[key]
        if "spatial" in key and value.dim() >= 4:
            return value.reshape(*value.shape[:2], *value.shape[-2:])
    return None


def class_names(dataset) -> list[str] | None:
    """Class names from a data set's ``classes`` list (through wrappers/subsets)."""
    while dataset is not None:
        names = getattr(dataset, "classes", None)
        if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
            return list(names)
        dataset = getattr(dataset, "dataset", None)
    return None


def first_test_clip(run) -> torch.Tensor:
    """The first input ``(T, C, H, W)`` of the run's test split (example input for
    exports, and the sample shape predictions are fitted to)."""
    return datamodule_for(run).datasets["test"][0][0]


def nowcasting_of(dataset) -> Any | None:
    """The data set (through ``Subset`` and wrappers) that names nowcasting ``baselines``,
    or ``None``."""
    while dataset is not None:
        if isinstance(getattr(type(dataset), "baselines", None), (tuple, list)):
            return dataset
        dataset = getattr(dataset, "dataset", None)
    return None


def _fss_scales(nowcasting: Any) -> list[int]:
    scales = getattr(nowcasting, "fss_scales", None)
    return list(scales) if scales else []


@torch.no_grad()
def evaluate_run(
    run,
    split: str = "test",
    data: dict[str, Any] | None = None,
    model: nn.Module | None = None,
    datamodule=None,
    max_batches: int | None = None,
    baselines: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Metrics of ``run``'s model on ``split``, and the samples its report plots.

    Returns a dict with ``metrics`` and, for classification, ``probs``, ``labels``,
    ``clips`` (the first ``evaluation.report_samples`` clips) and ``attention``; for
    forecasting ``inputs``, ``truth``, ``forecast`` (first samples) and ``attention``.

    For a nowcasting data set (see :func:`nowcasting_of`) the metrics are in the units of
    its files (``metrics["units"]``), with the fractions skill score at the data set's
    ``fss_scales``, and ``baselines`` (default: the data set's) are scored on the same
    windows: ``metrics["baselines"][name]`` holds the same keys as the model's, and
    ``baseline_forecasts[name]`` the first samples' forecasts.
    """
    model = (model or run.model).eval()
    datamodule = datamodule or datamodule_for(run, data)
    if split not in ("val", "test"):
        raise ValueError(f'split must be "val" or "test", got {split!r}')
    loader = datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader()
    n_samples = run.config.evaluation.report_samples
    classification = run.config.task == "classification"
    if classification:
        num_classes = int(getattr(model, "num_classes", 1))
        # Evaluation runs in one process: never wait for other ranks to sync.
        metrics = ClassificationMetrics(
            2 if num_classes == 1 else num_classes, sync_on_compute=False
        )
    nowcasting = None if classification else nowcasting_of(datamodule.datasets[split])
    runners: dict[str, Any] = {}
    if not classification:
        ev = run.config.evaluation
        scales = _fss_scales(nowcasting) if nowcasting is not None and ev.thresholds else []

        def forecast_metrics() -> ForecastMetrics:
            return ForecastMetrics(
                data_range=ev.data_range, thresholds=ev.thresholds or None,
                fss_scales=scales or None, sync_on_compute=False,
            )  # fmt: skip

        metrics = forecast_metrics()
        if nowcasting is not None:
            from ..models.nowcasting_baselines import get_baseline

            names = nowcasting.baselines if baselines is None else baselines
            runners = {name: get_baseline(name) for name in names}
            baseline_metrics = {name: forecast_metrics() for name in runners}
    to_units = datamodule.preprocessing.invert if nowcasting is not None else None
    probs, labels, samples, baseline_samples = [], [], None, {}
    for index, (x, y) in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        out = model(x)
        if classification:
            scores = class_probabilities(out)
            metrics.update(scores, y)
            probs.append(scores)
            labels.append(y)
        elif to_units is not None:
            x, y, out = to_units(x.float()), to_units(y.float()), to_units(out.float())
            metrics.update(out, y, x[:, -1])
            for name, runner in runners.items():
                forecast = runner(x, y.shape[1])
                baseline_metrics[name].update(forecast, y, x[:, -1])
                baseline_samples.setdefault(name, forecast[:n_samples])
        else:
            metrics.update(out.float(), y.float(), last_frame(x, y))
        if samples is None:
            samples = (x[:n_samples], y[:n_samples], out[:n_samples])
    if samples is None:
        raise ValueError(f"the {split} split is empty: nothing to evaluate")
    result: dict[str, Any] = {"metrics": metrics.compute(), "split": split}
    if nowcasting is not None:
        result["metrics"]["units"] = getattr(nowcasting, "units", None)
        result["metrics"]["minutes_per_step"] = getattr(nowcasting, "minutes_per_step", None)
        result["metrics"]["baselines"] = {k: m.compute() for k, m in baseline_metrics.items()}
        result["baseline_forecasts"] = {k: v.numpy() for k, v in baseline_samples.items()}
        result["minutes_per_step"] = getattr(nowcasting, "minutes_per_step", None)
        result["cmap"] = "viridis"
    x, y, out = samples
    attention = None
    if "return_attention" in inspect.signature(model.forward).parameters:
        model_input = samples[0] if to_units is None else _model_units(datamodule, samples[0])
        _, maps = model(model_input, return_attention=True)
        attention = _spatial_maps(maps)
    if classification:
        names = class_names(datamodule.datasets["train"])
        result.update(
            probs=torch.cat(probs).numpy(), labels=torch.cat(labels).numpy(),
            class_names=names,
            clips=x.numpy(), attention=None if attention is None else attention.numpy(),
        )  # fmt: skip
    else:
        result.update(
            inputs=x.numpy(), truth=y.numpy(), forecast=out.numpy(),
            attention=None if attention is None else attention.numpy(),
        )  # fmt: skip
    return result


def _model_units(datamodule, x: torch.Tensor) -> torch.Tensor:
    """Inputs in the files' units back to the model's (the data set's steps again)."""
    return datamodule.preprocessing(x)


def side_by_side(
    metrics: dict[str, Any],
    threshold: float = 1.0,
    scores: Sequence[str] = ("csi", "pod", "far"),
    minutes_per_step: float | None = None,
) -> list[str]:
    """Lines of a plain-text table: per lead time, ``scores`` at ``threshold`` and the MAE
    per pixel of the model and of every baseline in ``metrics["baselines"]``; leads in
    minutes with ``minutes_per_step`` (default: ``metrics["minutes_per_step"]``).

    Example::

        lead     csi model  persistence  optical_flow  ...
        +5 min        0.71         0.53          0.76
    """
    forecasters = {"model": metrics, **metrics.get("baselines", {})}
    minutes_per_step = minutes_per_step or metrics.get("minutes_per_step")
    columns = [(f"{s}@{float(threshold)}_per_lead", s) for s in scores]
    columns.append(("mae_per_pixel_per_lead", "mae"))
    present = [(key, label) for key, label in columns if key in metrics]
    if not present:
        raise ValueError(
            f"no per-lead scores at threshold {threshold} in the metrics (thresholds: "
            f"{sorted(k.split('@')[1] for k in metrics if k.startswith('csi@') and '_' not in k)})"
        )
    leads = len(metrics[present[0][0]])
    header = ["lead"]
    for _, label in present:
        header += [f"{label} {name}" for name in forecasters]
    rows = [header]
    for k in range(leads):
        lead = f"+{(k + 1) * minutes_per_step:g} min" if minutes_per_step else f"+{k + 1}"
        row = [lead]
        for key, _ in present:
            for values in forecasters.values():
                value = values.get(key, [math.nan] * leads)[k]
                row.append("nan" if value is None or math.isnan(value) else f"{value:.3f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]


def write_run_report(run, result: dict[str, Any]) -> Path:
    """Plots and ``report.html`` for a run from an ``evaluate_run`` result."""
    from ..reports import build_classification_report, build_forecast_report
    from .run_folder import read_history

    history = read_history(run.run_dir)
    if run.config.task == "classification":
        return build_classification_report(run.run_dir, history, result)
    return build_forecast_report(run.run_dir, history, result)


def headline_metrics(metrics: dict) -> dict:
    """The metrics a summary shows (classification scores, forecast errors and baselines,
    nowcasting skill)."""
    keys = ("accuracy", "balanced_accuracy", "roc_auc", "f1", "mse", "mae", "ssim", "psnr",
            "sharpness", "baseline_mse_zero", "baseline_mse_persistence")  # fmt: skip
    return {k: metrics[k] for k in keys if k in metrics} | {
        k: v for k, v in metrics.items() if k.startswith(("csi@", "pod@", "far@"))
    }


def metric_lines(metrics: dict) -> list[str]:
    """The headline metrics in words; a forecast's MSE beside its two baselines."""
    head = headline_metrics(metrics)
    lines = []
    scores = [f"{k} {head[k]:.4g}" for k in ("accuracy", "balanced_accuracy", "roc_auc", "f1")
              if isinstance(head.get(k), (int, float))]  # fmt: skip
    if scores:
        lines.append(", ".join(scores))
    mse = head.get("mse")
    if isinstance(mse, (int, float)):
        zero, last = head.get("baseline_mse_zero"), head.get("baseline_mse_persistence")
        line = f"mse {mse:.4g} per frame"
        if isinstance(zero, (int, float)) and isinstance(last, (int, float)):
            line += f" (blank frames {zero:.4g}, repeating the last input {last:.4g})"
            if mse >= min(zero, last):
                line += ": worse than a baseline, the model has not learnt the task yet"
        lines.append(line)
        others = [f"{k} {head[k]:.4g}" for k in ("mae", "ssim", "psnr", "sharpness")
                  if isinstance(head.get(k), (int, float))]  # fmt: skip
        if others:
            lines.append(", ".join(others))
    skill = [f"{k} {v:.3g}" for k, v in head.items()
             if k.startswith(("csi@", "pod@", "far@")) and isinstance(v, (int, float))]  # fmt: skip
    if skill:
        lines.append(", ".join(skill))
    return lines
