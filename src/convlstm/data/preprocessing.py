"""How a file's frames become a model's input: what a run stores and ``predict`` replays.

A data set describes, with ``preprocessing()``, the way from the frames of its files to
its samples. A training run adds its own steps (``data.normalize``) and stores the whole
description in the run folder's ``model.json``, so that predicting on a new file applies
exactly what training applied, without the training data::

    Preprocessing(
        reader={"kind": "video", "grayscale": True, "size": [64, 64], "frame_step": 1},
        uint8="unit",                                # 8-bit pixels -> [0, 1]
        steps=[{"op": "normalize", "mean": [0.2], "std": [0.1]}],
    )

``reader`` holds the options of the file reader the training data went through (video
decoding size and colour, a NetCDF variable's crop and coarsening); ``uint8`` says
whether 8-bit input is divided by 255 (image intensities) or kept; ``steps`` are float
operations on ``(..., T, C, H, W)`` tensors, applied in order, traceable for export:

- ``{"op": "multiply", "factor": f}``: ``x * f``;
- ``{"op": "normalize", "mean": [...], "std": [...]}``: per channel ``(x - mean) / std``
  (one value: every channel);
- ``{"op": "fill_nan", "value": v}``: NaN -> ``v``;
- ``{"op": "stack_time", "frames": k}``: ``k`` consecutive frames stacked as channels,
  ``(T * k, C, H, W) -> (T, k * C, H, W)`` (the fish-video study's time channels);
- ``{"op": "log_rain", "offset": a}``: rain rate to ``log(1 + max(x, 0) / a)``, so dry
  pixels are 0 (what zero padding adds) and the heavy tail of rain rates is compressed.

:meth:`Preprocessing.invert` undoes ``multiply``, ``normalize`` and ``log_rain`` (for
forecasts, which come out in the units the targets were trained in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

READER_KINDS = ("video", "xarray", "array")
UINT8_MODES = ("unit", "keep")
_STEP_KEYS = {
    "multiply": {"factor"},
    "normalize": {"mean", "std"},
    "fill_nan": {"value"},
    "stack_time": {"frames"},
    "log_rain": {"offset"},
}


def _check_step(step: Any, where: str) -> dict[str, Any]:
    if not isinstance(step, dict) or step.get("op") not in _STEP_KEYS:
        raise ValueError(
            f"{where}: expected a step {{'op': one of {sorted(_STEP_KEYS)}, ...}}, got {step!r}"
        )
    op = step["op"]
    keys = set(step) - {"op"}
    if keys != _STEP_KEYS[op]:
        raise ValueError(f"{where}: step {op!r} takes keys {sorted(_STEP_KEYS[op])}, got {step!r}")
    if op == "normalize":
        mean, std = step["mean"], step["std"]
        ok = (
            isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) >= 1
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in mean + std)
            and all(v > 0 for v in std)
        )  # fmt: skip
        if not ok:
            raise ValueError(
                f"{where}: normalize needs lists 'mean' and 'std' of equal length, finite, "
                f"std > 0; got {step!r}"
            )
    elif op == "stack_time":
        if not isinstance(step["frames"], int) or step["frames"] < 1:
            raise ValueError(f"{where}: stack_time needs an int 'frames' >= 1, got {step!r}")
    elif not isinstance(step[next(iter(keys))], (int, float)):
        raise ValueError(f"{where}: step {op!r} needs a number, got {step!r}")
    elif op == "log_rain" and not (math.isfinite(step["offset"]) and step["offset"] > 0):
        raise ValueError(f"{where}: log_rain needs a finite 'offset' > 0, got {step!r}")
    return dict(step)


@dataclass(frozen=True)
class Preprocessing:
    """The way from a file's frames to a model's input (see the module docstring)."""

    reader: dict[str, Any] = field(default_factory=dict)
    uint8: str = "unit"
    steps: tuple[dict[str, Any], ...] = ()
    declared: bool = True

    def __post_init__(self) -> None:
        if self.uint8 not in UINT8_MODES:
            raise ValueError(
                f"preprocessing uint8: expected one of {UINT8_MODES}, got {self.uint8!r}"
            )
        kind = self.reader.get("kind")
        if self.reader and kind not in READER_KINDS:
            raise ValueError(
                f"preprocessing reader: 'kind' must be one of {READER_KINDS}, got {kind!r}"
            )
        object.__setattr__(
            self, "steps", tuple(_check_step(s, f"preprocessing step {i}")
                                 for i, s in enumerate(self.steps))
        )  # fmt: skip

    def then(self, *steps: dict[str, Any]) -> Preprocessing:
        """This preprocessing followed by ``steps``."""
        return Preprocessing(self.reader, self.uint8, (*self.steps, *steps), self.declared)

    @property
    def frames_per_step(self) -> int:
        """File frames per model time step (``stack_time`` multiplies them)."""
        return math.prod(s["frames"] for s in self.steps if s["op"] == "stack_time")

    def to_float(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Frames as read from a file -> float32 tensor, 8-bit pixels to [0, 1] if ``unit``."""
        if isinstance(frames, np.ndarray):
            is_uint8 = frames.dtype == np.uint8
            tensor = torch.from_numpy(np.array(frames, dtype=np.float32))
        else:
            is_uint8 = frames.dtype == torch.uint8
            tensor = frames.float()
        return tensor / 255.0 if is_uint8 and self.uint8 == "unit" else tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the steps to float ``(..., T, C, H, W)`` frames."""
        for step in self.steps:
            op = step["op"]
            if op == "multiply":
                x = x * step["factor"]
            elif op == "normalize":
                x = (x - _per_channel(step["mean"], x)) / _per_channel(step["std"], x)
            elif op == "fill_nan":
                x = torch.where(torch.isnan(x), torch.full_like(x, step["value"]), x)
            elif op == "log_rain":
                x = torch.log1p(x.clamp_min(0) / step["offset"])
            else:  # stack_time
                k = step["frames"]
                *lead, t, c, h, w = x.shape
                if t % k:
                    raise ValueError(
                        f"stack_time: {t} frames cannot be cut into slices of {k} frames"
                    )
                x = x.reshape(*lead, t // k, k * c, h, w)
        return x

    def invert(self, y: torch.Tensor) -> torch.Tensor:
        """Undo ``multiply``, ``normalize`` and ``log_rain`` (in reverse order) on
        ``(..., C, H, W)``; ``log_rain`` gives no negative rain."""
        for step in reversed(self.steps):
            if step["op"] == "multiply":
                y = y / step["factor"]
            elif step["op"] == "normalize":
                y = y * _per_channel(step["std"], y) + _per_channel(step["mean"], y)
            elif step["op"] == "log_rain":
                y = step["offset"] * torch.expm1(y).clamp_min(0)
        return y

    def to_dict(self) -> dict[str, Any]:
        return {
            "reader": dict(self.reader), "uint8": self.uint8,
            "steps": [dict(s) for s in self.steps], "declared": self.declared,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any, where: str = "preprocessing") -> Preprocessing:
        if not isinstance(data, dict) or set(data) - {"reader", "uint8", "steps", "declared"}:
            raise ValueError(
                f"{where}: expected a mapping with keys reader, uint8, steps, declared; "
                f"got {data!r}"
            )
        steps = data.get("steps", [])
        if not isinstance(steps, list):
            raise ValueError(f"{where}.steps: expected a list, got {steps!r}")
        reader = data.get("reader", {})
        if not isinstance(reader, dict):
            raise ValueError(f"{where}.reader: expected a mapping, got {reader!r}")
        uint8, declared = data.get("uint8", "unit"), bool(data.get("declared", True))
        return cls(reader, uint8, tuple(steps), declared)


def _per_channel(values: list[float], like: torch.Tensor) -> torch.Tensor:
    if len(values) not in (1, like.shape[-3]):
        raise ValueError(
            f"normalisation has {len(values)} channels but the frames have {like.shape[-3]} "
            f"(shape {tuple(like.shape)})"
        )
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def dataset_preprocessing(dataset: Any) -> Preprocessing:
    """What ``dataset`` (through ``Subset`` and wrappers) declares with ``preprocessing()``;
    a data set that declares nothing gets the identity, marked ``declared=False``."""
    inner = dataset
    while not hasattr(type(inner), "preprocessing") and hasattr(inner, "dataset"):
        inner = inner.dataset
    method = getattr(type(inner), "preprocessing", None)
    if method is None:
        return Preprocessing(declared=False)
    result = method(inner)
    if not isinstance(result, Preprocessing):
        raise TypeError(
            f"{type(inner).__name__}.preprocessing() must return a Preprocessing, "
            f"got {type(result).__name__}"
        )
    return result
