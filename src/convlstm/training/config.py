"""Run configuration: one YAML file per run, validated on load, overridable from the CLI.

A config has these sections (every key optional except ``task``, ``model.name`` and
``data.name``)::

    task: classification            # or forecasting
    seed: 0
    model: {name: clip-classifier, ...}   # the rest goes to convlstm.models.create_model
    data:  {name: similar_motions, batch_size: 16, ...}   # see DataConfig
    loss:  {name: bce, ...}               # see convlstm.losses.create_loss
    optimizer: {name: adamw, lr: 0.001, weight_decay: 0.01}
    scheduler: {name: cosine}             # none, cosine, onecycle or plateau
    trainer: {max_epochs: 10, precision: 32-true, ...}
    early_stopping: {monitor: val_loss, mode: min, patience: 5}   # or null
    evaluation: {data_range: 1.0, thresholds: [0.5, 2, 5], report_samples: 4}
    output: {root: runs, name: null}

Unknown keys and values of the wrong type are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config key is unknown, missing or has a value of the wrong type."""


@dataclass
class DataConfig:
    """The ``data`` section.

    ``name`` picks a registered data set (``convlstm.data.list_datasets()``). The
    ``options`` go to every split's constructor; ``train``/``val``/``test`` add or
    override options per split (a data set taking a ``split`` argument gets it set to the
    split's name). A data set without a ``split`` argument is built once and divided by
    ``split_by`` (``clip``, ``time`` or ``random``; see ``convlstm.data.split_dataset``)
    with ``val_fraction`` and ``test_fraction``.
    """

    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    val: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    split_by: Literal["clip", "time", "random"] = "clip"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    batch_size: int = 16
    eval_batch_size: int | None = None
    num_workers: int = 0
    balanced_sampler: bool = False
    class_weights: bool = False
    augment: dict[str, Any] | None = None
    normalize: bool = False


@dataclass
class ModelConfig:
    """The ``model`` section: ``name`` and the options of ``convlstm.models.create_model``."""

    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """The ``loss`` section: ``name`` (default per task) and its options."""

    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    name: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9


@dataclass
class SchedulerConfig:
    """``cosine`` (to ``min_lr`` over the run), ``onecycle`` or ``plateau`` (on the monitor).

    ``over``: what ``cosine`` and ``onecycle`` run over: the run's ``steps`` (from
    ``trainer.max_steps`` or ``max_epochs``) or its training ``time``
    (``trainer.max_time``, counted on across a resume), for a run given a time budget
    rather than a number of steps: the learning rate then anneals by the deadline
    however fast the machine is, and a forecaster's scheduled-sampling schedule
    (``sampling_start``, ``sampling_steps``) is stretched over the budget too.
    """

    name: Literal["none", "cosine", "onecycle", "plateau"] = "none"
    min_lr: float = 0.0
    warmup_fraction: float = 0.3
    factor: float = 0.5
    patience: int = 2
    over: Literal["steps", "time"] = "steps"


@dataclass
class TrainerConfig:
    """Options of ``lightning.Trainer`` (same names and meanings)."""

    max_epochs: int = 10
    max_steps: int = -1
    max_time: str | None = None
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    #: Lightning's (``32-true``, ``bf16-mixed``, ...), or ``auto``: ``bf16-mixed`` where
    #: the device computes bfloat16 natively (a CUDA device, a CPU with AVX-512 BF16),
    #: else ``32-true`` (``trainer.resolve_precision``).
    precision: str = "32-true"
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0
    limit_test_batches: int | float = 1.0
    val_check_interval: int | float = 1.0
    log_every_n_steps: int = 10
    deterministic: bool = False
    enable_progress_bar: bool = True
    checkpoint_every_n_steps: int | None = None
    #: Also keep a checkpoint ``checkpoints/minute-<m>.ckpt`` when training time first
    #: reaches each of these minutes (a quality-per-minute curve from one run).
    snapshot_minutes: list[float] = field(default_factory=list)


@dataclass
class EarlyStoppingConfig:
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = 5
    min_delta: float = 0.0


@dataclass
class EvaluationConfig:
    """Forecast metrics' ``data_range`` (SSIM/PSNR) and nowcasting ``thresholds``
    (CSI/POD/FAR), and how many samples the report shows."""

    data_range: float = 1.0
    thresholds: list[float] = field(default_factory=list)
    report_samples: int = 4


@dataclass
class OutputConfig:
    root: str = "runs"
    name: str | None = None


@dataclass
class RunConfig:
    task: Literal["classification", "forecasting"]
    model: ModelConfig
    data: DataConfig
    seed: int = 0
    monitor: str | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    early_stopping: EarlyStoppingConfig | None = None
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def monitored(self) -> tuple[str, str]:
        """``(metric, mode)`` that picks the best checkpoint."""
        name = self.monitor or "val_loss"
        return name, ("min" if name.endswith(("loss", "mse", "mae")) else "max")

    def to_dict(self) -> dict[str, Any]:
        return _flatten_options(dataclasses.asdict(self))


# Sections whose free-form keys are gathered into ``options``.
_OPTION_SECTIONS = {"model": ModelConfig, "loss": LossConfig}
_DATA_FIELDS = {f.name for f in dataclasses.fields(DataConfig)}


def _flatten_options(raw: dict[str, Any]) -> dict[str, Any]:
    """Inverse of the ``options`` gathering: options back at the section's top level."""
    out = dict(raw)
    for section in ("model", "loss", "data"):
        if isinstance(out.get(section), dict):
            body = dict(out[section])
            options = body.pop("options", {}) or {}
            # An option named like a section key (the xarray data set's own ``normalize``
            # beside ``data.normalize``) stays under ``options`` so that it reads back.
            nested = {k: v for k, v in options.items() if k in body}
            body.update({k: v for k, v in options.items() if k not in body})
            if nested:
                body["options"] = nested
            out[section] = body
    return out


def _gather_options(section: str, body: dict[str, Any]) -> dict[str, Any]:
    """Move a section's free-form keys into ``options`` (model, loss and data sections)."""
    if section in _OPTION_SECTIONS:
        known = {f.name for f in dataclasses.fields(_OPTION_SECTIONS[section])}
    elif section == "data":
        known = _DATA_FIELDS
    else:
        return body
    gathered = {k: v for k, v in body.items() if k in known}
    options = dict(gathered.pop("options", {}) or {})
    options.update({k: v for k, v in body.items() if k not in known})
    gathered["options"] = options
    return gathered


def _check_type(value: Any, annotation: Any, key: str) -> Any:
    """Return ``value`` if it fits ``annotation`` (ints accepted as floats), else raise."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(annotation):
            try:
                return _check_type(value, option, key)
            except ConfigError as error:
                errors.append(error)
        raise (
            errors[-1]
            if len(errors) == 1
            else ConfigError(
                f"{key}: expected {_type_name(annotation)}, got {value!r} ({type(value).__name__})"
            )
        )
    if origin is Literal:
        if value in typing.get_args(annotation):
            return value
        raise ConfigError(
            f"{key}: expected one of {list(typing.get_args(annotation))}, got {value!r}"
        )
    if annotation is type(None):
        if value is None:
            return None
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation in (str, bool):
        if isinstance(value, annotation):
            return value
    elif origin is dict or annotation is dict:
        if isinstance(value, dict):
            return value
    elif origin is list:
        if isinstance(value, list):
            (item,) = typing.get_args(annotation)
            return [_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    elif dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key)
    raise ConfigError(
        f"{key}: expected {_type_name(annotation)}, got {value!r} ({type(value).__name__})"
    )


def _type_name(annotation: Any) -> str:
    if dataclasses.is_dataclass(annotation):
        return "a mapping"
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is Literal:
        return f"one of {list(typing.get_args(annotation))}"
    if typing.get_origin(annotation) is dict:
        return "a mapping"
    if typing.get_origin(annotation) is list:
        return f"a list of {_type_name(typing.get_args(annotation)[0])}"
    return getattr(annotation, "__name__", str(annotation))


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        scope = f" in {prefix}" if prefix else ""
        raise ConfigError(
            f"unknown config key {where}{unknown[0]}; valid keys{scope}: {sorted(fields)}"
        )
    values = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing required config key {key}")
            continue
        value = raw[name]
        if name in ("model", "loss", "data") and cls is RunConfig and isinstance(value, dict):
            value = _gather_options(name, value)
        values[name] = _check_type(value, hints[name], key)
    return cls(**values)


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """Validate a plain dict (as read from YAML) into a ``RunConfig``."""
    config = _build(RunConfig, raw, "")
    if not config.model.name:
        raise ConfigError("missing required config key model.name")
    if not config.data.name:
        raise ConfigError("missing required config key data.name")
    if config.scheduler.over == "time" and config.trainer.max_time is None:
        raise ConfigError(
            "scheduler.over: time needs trainer.max_time (the budget the schedule runs over)"
        )
    if any(not m > 0 for m in config.trainer.snapshot_minutes):
        raise ConfigError(
            f"trainer.snapshot_minutes: expected minutes > 0, got {config.trainer.snapshot_minutes}"
        )
    epochs = config.trainer.max_epochs
    if epochs == 0 or epochs < -1:
        raise ConfigError(
            f"trainer.max_epochs: expected a number of epochs >= 1 (or -1 with "
            f"trainer.max_steps), got {epochs}"
        )
    return config


def parse_override(item: str, value: str) -> tuple[list[str], Any]:
    """``("--model.hidden_channels", "64")`` -> ``(["model", "hidden_channels"], 64)``.

    Values are parsed as YAML, so ``64`` is an int, ``[8, 16]`` a list, ``null`` None.
    """
    key = item[2:] if item.startswith("--") else item
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"bad override key {item!r}; expected --section.key VALUE")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ConfigError(
            f"--{key}: cannot read {value!r} as a value ({problem}); write numbers, true/false, "
            "null, lists like [8, 16] or quoted text"
        ) from None
    return key.split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[tuple[list[str], Any]]) -> dict[str, Any]:
    """Set nested keys of ``raw`` (a copy is returned)."""
    result = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for path, value in overrides:
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"cannot set {'.'.join(path)}: {part} is not a mapping")
            node = child
        node[path[-1]] = value
    return result


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, recursively for nested mappings (copies)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def bundled_configs() -> list[str]:
    """Names of the configs that ship with convlstm (``convlstm train NAME``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config(name: str | Path) -> Path:
    """A config path, or the name of a bundled config (``"moving_digits"``)."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = CONFIG_DIR / f"{str(name).removesuffix('.yaml')}.yaml"
    if bundled.is_file():
        return bundled
    raise FileNotFoundError(
        f"config {str(name)!r} not found: not a file, nor one of {bundled_configs()}"
    )


def load_config(
    path: str | Path, overrides: list[tuple[list[str], Any]] | None = None
) -> RunConfig:
    """Read, override and validate a YAML run config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return config_from_dict(apply_overrides(raw, overrides or []))


def dump_config(config: RunConfig, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write the resolved config (and ``extra`` keys such as package versions) as YAML."""
    body = config.to_dict()
    if extra:
        body = {**body, **extra}
    Path(path).write_text(yaml.safe_dump(body, sort_keys=False))


def config_yaml(config: RunConfig) -> str:
    """The resolved config as the YAML a run folder stores (``train --print-config``)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def config_reference() -> str:
    """The config's sections and keys with their defaults, for ``convlstm train --help``."""
    lines = ["config sections and keys (defaults):",
             "  task: classification | forecasting (required)", "  seed: 0", "  monitor: val_loss"]
    sections = {
        "model": "name (required; convlstm list-models) and the model's own options",
        "data": None, "loss": "name (default per task) and the loss's options",
        "optimizer": None, "scheduler": None, "trainer": None, "early_stopping": None,
        "evaluation": None, "output": None,
    }  # fmt: skip
    classes = {"data": DataConfig, "optimizer": OptimizerConfig, "scheduler": SchedulerConfig,
               "trainer": TrainerConfig, "early_stopping": EarlyStoppingConfig,
               "evaluation": EvaluationConfig, "output": OutputConfig}  # fmt: skip
    for section, text in sections.items():
        if text is not None:
            lines.append(f"  {section}: {text}")
            continue
        fields = []
        for f in dataclasses.fields(classes[section]):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            fields.append(f"{f.name}={default!r}" if default not in ("", {}) else f.name)
        suffix = " (or null)" if section == "early_stopping" else ""
        lines.append(f"  {section}{suffix}: " + ", ".join(fields))
    lines.append("  data: also the data set's own options (convlstm.data.create_dataset)")
    return "\n".join(textwrap.fill(line, 92, subsequent_indent="      ") for line in lines)
