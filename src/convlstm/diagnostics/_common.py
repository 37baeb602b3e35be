"""Shared plumbing of the diagnostics: batches, ConvLSTM cells, step recording, losses.

``StepRecorder`` sees every step a ConvLSTM cell takes through the cell's step hooks
(``ConvLSTMCellNd.register_step_hook``), which every path of the layer honours: while
a hook is registered the layer runs that cell step by step, so each step's state is
a tensor of its own, also in the autograd graph (``gradient_flow`` and the empirical
receptive field differentiate with respect to it). Leaving the ``with`` block removes
the hooks, and the model takes its fast path again.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int
from ..nn.cell import ConvLSTMCellNd, StepRecord
from ..nn.layer import ConvLSTMNd


def check_max_batches(max_batches: int | None) -> int | None:
    """``None`` (every batch) or a positive int, else a ValueError naming the argument."""
    return None if max_batches is None else check_int("max_batches", max_batches)


def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(clip, target)`` from a loader batch: a ``(x, y, ...)`` tuple/list or a bare ``x``."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        target = batch[1] if len(batch) > 1 and isinstance(batch[1], torch.Tensor) else None
        return batch[0], target
    raise TypeError(
        "loader batches must be a tensor x or a tuple (x, y, ...) of tensors, "
        f"got {type(batch).__name__}"
    )


def first_batch(sample: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(x, y)`` of ``sample``: a clip batch, a ``(x, y)`` batch, or a loader (its first
    batch)."""
    if isinstance(sample, torch.Tensor) or (
        isinstance(sample, (tuple, list)) and sample and isinstance(sample[0], torch.Tensor)
    ):
        return split_batch(sample)
    for batch in sample:
        return split_batch(batch)
    raise ValueError("the loader yielded no batches: nothing to diagnose")


def iter_batches(
    loader: Any, max_batches: int | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Up to ``max_batches`` ``(x, y)`` pairs of ``loader`` (any iterable of batches)."""
    max_batches = check_max_batches(max_batches)
    count = 0
    for index, batch in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        x, y = split_batch(batch)
        if not x.is_floating_point():
            raise TypeError(f"clips must be floating point, got dtype {x.dtype}")
        count += 1
        yield x.float(), y
    if count == 0:
        raise ValueError("the loader yielded no batches: nothing to diagnose")


def class_names_of(loader: Any) -> list[str] | None:
    """``classes`` names of a loader's data set, looking through wrappers and subsets."""
    dataset = getattr(loader, "dataset", None)
    while dataset is not None:
        names = getattr(dataset, "classes", None)
        if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
            return list(names)
        dataset = getattr(dataset, "dataset", None)
    return None


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its train/eval flags after."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags.items():
            module.training = flag


@dataclass(frozen=True)
class CellInfo:
    """One ConvLSTM cell of a model: ``name`` is its qualified module name."""

    name: str
    cell: ConvLSTMCellNd
    layer_name: str
    layer: ConvLSTMNd | None
    direction: int


def find_cells(model: nn.Module) -> list[CellInfo]:
    """Every ConvLSTM cell of ``model`` in module order (stacked layers and directions)."""
    owners: dict[int, tuple[str, ConvLSTMNd, int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, ConvLSTMNd):
            for index, cell in enumerate(module.cells):
                owners[id(cell)] = (name, module, index % module.num_directions)
    cells = []
    for name, module in model.named_modules():
        if isinstance(module, ConvLSTMCellNd):
            layer_name, layer, direction = owners.get(id(module), ("", None, 0))
            cells.append(CellInfo(name or "cell", module, layer_name, layer, direction))
    return cells


@dataclass
class StepCall:
    """One recorded step: ``args`` holds ``ConvLSTMCellNd.step``'s arguments (``x``,
    ``state``, ``plan``, ``weight``, ``recurrent_mask``) and ``state`` the state it
    returned."""

    args: dict[str, Any]
    state: tuple[torch.Tensor, ...]


@dataclass
class StepRecorder:
    """Record every ConvLSTM cell step of ``model`` while active (a context manager).

    ``steps(name)`` gives a cell's calls in time order (a cell run backwards in time
    records them last-step-first; they are reversed). ``clear()`` forgets the calls of
    the previous batch.
    """

    model: nn.Module
    cells: list[CellInfo] = field(init=False)
    calls: dict[str, list[StepCall]] = field(init=False, default_factory=dict)
    _backwards: dict[str, bool] = field(init=False, default_factory=dict)
    _handles: list[Any] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.cells = find_cells(self.model)

    def __enter__(self) -> StepRecorder:
        for info in self.cells:
            self.calls[info.name] = []
            self._handles.append(info.cell.register_step_hook(self._hook(info.name)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, name: str) -> Callable[[ConvLSTMCellNd, StepRecord], None]:
        def record(cell: ConvLSTMCellNd, step: StepRecord) -> None:
            args = {
                "x": step.x,
                "state": step.state,
                "plan": step.plan,
                "weight": step.weight,
                "recurrent_mask": step.recurrent_mask,
            }
            self.calls[name].append(StepCall(args, tuple(step.new_state)))
            self._backwards[name] = step.reverse

        return record

    def steps(self, name: str) -> list[StepCall]:
        calls = self.calls[name]
        return calls[::-1] if self._backwards.get(name, False) else list(calls)

    def hidden_sequence(self, name: str) -> torch.Tensor:
        """The hidden states of cell ``name`` stacked in time order: ``(B, T, F, *S)``."""
        steps = self.steps(name)
        if not steps:
            raise ValueError(f"cell {name!r} took no step in the last forward pass")
        return torch.stack([s.state[0] for s in steps], dim=1)

    def clear(self) -> None:
        for calls in self.calls.values():
            calls.clear()
        self._backwards.clear()


def default_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The usual loss for ``output``: MSE when ``target`` has its shape and is floating
    point (forecasting), BCE for one logit per sample, else cross-entropy."""
    if target.is_floating_point() and target.shape == output.shape:
        return F.mse_loss(output, target)
    if output.dim() == 1 or (output.dim() == 2 and output.shape[1] == 1):
        return F.binary_cross_entropy_with_logits(output.reshape(-1), target.reshape(-1).float())
    if output.dim() == 2:
        return F.cross_entropy(output, target.reshape(-1).long())
    raise ValueError(
        f"no default loss for output {tuple(output.shape)} and target {tuple(target.shape)}: "
        "pass loss_fn(output, target)"
    )


def model_output(out: Any) -> torch.Tensor:
    """The prediction tensor of a model call (the first element of a tuple/list)."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"model output must be a tensor (or a tuple starting with one), got "
                        f"{type(out).__name__}")  # fmt: skip
    return out


def finite(value: float) -> float | None:
    """``value`` as a float, ``None`` when NaN or infinite (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: arrays and tensors to lists, floats to 6 significant digits,
    NaN/inf to ``None``; dict keys
    starting with ``_`` (plotting aids such as the sample clips) are dropped."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = finite(value)
        return None if value is None else float(f"{value:.6g}")
    return value if isinstance(value, str) or value is None else str(value)
