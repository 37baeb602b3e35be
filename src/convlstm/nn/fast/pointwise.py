"""One step's LSTM gate arithmetic as one generated loop per direction, where it pays.

Written as separate tensor ops, the arithmetic of ``functional.lstm_pointwise`` reads
and writes the ``4F``-channel gate tensor about a dozen times per step, which costs as
much as the convolution itself. Here it runs as ``FusedGates`` with hand-written
derivatives for the usual cell (tanh; sigmoid, Keras 3's or Keras 2's hard-sigmoid
gates; with or without peepholes; no norms), otherwise as ``torch.compile`` of the
reference with autograd's derivatives.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import functional
from ..settings import backend
from .fallback import fell_back
from .gates import _compiled, fused_gates, gate_kind


def lstm_pointwise(
    gates: torch.Tensor,
    c_prev: torch.Tensor,
    *,
    peephole: torch.Tensor | None = None,
    gate_norm: tuple[torch.Tensor, torch.Tensor] | None = None,
    cell_norm: tuple[torch.Tensor, torch.Tensor] | None = None,
    activation: Callable[[torch.Tensor], torch.Tensor] = torch.tanh,
    recurrent_activation: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``functional.lstm_pointwise`` (same arguments and results) as a fused loop where
    ``backend.allows_fast`` says so, else in plain ops. A failure of the fused loop falls
    back to plain ops for this call, with a warning."""
    options = {
        "peephole": peephole,
        "gate_norm": gate_norm,
        "cell_norm": cell_norm,
        "activation": activation,
        "recurrent_activation": recurrent_activation,
    }
    normalized = gate_norm is not None or cell_norm is not None
    if not backend.allows_fast(c_prev.numel(), c_prev.device, normalized):
        return functional.lstm_pointwise(gates, c_prev, **options)
    kind = gate_kind(activation, recurrent_activation)
    name = "FusedGates" if kind is not None and not normalized else "compiled lstm_pointwise"
    try:
        if name == "FusedGates":  # the hand-written kernel has no norms
            return fused_gates(gates, c_prev, kind, peephole)
        # dynamic=True (_torch.compile_kernel): one kernel for every batch and frame size
        return _compiled("lstm_pointwise", functional.lstm_pointwise)(gates, c_prev, **options)
    except Exception as error:
        fell_back(name, error)
        return functional.lstm_pointwise(gates, c_prev, **options)
