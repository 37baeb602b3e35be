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

import json
import os
import platform
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..runtime import ConvLSTMWarning
from .callbacks import atomic_write_bytes, finite_or_none
from .config import (
    ConfigError,
    RunConfig,
    config_from_dict,
    dump_config,
    load_config,
    resolve_config,
)
from .evaluation import class_names, evaluate_run, write_run_report
from .run_folder import (
    CONFIG_FILE,
    LOCK_FILE,
    ModelSpec,
    RunFolderError,
    RunLock,
    check_checkpoint,
    check_new_run_dir,
    inside,
    is_follower_rank,
    load_model,
    read_history,
    read_spec,
    save_model,
    trim_history,
)


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
    return load_config(resolve_config(config))


def _new_run_dir(config: RunConfig) -> Path:
    root = Path(config.output.root)
    base = inside(root, config.output.name or f"{config.model.name}-{config.data.name}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = base.with_name(f"{base.name}-{stamp}")
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = base.with_name(f"{base.name}-{stamp}-{suffix}")
    return run_dir


def load(run_dir: str | Path) -> nn.Module:
    """The trained model of a run folder, from safetensors and JSON (no pickle), in eval
    mode. It takes inputs as evaluation feeds them (after the run's preprocessing);
    ``Run.open(run_dir).predict`` takes frames in the units of the training files."""
    return load_model(run_dir)


@dataclass
class Run:
    """A run folder: its config, trained model, evaluation and predictions.

    Everything but evaluation works from the folder alone (``model.json`` describes the
    input, preprocessing and output), wherever it was copied to.
    """

    run_dir: Path
    config: RunConfig
    metrics: dict[str, Any] = field(default_factory=dict)
    finished_before: bool = False  # resume() found the run already finished

    @classmethod
    def open(cls, run_dir: str | Path) -> Run:
        run_dir = Path(run_dir)
        config_path = run_dir / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path} not found: {run_dir} is not a run folder")
        raw = load_yaml(config_path)
        if not isinstance(raw, dict):
            raise ValueError(f"{config_path}: expected a mapping, got {type(raw).__name__}")
        raw.pop("versions", None)
        metrics_path = run_dir / "metrics.json"
        try:
            metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        except json.JSONDecodeError as error:
            raise ValueError(f"{metrics_path} is not valid JSON ({error})") from None
        return cls(run_dir, config_from_dict(raw), metrics)

    @property
    def spec(self) -> ModelSpec:
        """The run's ``model.json``: input, preprocessing, output and class names."""
        if not hasattr(self, "_spec"):
            self._spec = read_spec(self.run_dir)
        return self._spec

    @property
    def model(self) -> nn.Module:
        """The trained model (inputs after preprocessing, raw outputs)."""
        if not hasattr(self, "_model"):
            self._model = load_model(self.run_dir, self.spec)
        return self._model

    def checkpoint_model(self, checkpoint: str | Path) -> nn.Module:
        """The run's model with the weights of one of its Lightning checkpoints (a path
        inside the run folder, or relative to it: ``checkpoints/minute-5.ckpt``), in eval
        mode; works on a run still training (no ``model.safetensors`` yet)."""
        from ..models import create_model

        path = Path(checkpoint)
        if not path.is_file() and (self.run_dir / path).is_file():
            path = self.run_dir / path
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {checkpoint} not found (nor in {self.run_dir})")
        path = check_checkpoint(path, self.run_dir)
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        weights = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
        model = create_model(self.config.model.name, **self.config.model.options)
        model.load_state_dict(weights)
        return model.eval()

    def predictor(self, logits: bool = False) -> nn.Module:
        """The model with the run's preprocessing and output transform (see ``Predictor``)."""
        from .inference import Predictor

        return Predictor(self.model, self.spec, logits=logits).eval()

    def evaluate(self, split: str = "test", data: dict[str, Any] | None = None, **kw) -> dict:
        """Evaluate on ``split`` (optionally another data config) and return the metrics."""
        return evaluate_run(self, split=split, data=data, **kw)["metrics"]

    @torch.no_grad()
    def predict(self, x: Any, batch_size: int = 16, logits: bool = False) -> torch.Tensor:
        """Class probabilities (classification) or forecast frames for ``x``.

        ``x`` holds frames in the units of the training files (before any normalisation
        the run applied; 8-bit arrays are mapped to [0, 1] when training did so): the run's
        preprocessing is applied here, and forecasts come back in the same units.

        Args:
            x: one clip ``(T, C, H, W)`` or a batch ``(B, T, C, H, W)``, a tensor or a
                NumPy array, with exactly the run's ``T`` (``spec.frames`` times the file
                frames per step); cut longer clips into windows (``convlstm predict``).
            logits: a classifier's raw outputs instead of probabilities.

        Returns:
            Classification: ``(B,)`` probability of class 1 (binary) or ``(B, K)``.
            Forecasting: ``(B, T_out, C, H, W)``. A single clip gives a batch of one.
        """
        import numpy as np

        if not (torch.is_tensor(x) or isinstance(x, np.ndarray)) or x.ndim not in (4, 5):
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(f"expected a clip (T, C, H, W) or batch (B, T, C, H, W), got {shape}")
        spec = self.spec
        x = spec.preprocessing.to_float(x)
        if x.dim() == 4:
            x = x.unsqueeze(0)
        check_input_shape(spec, tuple(x.shape[1:]), "x")
        predictor = self.predictor(logits=logits)
        return torch.cat([predictor(chunk) for chunk in x.split(batch_size)])


def check_input_shape(spec: ModelSpec, shape: tuple[int, ...], where: str) -> None:
    """Raise if one clip of ``shape`` ``(T, C, *S)`` is not what the run's model takes."""
    steps = spec.frames * spec.preprocessing.frames_per_step
    spatial = tuple(shape[2:])
    wanted = f"(T={steps}, C={spec.channels}, {'H, W' if spec.any_size else spec.size})"
    if (
        len(shape) != 2 + len(spec.size)
        or shape[0] != steps
        or shape[1] != spec.channels
        or (not spec.any_size and list(spatial) != spec.size)
    ):
        raise ValueError(
            f"{where}: the model takes clips {wanted}, got {shape}; cut longer clips into "
            "windows of T frames (convlstm predict --stride)"
        )


def load_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def train(
    config: RunConfig | dict | str | Path,
    *,
    run_dir: str | Path | None = None,
    report: bool = True,
    overwrite: bool = False,
) -> Run:
    """Train a model as the config says and return the finished ``Run``.

    Args:
        config: a ``RunConfig``, a plain dict, a YAML path or a bundled config's name
            (``"similar_motions"``).
        run_dir: the run folder; default ``<output.root>/<output.name>-<time>``.
        report: write ``report.html`` after the final evaluation.
        overwrite: replace an existing run folder (default: refuse it).

    Raises:
        RunFolderError: ``run_dir`` holds a run already (and ``overwrite`` is off), or
            another process is writing it.
    """
    config = _as_config(config)
    if is_follower_rank():  # a DDP process started by rank 0: rank 0 owns the folder
        follower_dir = run_dir or os.environ.get(RUN_DIR_ENV)
        if follower_dir is None:
            raise RunFolderError(
                "every process of a multi-process run must write one run folder: give "
                "--run-dir (torchrun and srun start the processes themselves)"
            )
        folder = Path(follower_dir)
        return _fit(config, folder, _prepare(config, folder), ckpt_path=None, report=report)
    folder = _new_run_dir(config) if run_dir is None else Path(run_dir)
    check_new_run_dir(folder, overwrite)
    created = not folder.exists()
    with RunLock(folder):
        # The run being replaced moves aside until the new config has proved itself, so
        # that a config that fails leaves it as it was (and its files, such as
        # norm_stats.json, are never mistaken for the new run's).
        replaced = _move_aside(folder) if overwrite else None
        try:
            prepared = _prepare(config, folder)
        except BaseException:
            if replaced is not None:
                _clear(folder)
                _move_back(replaced, folder)
            elif created:  # a config that fails before training leaves nothing behind
                shutil.rmtree(folder, ignore_errors=True)
            raise
        if replaced is not None:
            shutil.rmtree(replaced)
        dump_config(config, folder / CONFIG_FILE, {"versions": package_versions()})
        # DDP re-runs this command in new processes: they take the same folder from here.
        os.environ[RUN_DIR_ENV] = str(folder.resolve())
        return _fit(config, folder, prepared, ckpt_path=None, report=report)


def resume(run_dir: str | Path, *, report: bool = True) -> Run:
    """Continue a killed or interrupted run from its last checkpoint (or from scratch
    when none was written), with its own config. A finished run is returned unchanged,
    with ``finished_before`` set."""
    run = Run.open(run_dir)
    folder = run.run_dir
    if is_follower_rank():
        return _fit(run.config, folder, _prepare(run.config, folder),
                    ckpt_path=_last_checkpoint(folder), report=report)  # fmt: skip
    if run.metrics and (folder / "model.safetensors").is_file():
        run.finished_before = True
        return run
    with RunLock(folder):
        prepared = _prepare(run.config, folder)
        checkpoint = _last_checkpoint(folder)
        if checkpoint is not None:
            trim_history(folder / "logs" / "metrics.csv", checkpoint)
            _warn_if_inexact(run.config)
        os.environ[RUN_DIR_ENV] = str(folder.resolve())
        return _fit(run.config, folder, prepared, ckpt_path=checkpoint, report=report)


RUN_DIR_ENV = "CONVLSTM_RUN_DIR"


def _warn_if_inexact(config: RunConfig) -> None:
    """Say when a resumed run can differ from an uninterrupted one (see the README)."""
    reasons = []
    if config.data.augment and config.data.augment.get("seed") is not None:
        reasons.append("data.augment has a seed of its own, whose draws restart")
    if config.data.num_workers > 0:
        reasons.append("data.num_workers > 0 reseeds the loader workers")
    if reasons:
        warnings.warn(
            "this resumed run may differ from an uninterrupted one: " + "; ".join(reasons),
            ConvLSTMWarning,
            stacklevel=3,
        )


def _last_checkpoint(folder: Path) -> Path | None:
    last = folder / "checkpoints" / "last.ckpt"
    return check_checkpoint(last, folder) if last.is_file() else None


def _clear(folder: Path) -> None:
    """Empty a run folder (all but its lock)."""
    for entry in folder.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _move_aside(folder: Path) -> Path:
    """Move a run folder's contents (all but its lock) into a hidden sibling folder."""
    aside = folder.with_name(f".{folder.name}.replaced-{os.getpid()}")
    aside.mkdir()
    for entry in folder.iterdir():
        if entry.name != LOCK_FILE:
            entry.rename(aside / entry.name)
    return aside


def _move_back(aside: Path, folder: Path) -> None:
    for entry in aside.iterdir():
        entry.rename(folder / entry.name)
    aside.rmdir()


@dataclass
class _Prepared:
    datamodule: Any
    task: Any


def _prepare(config: RunConfig, run_dir: Path) -> _Prepared:
    """Everything that can fail on a bad config, before any training: the data (all
    splits), the model and task, and their agreement."""
    import lightning.pytorch as pl

    from .datamodule import SequenceDataModule
    from .tasks import TASKS

    pl.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = SequenceDataModule(config.data, seed=config.seed, run_dir=run_dir)
    datamodule.setup()
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
    if config.task == "classification":
        _check_classes(config, task.num_classes, datamodule)
    return _Prepared(datamodule, task)


def _check_classes(config: RunConfig, num_classes: int, datamodule) -> None:
    """The model's outputs must match the data's classes (found before training, not
    when the report is written)."""
    names = class_names(datamodule.datasets["train"])
    expected = 2 if num_classes == 1 else num_classes
    if names is not None and len(names) != expected:
        outputs = "1 output (binary)" if num_classes == 1 else f"{num_classes} outputs"
        raise ConfigError(
            f"model.num_classes: the model has {outputs}, but data set {config.data.name!r} "
            f"has {len(names)} classes {names}; set model.num_classes to "
            f"{1 if len(names) == 2 else len(names)}"
        )


def model_spec(config: RunConfig, model: nn.Module, datamodule) -> ModelSpec:
    """``model.json`` for a model trained on ``datamodule``'s data."""
    x, y = datamodule.datasets["train"][0][:2]
    num_classes = int(getattr(model, "num_classes", 1))
    forecasting = config.task == "forecasting"
    transform = "denormalize" if forecasting else "sigmoid" if num_classes == 1 else "softmax"
    return ModelSpec(
        task=config.task, name=config.model.name, options=config.model.options,
        frames=int(x.shape[0]), channels=int(x.shape[1]), size=[int(s) for s in x.shape[2:]],
        # Every model here pools or convolves over space; per-pixel peepholes fix the size.
        any_size=config.model.options.get("spatial_size") is None,
        transform=transform, output_frames=int(y.shape[0]) if forecasting else None,
        classes=None if forecasting else class_names(datamodule.datasets["train"]),
        preprocessing=datamodule.preprocessing,
    )  # fmt: skip


def _fit(
    config: RunConfig, run_dir: Path, prepared: _Prepared, ckpt_path: Path | None, report: bool
) -> Run:
    from .run_folder import best_checkpoint
    from .trainer import build_trainer

    datamodule, task = prepared.datamodule, prepared.task
    trainer = build_trainer(config, run_dir)
    # The checkpoint passed check_checkpoint: it loads without unpickling code.
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    if trainer.global_rank != 0:
        return Run(run_dir, config)

    best = best_checkpoint(run_dir)
    if best is not None:
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        task.load_state_dict(state)
    save_model(task.model, run_dir, model_spec(config, task.model, datamodule))
    run = Run(run_dir, config)
    result = evaluate_run(run, split="test", model=task.model.eval(), datamodule=datamodule)
    run.metrics = result["metrics"]
    metrics_json = json.dumps(jsonable(run.metrics), indent=2)
    atomic_write_bytes(run_dir / "metrics.json", metrics_json.encode())
    if report:
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


__all__ = ["Run", "RunFolderError", "check_checkpoint", "load", "read_history", "resume", "train"]
