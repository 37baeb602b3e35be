"""Evaluate a run on a split and turn the result into the run's report."""

from __future__ import annotations

import copy
import inspect
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


@torch.no_grad()
def evaluate_run(
    run,
    split: str = "test",
    data: dict[str, Any] | None = None,
    model: nn.Module | None = None,
    datamodule=None,
    max_batches: int | None = None,
) -> dict[str, Any]:
    """Metrics of ``run``'s model on ``split``, and the samples its report plots.

    Returns a dict with ``metrics`` and, for classification, ``probs``, ``labels``,
    ``clips`` (the first ``evaluation.report_samples`` clips) and ``attention``; for
    forecasting ``inputs``, ``truth``, ``forecast`` (first samples) and ``attention``.
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
    else:
        ev = run.config.evaluation
        metrics = ForecastMetrics(
            data_range=ev.data_range, thresholds=ev.thresholds or None, sync_on_compute=False
        )
    probs, labels, samples = [], [], None
    for index, (x, y) in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        out = model(x)
        if classification:
            scores = class_probabilities(out)
            metrics.update(scores, y)
            probs.append(scores)
            labels.append(y)
        else:
            metrics.update(out.float(), y.float(), last_frame(x, y))
        if samples is None:
            samples = (x[:n_samples], y[:n_samples], out[:n_samples])
    result: dict[str, Any] = {"metrics": metrics.compute(), "split": split}
    if samples is None:
        raise ValueError(f"the {split} split is empty: nothing to evaluate")
    x, y, out = samples
    attention = None
    if "return_attention" in inspect.signature(model.forward).parameters:
        _, maps = model(x, return_attention=True)
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


def write_run_report(run, result: dict[str, Any]) -> Path:
    """Plots and ``report.html`` for a run from an ``evaluate_run`` result."""
    from ..reports import build_classification_report, build_forecast_report
    from .run import read_history

    history = read_history(run.run_dir)
    if run.config.task == "classification":
        return build_classification_report(run.run_dir, history, result)
    return build_forecast_report(run.run_dir, history, result)


def headline_metrics(metrics: dict) -> dict:
    """The metrics a summary shows (classification scores, forecast errors and baselines,
    nowcasting skill)."""
    keys = ("accuracy", "balanced_accuracy", "roc_auc", "f1", "mse", "mae", "ssim", "psnr",
            "baseline_mse_zero", "baseline_mse_persistence")  # fmt: skip
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
        others = [f"{k} {head[k]:.4g}" for k in ("mae", "ssim", "psnr")
                  if isinstance(head.get(k), (int, float))]  # fmt: skip
        if others:
            lines.append(", ".join(others))
    skill = [f"{k} {v:.3g}" for k, v in head.items()
             if k.startswith(("csi@", "pod@", "far@")) and isinstance(v, (int, float))]  # fmt: skip
    if skill:
        lines.append(", ".join(skill))
    return lines
