"""Train, resume, evaluate and predict: the Python API behind the CLI.

A run lives in one folder::

    runs/<name>-<time>/
        config.yaml          resolved config, with package versions
        checkpoints/         Lightning resume checkpoints (last.ckpt, best.ckpt)
        logs/                metrics.csv and TensorBoard events
        model.safetensors    the best weights, loadable without pickle
        model.json           the model's registry name and options
        metrics.json         final evaluation
        report.html          learning curves and evaluation plots
"""

from __future__ import annotations

import csv
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models import create_model
from .callbacks import atomic_write_bytes, finite_or_none
from .config import ConfigError, RunConfig, config_from_dict, dump_config, load_config

MODEL_FILE = "model.safetensors"
MODEL_CONFIG_FILE = "model.json"
CONFIG_FILE = "config.yaml"


def package_versions() -> dict[str, str]:
    """Versions of the packages a run depends on, stored with its config."""
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for name in ("convlstm", "torch", "lightning", "torchmetrics", "numpy", "safetensors"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return versions


def _as_config(config: RunConfig | dict | str | Path) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, dict):
        return config_from_dict(config)
    return load_config(config)


def _new_run_dir(config: RunConfig) -> Path:
    root = Path(config.output.root)
    name = config.output.name or f"{config.model.name}-{config.data.name}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = root / f"{name}-{stamp}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{name}-{stamp}-{suffix}"
    return run_dir


def check_checkpoint(path: Path, run_dir: Path) -> Path:
    """Accept a resume checkpoint only from the run's own folder, and only if
    ``torch.load(weights_only=True)`` reads it (no pickled code)."""
    path, run_dir = path.resolve(), run_dir.resolve()
    if run_dir not in path.parents:
        raise ValueError(f"refusing checkpoint {path}: it is not inside the run folder {run_dir}")
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"refusing checkpoint {path}: torch.load(weights_only=True) cannot read it "
            f"({type(error).__name__}: {error})"
        ) from None
    return path


def save_model(model: nn.Module, run_dir: Path, name: str, options: dict[str, Any], task: str):
    """Write ``model.safetensors`` and ``model.json`` atomically."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(run_dir / MODEL_FILE, save(state))
    meta = {"format_version": 1, "task": task, "name": name, "options": options}
    atomic_write_bytes(run_dir / MODEL_CONFIG_FILE, json.dumps(meta, indent=2).encode())


def load(run_dir: str | Path) -> nn.Module:
    """The trained model of a run folder, from safetensors and JSON (no pickle), in eval mode."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    meta_path, weights_path = run_dir / MODEL_CONFIG_FILE, run_dir / MODEL_FILE
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: {run_dir} is not a finished convlstm run folder"
            )
    meta = json.loads(meta_path.read_text())
    model = create_model(meta["name"], **meta["options"])
    model.load_state_dict(load_file(weights_path))
    return model.eval()


def read_history(run_dir: Path) -> list[dict[str, float]]:
    """Per-epoch rows of the CSV log (train and validation values merged)."""
    path = run_dir / "logs" / "metrics.csv"
    if not path.is_file():
        return []
    rows: dict[int, dict[str, float]] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            merged = rows.setdefault(epoch, {"epoch": epoch})
            for key, value in row.items():
                if value in ("", None) or key == "epoch":
                    continue
                name = key.removesuffix("_epoch")
                if key.endswith("_step"):
                    continue
                merged[name] = float(value)
    return [rows[k] for k in sorted(rows)]


@dataclass
class Run:
    """A run folder: its config, trained model, evaluation and predictions."""

    run_dir: Path
    config: RunConfig
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, run_dir: str | Path) -> Run:
        run_dir = Path(run_dir)
        config_path = run_dir / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path} not found: {run_dir} is not a run folder")
        raw = load_yaml(config_path)
        raw.pop("versions", None)
        metrics_path = run_dir / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        return cls(run_dir, config_from_dict(raw), metrics)

    @property
    def model(self) -> nn.Module:
        if not hasattr(self, "_model"):
            self._model = load(self.run_dir)
        return self._model

    def evaluate(self, split: str = "test", data: dict[str, Any] | None = None, **kw) -> dict:
        """Evaluate on ``split`` (optionally another data config) and return the metrics."""
        from .evaluation import evaluate_run

        return evaluate_run(self, split=split, data=data, **kw)["metrics"]

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Class probabilities (classification) or forecast frames for ``x``.

        Args:
            x: one clip ``(T, C, H, W)`` or a batch ``(B, T, C, H, W)``.

        Returns:
            Classification: ``(B,)`` probability of class 1 (binary) or ``(B, K)``.
            Forecasting: ``(B, T_out, C, H, W)``. A single clip gives a batch of one.
        """
        if not torch.is_tensor(x) or x.dim() not in (4, 5):
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"expected a clip (T, C, H, W) or batch (B, T, C, H, W), got {shape}")
        if x.dim() == 4:
            x = x.unsqueeze(0)
        from .tasks import class_probabilities

        model = self.model
        outputs = []
        for chunk in x.float().split(batch_size):
            out = model(chunk)
            if self.config.task == "classification":
                out = class_probabilities(out)
            outputs.append(out)
        return torch.cat(outputs)


def load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def train(
    config: RunConfig | dict | str | Path,
    *,
    run_dir: str | Path | None = None,
    report: bool = True,
) -> Run:
    """Train a model as the config says and return the finished ``Run``.

    Args:
        config: a ``RunConfig``, a plain dict or a YAML path.
        run_dir: the run folder; default ``<output.root>/<name>-<time>``.
        report: write ``report.html`` after the final evaluation.
    """
    config = _as_config(config)
    run_dir = Path(run_dir) if run_dir is not None else _new_run_dir(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / CONFIG_FILE, {"versions": package_versions()})
    return _fit(config, run_dir, ckpt_path=None, report=report)


def resume(run_dir: str | Path, *, report: bool = True) -> Run:
    """Continue a killed or interrupted run from its last checkpoint (or from scratch
    when none was written), with its own config."""
    run = Run.open(run_dir)
    last = run.run_dir / "checkpoints" / "last.ckpt"
    ckpt = check_checkpoint(last, run.run_dir) if last.is_file() else None
    return _fit(run.config, run.run_dir, ckpt_path=ckpt, report=report)


def _fit(config: RunConfig, run_dir: Path, ckpt_path: Path | None, report: bool) -> Run:
    import lightning.pytorch as pl

    from .datamodule import SequenceDataModule
    from .tasks import TASKS
    from .trainer import build_trainer

    pl.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = SequenceDataModule(config.data, seed=config.seed, run_dir=run_dir)
    weights = datamodule.class_weights()
    monitor, _ = config.monitored()
    try:
        task = TASKS[config.task](
            config.model.name,
            config.model.options,
            loss={"name": config.loss.name, **config.loss.options},
            optimizer=vars(config.optimizer),
            scheduler=vars(config.scheduler),
            monitor=monitor,
            class_weights=None if weights is None else [float(w) for w in weights],
            **_task_extras(config),
        )
    except (TypeError, KeyError) as error:
        raise ConfigError(f"model: {error.args[0]}") from None
    trainer = build_trainer(config, run_dir)
    # The checkpoint passed check_checkpoint: it loads without unpickling code.
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    if trainer.global_rank != 0:
        return Run(run_dir, config)

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best and Path(best).is_file():
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        task.load_state_dict(state)
    save_model(task.model, run_dir, config.model.name, config.model.options, config.task)
    run = Run(run_dir, config)
    from .evaluation import evaluate_run

    result = evaluate_run(run, split="test", model=task.model.eval(), datamodule=datamodule)
    run.metrics = result["metrics"]
    metrics_json = json.dumps(jsonable(run.metrics), indent=2)
    atomic_write_bytes(run_dir / "metrics.json", metrics_json.encode())
    if report:
        from .evaluation import write_run_report

        write_run_report(run, result)
    return run


def _task_extras(config: RunConfig) -> dict[str, Any]:
    if config.task != "forecasting":
        return {}
    return {
        "data_range": config.evaluation.data_range,
        "thresholds": config.evaluation.thresholds or None,
    }


def jsonable(value: Any) -> Any:
    """Plain JSON values from metric dicts (tensors to lists, NaN/inf to null)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if torch.is_tensor(value):
        return jsonable(value.tolist())
    if isinstance(value, float):
        return finite_or_none(value)
    if hasattr(value, "item"):
        return jsonable(value.item())
    return value if isinstance(value, (int, str, bool)) or value is None else str(value)


__all__ = ["Run", "check_checkpoint", "load", "read_history", "resume", "save_model", "train"]
