"""The LSTM gate arithmetic of one ConvLSTM step, and its fused (compiled) form.

The gate pre-activations arrive as one tensor of ``4F`` channels in the order
``i, f, g, o`` (input, forget, candidate, output; Keras's order). With ``C`` the
cell state, ``σ`` the recurrent activation and ``φ`` the activation
(Shi et al. 2015, eq. 3, with optional peepholes ``w_c*``)::

    i   = σ(z_i + w_ci ∘ C_{t-1})
    f   = σ(z_f + w_cf ∘ C_{t-1})
    C_t = f ∘ C_{t-1} + i ∘ φ(z_g)
    o   = σ(z_o + w_co ∘ C_t)
    H_t = o ∘ φ(C_t)

On a CPU or GPU this arithmetic is memory-bound: written as separate tensor ops it
reads and writes the ``4F``-channel gate tensor about a dozen times per step, which
costs as much as the convolution itself. ``lstm_pointwise`` therefore runs, where it
pays, as one generated loop for the forward and one for the backward: for the usual
cell (tanh; sigmoid, Keras 3's or Keras 2's hard-sigmoid gates; no peepholes or norms)
``FusedGates`` with hand-written derivatives (``fused_gates.py``), otherwise
``torch.compile`` of the equations below with autograd's derivatives. ``set_fusion``
chooses the policy; the eager path is the reference.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .activations import hard_sigmoid, hard_sigmoid_keras2
from .fused_gates import GateKind, fused_gates

_FUSION_MODES = ("auto", "always", "never")
_fusion_mode = os.environ.get("CONVLSTM_FUSION", "auto").lower()
if _fusion_mode not in _FUSION_MODES:
    raise ValueError(f"CONVLSTM_FUSION must be one of {_FUSION_MODES}, got {_fusion_mode!r}")
_fusion_failed = False
_compiled: Callable | None = None

# The recurrent activations the hand-written kernels know, and their gate kinds.
_GATE_KINDS = {
    torch.sigmoid: GateKind.SIGMOID,
    F.hardsigmoid: GateKind.HARD_SIGMOID,
    hard_sigmoid: GateKind.HARD_SIGMOID,
    hard_sigmoid_keras2: GateKind.HARD_SIGMOID_KERAS2,
}

#: In "auto" mode, the fused kernel is used when one step's cell state holds at least
#: this many elements; below it, compilation time outweighs the saving.
AUTO_FUSION_MIN_ELEMENTS = 1 << 16


def set_fusion(mode: str) -> None:
    """Choose when the gate arithmetic runs as a fused, compiled kernel.

    Args:
        mode: ``"auto"`` (default: fuse for steps of at least
            ``AUTO_FUSION_MIN_ELEMENTS`` cell elements, without layer norm, when
            ``torch.compile`` works here),
            ``"always"`` or ``"never"`` (plain eager ops, also for the step
            convolution: needed for higher-order gradients, since the fused kernels
            have first-order derivatives only). The environment variable
            ``CONVLSTM_FUSION`` sets the initial mode.
    """
    global _fusion_mode, _fusion_failed
    if mode not in _FUSION_MODES:
        raise ValueError(f"fusion mode must be one of {_FUSION_MODES}, got {mode!r}")
    _fusion_mode = mode
    _fusion_failed = False


def get_fusion() -> str:
    """The current fusion mode (see ``set_fusion``)."""
    return _fusion_mode


def _in_tracing_context() -> bool:
    compiler = getattr(torch, "compiler", None)
    if compiler is not None:
        if compiler.is_compiling():
            return True
        is_exporting = getattr(compiler, "is_exporting", None)
        if is_exporting is not None and is_exporting():
            return True
    return torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


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


def _pointwise(
    gates: torch.Tensor,
    c_prev: torch.Tensor,
    peephole: torch.Tensor | None,
    gate_norm: tuple[torch.Tensor, torch.Tensor] | None,
    cell_norm: tuple[torch.Tensor, torch.Tensor] | None,
    activation: Callable[[torch.Tensor], torch.Tensor],
    recurrent_activation: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    values = lstm_gate_values(
        gates, c_prev, peephole, gate_norm, cell_norm, activation, recurrent_activation
    )
    return values["h"].to(gates.dtype), values["c"]


def use_fused(numel: int, device: torch.device, normalized: bool = False) -> bool:
    """Whether the gate arithmetic of a step whose cell state has ``numel`` elements on
    ``device`` runs fused (see ``set_fusion``); ``normalized``: the cell has layer norm."""
    if _fusion_mode == "never" or _fusion_failed or _in_tracing_context():
        return False
    if _fusion_mode == "always":
        return True
    # With layer norm, the compiled group-norm backward measured ~1.4x slower per training
    # step than eager ops, so "auto" fuses only the plain gate arithmetic.
    return (
        not normalized
        and numel >= AUTO_FUSION_MIN_ELEMENTS
        and device.type in ("cpu", "cuda")
    )


def hand_written_kind(activation: Callable, recurrent_activation: Callable) -> GateKind | None:
    """For the gates the hand-written kernels know (``tanh`` with the sigmoid, Keras 3's or
    Keras 2's hard sigmoid), their ``GateKind``; ``None`` for any other pair."""
    if activation is not torch.tanh:
        return None
    return _GATE_KINDS.get(recurrent_activation)


def fusion_failed(error: Exception) -> None:
    """Turn fusion off for this process after the compiler failed, with a warning."""
    global _fusion_failed
    _fusion_failed = True
    warnings.warn(
        f"convlstm: fused gate kernel unavailable ({type(error).__name__}: {error}); "
        "falling back to eager ops. Call convlstm.nn.set_fusion('never') to silence.",
        RuntimeWarning,
        stacklevel=3,
    )


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
    """One step of LSTM gate arithmetic.

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
    global _compiled
    args = (gates, c_prev, peephole, gate_norm, cell_norm, activation, recurrent_activation)
    if use_fused(c_prev.numel(), c_prev.device, gate_norm is not None or cell_norm is not None):
        try:
            kind = hand_written_kind(activation, recurrent_activation)
            plain = peephole is None and gate_norm is None and cell_norm is None
            if plain and kind is not None:  # the hand-written kernel has no norms
                return fused_gates(gates, c_prev, kind)  # hand-written derivatives
            if _compiled is None:
                # dynamic=True: one kernel for every batch and frame size (no recompiles)
                _compiled = torch.compile(_pointwise, dynamic=True)
            return _compiled(*args)
        except Exception as error:  # compiler missing or broken on this machine
            fusion_failed(error)
    return _pointwise(*args)
