"""The run folder as a self-contained artefact: its model files, lock and safety checks.

``model.json`` describes everything needed to use ``model.safetensors`` without the
training config's data::

    {"format_version": 2, "task": "classification", "name": "clip-classifier",
     "options": {...},                                  # convlstm.models.create_model
     "input": {"frames": 16, "channels": 1, "size": [48, 48], "any_size": true},
     "output": {"transform": "sigmoid", "frames": null, "classes": ["gentle", "jerky"]},
     "preprocessing": {...}}                            # convlstm.data.Preprocessing

``output.transform`` is ``sigmoid`` (one logit: probability of class 1), ``softmax``
(several classes) or ``denormalize`` (forecast frames back in the data's units).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from torch import nn

from ..data.preprocessing import Preprocessing
from .callbacks import atomic_write_bytes

MODEL_FILE = "model.safetensors"
MODEL_CONFIG_FILE = "model.json"
CONFIG_FILE = "config.yaml"
LOCK_FILE = ".lock"
FORMAT_VERSION = 2
TRANSFORMS = ("sigmoid", "softmax", "denormalize")


@dataclass
class ModelSpec:
    """The contents of ``model.json`` (see the module docstring)."""

    task: str
    name: str
    options: dict[str, Any]
    frames: int
    channels: int
    size: list[int]
    any_size: bool
    transform: str
    output_frames: int | None = None
    classes: list[str] | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(T, C, *size)`` of one clip as the model takes it."""
        return (self.frames, self.channels, *self.size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION, "task": self.task, "name": self.name,
            "options": self.options,
            "input": {"frames": self.frames, "channels": self.channels, "size": self.size,
                      "any_size": self.any_size},
            "output": {"transform": self.transform, "frames": self.output_frames,
                       "classes": self.classes},
            "preprocessing": self.preprocessing.to_dict(),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ModelSpec:
        """Validate ``data`` (read from ``where``) into a spec; every error names the key."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{where}: format_version {version!r}, this convlstm reads {FORMAT_VERSION} "
                "(a run written by an older convlstm lacks the input description: train it again)"
            )

        def get(path: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
            node: Any = data
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is None and optional:
                return None
            if not isinstance(node, kind) or (isinstance(node, bool) and kind is int):
                kinds = kind if isinstance(kind, tuple) else (kind,)
                names = "/".join(k.__name__ for k in kinds)
                raise ValueError(f"{where}: key {path} must be {names}, got {node!r}")
            return node

        task = get("task", str)
        if task not in ("classification", "forecasting"):
            raise ValueError(
                f"{where}: key task must be classification or forecasting, got {task!r}"
            )
        transform = get("output.transform", str)
        if transform not in TRANSFORMS:
            raise ValueError(f"{where}: key output.transform must be one of {TRANSFORMS}, "
                             f"got {transform!r}")  # fmt: skip
        size = get("input.size", list)
        frames, channels = get("input.frames", int), get("input.channels", int)
        if frames < 1 or channels < 1 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(
                f"{where}: input frames, channels and size must be positive ints, got "
                f"{data['input']!r}"
            )
        classes = get("output.classes", list, optional=True)
        return cls(
            task=task, name=get("name", str), options=get("options", dict),
            frames=frames, channels=channels, size=size,
            any_size=bool(get("input.any_size", bool)), transform=transform,
            output_frames=get("output.frames", int, optional=True),
            classes=None if classes is None else [str(c) for c in classes],
            preprocessing=Preprocessing.from_dict(
                data.get("preprocessing", {}), f"{where}: preprocessing"
            ),
        )  # fmt: skip


def read_spec(run_dir: str | Path) -> ModelSpec:
    """The validated ``model.json`` of a run folder."""
    path = Path(run_dir) / MODEL_CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a finished run folder")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}): the run folder is damaged") from None
    return ModelSpec.from_dict(data, str(path))


def save_model(model: nn.Module, run_dir: Path, spec: ModelSpec) -> None:
    """Write ``model.safetensors`` and ``model.json`` atomically."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(run_dir / MODEL_FILE, save(state))
    atomic_write_bytes(run_dir / MODEL_CONFIG_FILE, json.dumps(spec.to_dict(), indent=2).encode())


def _safetensors_header(path: Path) -> dict[str, tuple[str, list[int]]]:
    """``{name: (dtype, shape)}`` from a safetensors file's header, without reading data."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 2 <= length <= size - 8:
            raise ValueError(f"{path} is not a safetensors file (truncated or damaged header)")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError(f"{path} is not a safetensors file (its header is not JSON)") from None
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        if not 0 <= start <= end <= size - 8 - length:
            raise ValueError(f"{path} is truncated: tensor {name!r} lies past the end of the file")
        out[name] = (info["dtype"], list(info["shape"]))
    return out


def load_model(run_dir: str | Path, spec: ModelSpec | None = None) -> nn.Module:
    """The trained model of a run folder, in eval mode, from safetensors and JSON (no pickle).

    The model is built on the meta device and checked against the safetensors header
    (names and shapes) before any memory is allocated, then loaded with ``assign``.
    """
    from safetensors.torch import load_file

    from ..models import create_model

    run_dir = Path(run_dir)
    spec = spec or read_spec(run_dir)
    weights = run_dir / MODEL_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: {run_dir} is not a finished run folder")
    stored = _safetensors_header(weights)
    meta_json = run_dir / MODEL_CONFIG_FILE
    try:
        with torch.device("meta"):
            model = create_model(spec.name, **spec.options)
    except (TypeError, ValueError, KeyError, RuntimeError) as error:
        raise ValueError(
            f"{meta_json} does not describe the weights in {weights}: model {spec.name!r} "
            f"cannot be built with its options ({error})"
        ) from None
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    wrong = [k for k in expected if k in stored and stored[k][1] != expected[k]]
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
            if unexpected else
            f"{wrong[0]} is {stored[wrong[0]][1]} in the weights, {expected[wrong[0]]} in the model"
        )  # fmt: skip
        raise ValueError(f"{meta_json} does not describe the weights in {weights}: {detail}")
    try:
        state = load_file(weights)
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"cannot read {weights}: {error}") from None
    model.load_state_dict(state, assign=True)
    return model.eval()


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


class RunLock:
    """An exclusive lock on a run folder (``.lock`` holding the writer's PID), so that two
    processes never write one run. Released when the process ends, however it ends."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._handle = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            import fcntl
        except ModuleNotFoundError:  # Windows: no advisory locks; the PID file still tells
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                owner = handle.read().strip() or "unknown"
                handle.close()
                raise RunFolderError(
                    f"{self.path.parent} is being written by another process (PID {owner}); "
                    "wait for it to finish or stop it"
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class RunFolderError(ValueError):
    """A run folder cannot be used as asked (exists, is locked, escapes the root)."""


def is_follower_rank() -> bool:
    """True in the extra processes a multi-process (DDP) run starts: they share rank 0's
    run folder and must not create, check or lock it again."""
    return any(int(os.environ.get(name, "0") or 0) > 0
               for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))  # fmt: skip


def check_new_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse to train into a folder that already holds a run, unless ``overwrite``."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise RunFolderError(f"run folder {run_dir} exists and is not a folder")
    if any(p.name != LOCK_FILE for p in run_dir.iterdir()) and not overwrite:
        raise RunFolderError(
            f"run folder {run_dir} already exists: continue it with "
            f"`convlstm train --resume {run_dir}`, or replace it with --overwrite"
        )


def best_checkpoint(run_dir: Path) -> Path | None:
    """The run's own ``checkpoints/best.ckpt`` (never a path recorded in a checkpoint,
    which in a copied folder would point at the original's files)."""
    path = run_dir / "checkpoints" / "best.ckpt"
    return check_checkpoint(path, run_dir) if path.is_file() else None


def inside(root: Path, name: str) -> Path:
    """``root / name``, refusing names that leave ``root`` (``..``, absolute paths)."""
    path = Path(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise RunFolderError(
            f"output.name {name!r} must be a plain folder name inside output.root {root}"
        )
    return root / path


# --- Lightning pieces that keep a run folder's history and paths its own ---------------


class _KeptHistoryWriter(ExperimentWriter):
    """Lightning's CSV writer deletes ``metrics.csv`` when its folder is not empty; a
    resumed run appends to it instead (continuing its columns)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                header = next(csv.reader(handle), [])
            self.metrics_keys = sorted(header)


class HistoryCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume (see ``trim_history``)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeptHistoryWriter(log_dir=self.log_dir)
        return self._experiment


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


def trim_history(csv_path: Path, checkpoint: Path) -> None:
    """Drop the CSV rows logged after ``checkpoint`` was written (a resumed run logs those
    epochs and steps again), keeping every row from before it."""
    if not csv_path.is_file():
        return
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    epoch, step = int(state.get("epoch", 0)), int(state.get("global_step", 0))
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames or [], list(reader)

    def kept(row: dict[str, str]) -> bool:
        row_epoch = int(float(row["epoch"])) if row.get("epoch") else epoch
        row_step = int(float(row["step"])) if row.get("step") else step
        return row_epoch < epoch or (row_epoch == epoch and row_step <= step)

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(row for row in rows if kept(row))
    atomic_write_bytes(csv_path, buffer.getvalue().encode())


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose saved paths are relative to the run folder, so that a
    copied run folder resumes with its own best score and files, never the original's,
    and whose ``last.ckpt`` is written every ``every_n_train_steps`` from the first step."""

    _PATHS = ("best_model_path", "kth_best_model_path", "last_model_path")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # Lightning holds a step-triggered save back until the monitored score exists,
        # that is until the first validation: a run killed in its first epoch (hours on
        # a large data set) had nothing to resume from. last.ckpt is what resuming needs,
        # so it is written on time; best.ckpt waits for a score.
        every = self._every_n_train_steps
        if not (self.save_last and every >= 1 and trainer.global_step % every == 0):
            return
        candidates = self._monitor_candidates(trainer)
        if self.monitor not in candidates and not self._should_skip_saving_checkpoint(trainer):
            saved = self._last_global_step_saved
            self._save_last_checkpoint(trainer, candidates)
            # a validation at this same step must still be free to save best.ckpt
            self._last_global_step_saved = saved

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        base = Path(self.dirpath)
        for key in self._PATHS:
            if state.get(key):
                state[key] = _relative(state[key], base)
        state["best_k_models"] = {
            _relative(k, base): v for k, v in state.get("best_k_models", {}).items()
        }
        state["dirpath"] = "."
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state, base = dict(state_dict), Path(self.dirpath)
        if state.get("dirpath") == ".":
            state["dirpath"] = self.dirpath
            for key in self._PATHS:
                if state.get(key):
                    state[key] = str(base / state[key])
            state["best_k_models"] = {
                str(base / k): v for k, v in state.get("best_k_models", {}).items()
            }
        super().load_state_dict(state)


def _relative(path: str, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:  # outside the folder: keep only the name, inside this folder
        return Path(path).name
