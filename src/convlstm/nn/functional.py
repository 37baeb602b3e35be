"""The LSTM gate arithmetic of one ConvLSTM step: the reference, in plain tensor ops.

The gate pre-activations arrive as one tensor of ``4F`` channels in the order
``i, f, g, o`` (input, forget, candidate, output; Keras's order). With ``C`` the
cell state, ``σ`` the recurrent activation and ``φ`` the activation
(Shi et al. 2015, eq. 3, with optional peepholes ``w_c*``)::

    i   = σ(z_i + w_ci ∘ C_{t-1})
    f   = σ(z_f + w_cf ∘ C_{t-1})
    C_t = f ∘ C_{t-1} + i ∘ φ(z_g)
    o   = σ(z_o + w_co ∘ C_t)
    H_t = o ∘ φ(C_t)

The fast forms of the same arithmetic (``convlstm.nn.fast``) are tested against these.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# Kept importable from here, where they lived before ``convlstm.nn.settings``.
from .settings import get_fusion, set_fusion

__all__ = ["get_fusion", "lstm_gate_values", "lstm_pointwise", "set_fusion"]


def lstm_gate_values(
    gates: torch.Tensor,
    c_prev: torch.Tensor,
    peephole: torch.Tensor | None,
    gate_norm: tuple[torch.Tensor, torch.Tensor] | None,
    cell_norm: tuple[torch.Tensor, torch.Tensor] | None,
    activation: Callable[[torch.Tensor], torch.Tensor],
    recurrent_activation: Callable[[torch.Tensor], torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Every intermediate of one step (see ``lstm_pointwise`` for the arguments):
    ``{"i", "f", "g", "o", "c", "h"}``, each ``(B, F, *spatial)``, computed in float32
    for float16/bfloat16 gates. The diagnostics read the gates from here."""
    if gates.dtype in (torch.float16, torch.bfloat16):
        # Reduced-precision convolutions, full-precision gate arithmetic and cell state.
        gates = gates.float()
    if gate_norm is not None:
        gates = F.group_norm(gates, 4, gate_norm[0], gate_norm[1], eps=1e-5)
    c_prev = c_prev.to(gates.dtype)
    z_i, z_f, z_g, z_o = gates.chunk(4, dim=1)
    if peephole is not None:
        w_ci, w_cf, w_co = peephole.unbind(0)
        z_i = z_i + w_ci * c_prev
        z_f = z_f + w_cf * c_prev
    i = recurrent_activation(z_i)
    f = recurrent_activation(z_f)
    g = activation(z_g)
    c = f * c_prev + i * g
    if peephole is not None:
        z_o = z_o + w_co * c
    o = recurrent_activation(z_o)
    c_out = c if cell_norm is None else F.group_norm(c, 1, cell_norm[0], cell_norm[1], eps=1e-5)
    return {"i": i, "f": f, "g": g, "o": o, "c": c, "h": o * activation(c_out)}


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
    """One step of LSTM gate arithmetic, in plain tensor ops (the reference of
    ``convlstm.nn.fast.lstm_pointwise``).

    Args:
        gates: ``(B, 4F, *spatial)`` pre-activations in gate order ``i, f, g, o``.
        c_prev: ``(B, F, *spatial)`` previous cell state.
        peephole: ``(3, F, 1, ...)`` per-channel or ``(3, F, *spatial)`` per-pixel
            weights ``w_ci, w_cf, w_co``, or ``None``.
        gate_norm: ``(weight, bias)`` of shape ``(4F,)`` for a layer norm of each gate's
            pre-activation over its channels and positions, or ``None``.
        cell_norm: ``(weight, bias)`` of shape ``(F,)`` for a layer norm of the cell state
            before the output activation, or ``None``.
        activation: ``φ``, applied to the candidate and the cell state.
        recurrent_activation: ``σ``, applied to the three gates.

    Returns:
        ``(h, c)``: the new hidden state in the dtype of ``gates`` and the new cell
        state (float32 when ``gates`` is float16/bfloat16), both ``(B, F, *spatial)``.
    """
    values = lstm_gate_values(
        gates, c_prev, peephole, gate_norm, cell_norm, activation, recurrent_activation
    )
    return values["h"].to(gates.dtype), values["c"]
