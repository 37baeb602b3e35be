"""How a layer takes a cell's fast path, and falls back from it for one call."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import torch

from ..settings import backend

if TYPE_CHECKING:
    from ..recurrent import ConvRNNCellBase, State, StepPlan


def fell_back(name: str, error: Exception) -> None:
    """Warn that the fast path ``name`` failed with ``error`` and that this call ran the
    reference instead (the next call tries the fast path again)."""
    warnings.warn(
        f"convlstm: the fast path {name} failed ({type(error).__name__}: {error}); this "
        "call ran the reference step instead. convlstm.set_fusion('never') runs the "
        "reference always.",
        RuntimeWarning,
        stacklevel=3,
    )


def run_fast_path(
    cell: ConvRNNCellBase,
    x: torch.Tensor,
    state: State | None,
    plan: StepPlan,
    reverse: bool,
    checkpoint: bool = False,
) -> tuple[torch.Tensor, State] | None:
    """``(output, new_state)`` of ``cell`` over ``x`` ``(B, T, C_in, *spatial)`` by the
    fast path it declares (``cell.fast_path(plan)``), or ``None``, for the layer to step
    the cell: when it declares none, when the backend does not allow one for this size
    (``backend.allows_fast``), or when the fast path fails (with a warning naming it)."""
    path = cell.fast_path(plan)
    if path is None or x.shape[1] == 0:
        return None
    state_elements = x.shape[0] * cell.hidden_channels * math.prod(plan.output_size)
    if not backend.allows_fast(state_elements, x.device):
        return None
    try:
        return path(x, state, reverse, checkpoint)
    except Exception as error:
        fell_back(path.name, error)
        return None
